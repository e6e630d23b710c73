#include "quantkit/models/tokenizer.h"

#include <cstring>
#include <fstream>

#include "quantkit/core/error.h"

namespace quantkit {

Llama2cTokenizer Llama2cTokenizer::parse(std::span<const uint8_t> bytes) {
  QK_CHECK(bytes.size() >= 4, FormatError, "tokenizer file too short");
  int32_t max_len = 0;
  std::memcpy(&max_len, bytes.data(), 4);
  QK_CHECK(max_len > 0 && max_len <= 4096, FormatError, "tokenizer max_token_length ", max_len,
           " is out of range");
  Llama2cTokenizer t;
  size_t pos = 4;
  while (pos < bytes.size()) {
    QK_CHECK(bytes.size() - pos >= 8, FormatError, "tokenizer entry ", t.pieces_.size(),
             " is truncated");
    float score;
    int32_t len;
    std::memcpy(&score, bytes.data() + pos, 4);
    std::memcpy(&len, bytes.data() + pos + 4, 4);
    pos += 8;
    QK_CHECK(len >= 0 && len <= max_len && static_cast<size_t>(len) <= bytes.size() - pos,
             FormatError, "tokenizer entry ", t.pieces_.size(), " has length ", len, " (max ",
             max_len, ", ", bytes.size() - pos, " bytes left)");
    t.pieces_.emplace_back(reinterpret_cast<const char*>(bytes.data() + pos),
                           static_cast<size_t>(len));
    t.scores_.push_back(score);
    pos += static_cast<size_t>(len);
    QK_CHECK(t.pieces_.size() <= (1u << 22), FormatError, "tokenizer has too many entries");
  }
  QK_CHECK(t.pieces_.size() > 258, FormatError, "tokenizer has ", t.pieces_.size(),
           " entries; llama2.c tokenizers have 3 special and 256 byte tokens at least");
  for (size_t i = 0; i < t.pieces_.size(); ++i)
    t.ids_.emplace(t.pieces_[i], static_cast<int64_t>(i));
  return t;
}

Llama2cTokenizer Llama2cTokenizer::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  QK_CHECK(in.good(), IoError, "cannot open tokenizer ", path.string());
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  QK_CHECK(bytes.size() <= (size_t{1} << 30), FormatError, path.string(), " is too large");
  try {
    return parse(bytes);
  } catch (const FormatError& e) {
    throw FormatError(path.string() + ": " + e.what());
  }
}

std::vector<int64_t> Llama2cTokenizer::encode(const std::string& text, bool bos) const {
  std::vector<int64_t> tokens;
  if (bos) tokens.push_back(1);
  std::vector<int64_t> pieces;
  if (!text.empty()) {
    const auto space = ids_.find(" ");
    QK_CHECK(space != ids_.end(), ValueError, "tokenizer has no ' ' token for the dummy prefix");
    pieces.push_back(space->second);
  }
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;  // one UTF-8 character: a lead byte and its continuation bytes (up to 4)
    while (i + len < text.size() && len < 4 &&
           (static_cast<uint8_t>(text[i + len]) & 0xC0) == 0x80) {
      ++len;
    }
    const auto it = ids_.find(text.substr(i, len));
    if (it != ids_.end()) {
      pieces.push_back(it->second);
    } else {
      for (size_t b = 0; b < len; ++b) pieces.push_back(static_cast<uint8_t>(text[i + b]) + 3);
    }
    i += len;
  }
  for (;;) {
    float best = -1e10f;
    int64_t best_id = -1;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < pieces.size(); ++i) {
      const auto it = ids_.find(pieces_[static_cast<size_t>(pieces[i])] +
                                pieces_[static_cast<size_t>(pieces[i + 1])]);
      if (it != ids_.end() && scores_[static_cast<size_t>(it->second)] > best) {
        best = scores_[static_cast<size_t>(it->second)];
        best_id = it->second;
        best_at = i;
      }
    }
    if (best_id < 0) break;
    pieces[best_at] = best_id;
    pieces.erase(pieces.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
  tokens.insert(tokens.end(), pieces.begin(), pieces.end());
  return tokens;
}

std::string Llama2cTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  int64_t prev = -1;
  for (int64_t id : ids) {
    QK_CHECK(id >= 0 && id < vocab_size(), ValueError, "token id ", id,
             " is outside the vocabulary");
    if (id == 1 || id == 2) {
      prev = id;
      continue;
    }
    std::string piece = pieces_[static_cast<size_t>(id)];
    if ((prev == 1 || prev == -1) && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    unsigned byte = 0;
    if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%02X>", &byte) == 1) {
      piece = std::string(1, static_cast<char>(byte));
    }
    out += piece;
    prev = id;
  }
  return out;
}

}  // namespace quantkit
