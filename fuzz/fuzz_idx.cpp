// libFuzzer target for the small file parsers (IDX, .npy, llama2.c tokenizer): any byte string must
// be accepted or rejected with a quantkit::Error, never crash or over-read.
#include <cstddef>
#include <cstdint>

#include "quantkit/io/idx.h"
#include "quantkit/io/npy.h"
#include "quantkit/models/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)quantkit::parse_idx({data, size}).numel();
  } catch (const quantkit::Error&) {
  }
  try {
    (void)quantkit::parse_npy({data, size}).numel();
  } catch (const quantkit::Error&) {
  }
  try {
    const auto tok = quantkit::Llama2cTokenizer::parse({data, size});
    (void)tok.encode("fuzz");
  } catch (const quantkit::Error&) {
  }
  return 0;
}
