// libFuzzer target for the small array-file parsers (IDX and .npy): any byte string must be
// accepted or rejected with a quantkit::Error, never crash or over-read.
#include <cstddef>
#include <cstdint>

#include "quantkit/io/idx.h"
#include "quantkit/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)quantkit::parse_idx({data, size}).numel();
  } catch (const quantkit::Error&) {
  }
  try {
    (void)quantkit::parse_npy({data, size}).numel();
  } catch (const quantkit::Error&) {
  }
  return 0;
}
