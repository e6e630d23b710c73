// llama2.c's BPE tokenizer (tokenizer.bin: int32 max_token_length, then per token float32 score,
// int32 byte length, bytes). Encoding: BOS, a dummy-prefix space, one token per UTF-8 character
// (byte-fallback tokens <0xNN> = id byte + 3 for characters not in the vocabulary), then
// repeatedly merge the adjacent pair whose merged string has the highest score (leftmost on
// ties).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace quantkit {

class Llama2cTokenizer {
 public:
  /// Parses tokenizer bytes; throws FormatError for truncated entries, negative or oversized
  /// lengths, or an empty vocabulary.
  static Llama2cTokenizer parse(std::span<const uint8_t> bytes);
  static Llama2cTokenizer load(const std::filesystem::path& path);

  std::vector<int64_t> encode(const std::string& text, bool bos = true) const;
  /// The text of `ids` (BOS/EOS dropped, byte tokens as bytes, the dummy prefix removed).
  std::string decode(const std::vector<int64_t>& ids) const;
  int64_t vocab_size() const { return static_cast<int64_t>(pieces_.size()); }

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int64_t> ids_;
};

}  // namespace quantkit
