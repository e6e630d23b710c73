// BERT's BasicTokenizer + WordpieceTokenizer (uncased), on UTF-8 code points. Case folding and
// accent stripping cover ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic and drop combining
// marks (U+0300-U+036F); that is what NFD + removing category Mn does for those scripts.
#include <fstream>

#include "quantkit/models/bert.h"

namespace quantkit {
namespace {

std::vector<char32_t> decode_utf8(const std::string& s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 ||
        i + static_cast<size_t>(len) > s.size()) {  // invalid byte: U+FFFD, dropped later
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k)
      cp = (cp << 6) | (static_cast<uint8_t>(s[i + static_cast<size_t>(k)]) & 0x3F);
    out.push_back(cp);
    i += static_cast<size_t>(len);
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
      c != 0x17F) {
    const bool odd_block = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_block ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

// Base letter of a precomposed Latin letter (lower case), or the letter itself.
char32_t strip_accent(char32_t c) {
  static const char* latin1 = "aaaaaaaceeeeiiiidnooooo/ouuuuyty";  // U+00E0..U+00FF
  if (c >= 0xE0 && c <= 0xFF && c != 0xE6 && c != 0xF0 && c != 0xF7 && c != 0xF8 && c != 0xFE) {
    return static_cast<char32_t>(latin1[c - 0xE0]);
  }
  static const char* ext_a =  // U+0100..U+017F, lower-case positions; '?' = no ASCII base
      "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii??jjkkkllllllllllnnnnnnn???oooooo??"
      "rrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzz?";
  if (c >= 0x100 && c <= 0x17F && ext_a[c - 0x100] != '?')
    return static_cast<char32_t>(ext_a[c - 0x100]);
  return c;
}

bool is_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x3000 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F;
}

bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  return c < 0x20 || (c >= 0x7F && c < 0xA0) || c == 0xAD || (c >= 0x200B && c <= 0x200F);
}

bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126)) {
    return true;
  }
  return c == 0xA1 || c == 0xA7 || c == 0xAB || c == 0xB6 || c == 0xB7 || c == 0xBB || c == 0xBF ||
         (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205E) ||
         (c >= 0x3001 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011);
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0xF900 && c <= 0xFAFF) ||
         (c >= 0x2F800 && c <= 0x2FA1F);
}

}  // namespace

WordPieceTokenizer WordPieceTokenizer::load(const std::filesystem::path& path) {
  std::ifstream in(path);
  QK_CHECK(in.good(), IoError, "cannot open vocabulary ", path.string());
  WordPieceTokenizer t;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    QK_CHECK(line.size() <= 256, FormatError, path.string(), ": token ", t.tokens_.size(),
             " is longer than 256 bytes");
    t.ids_.emplace(line, static_cast<int64_t>(t.tokens_.size()));
    t.tokens_.push_back(line);
    QK_CHECK(t.tokens_.size() <= (1u << 22), FormatError, path.string(), ": too many tokens");
  }
  for (auto [name, slot] : {std::pair<const char*, int64_t*>{"[UNK]", &t.unk_},
                            {"[CLS]", &t.cls_},
                            {"[SEP]", &t.sep_}}) {
    const auto it = t.ids_.find(name);
    QK_CHECK(it != t.ids_.end(), FormatError, path.string(), " has no ", name, " token");
    *slot = it->second;
  }
  return t;
}

std::vector<int64_t> WordPieceTokenizer::encode(const std::string& text, int64_t max_length) const {
  QK_CHECK(max_length >= 2, ValueError, "max_length must leave room for [CLS] and [SEP]");
  // Basic tokenization: clean, split on whitespace, punctuation and CJK characters.
  std::vector<std::string> words;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) words.push_back(current);
    current.clear();
  };
  for (char32_t c : decode_utf8(text)) {
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      flush();
      continue;
    }
    c = to_lower(c);
    if (c >= 0x300 && c <= 0x36F) continue;  // combining marks
    c = strip_accent(c);
    if (is_punctuation(c) || is_cjk(c)) {
      flush();
      append_utf8(current, c);
      flush();
      continue;
    }
    append_utf8(current, c);
  }
  flush();
  std::vector<int64_t> ids = {cls_};
  for (const std::string& word : words) {
    if (decode_utf8(word).size() > 100) {
      ids.push_back(unk_);
      continue;
    }
    std::vector<int64_t> pieces;
    size_t start = 0;
    bool bad = false;
    while (start < word.size()) {
      size_t end = word.size();
      int64_t found = -1;
      while (start < end) {
        const std::string sub = (start > 0 ? "##" : "") + word.substr(start, end - start);
        const auto it = ids_.find(sub);
        if (it != ids_.end()) {
          found = it->second;
          break;
        }
        do {  // shrink by one whole UTF-8 character
          --end;
        } while (end > start && (static_cast<uint8_t>(word[end]) & 0xC0) == 0x80);
      }
      if (found < 0) {
        bad = true;
        break;
      }
      pieces.push_back(found);
      start = end;
    }
    if (bad) {
      ids.push_back(unk_);
    } else {
      ids.insert(ids.end(), pieces.begin(), pieces.end());
    }
  }
  if (static_cast<int64_t>(ids.size()) > max_length - 1)
    ids.resize(static_cast<size_t>(max_length - 1));
  ids.push_back(sep_);
  return ids;
}

}  // namespace quantkit
