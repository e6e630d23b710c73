// libFuzzer target: the safetensors parser must reject or accept any byte string without
// crashing, and every tensor it accepts must be readable within the input's bounds.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "quantkit/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto owner = std::make_shared<std::vector<uint8_t>>(data, data + size);
  try {
    const auto file = quantkit::SafetensorsFile::parse(
        owner, std::span<const uint8_t>(owner->data(), owner->size()), "fuzz");
    volatile uint64_t sink = 0;
    for (const auto& entry : file.entries()) {
      const quantkit::Tensor t = file.tensor(entry.name);
      for (int64_t i = 0; i < t.nbytes(); i += 97) sink = sink + t.bytes()[i];
      if (t.numel() > 0 && t.numel() < 4096 && quantkit::is_floating(t.dtype()))
        (void)t.to(quantkit::DType::kFloat32);
    }
  } catch (const quantkit::Error&) {
    // Rejected with a clear error: the expected outcome for malformed input.
  }
  return 0;
}
