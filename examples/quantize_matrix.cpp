// Quantize a weight matrix three ways with quantkit's one affine primitive, compare the
// reconstruction error, and save/reload the int4 version.
#include <cstdio>
#include <filesystem>

#include "quantkit/core/random.h"
#include "quantkit/io/safetensors.h"
#include "quantkit/quant/affine.h"
#include "quantkit/quant/qtensor.h"

int main() {
  using namespace quantkit;
  const Tensor w =
      random_normal({256, 1000}, /*seed=*/0, /*stddev=*/0.05f);  // 1000: not a multiple of 64

  const AffineSpec specs[] = {
      AffineSpec::for_dtype(DType::kInt8, Granularity::per_axis(0)),    // per output channel
      AffineSpec::for_dtype(DType::kInt4, Granularity::per_group(64)),  // blockwise, symmetric
      AffineSpec::for_dtype(DType::kFloat8E4M3, Granularity::per_axis(0)),
  };
  QTensor int4;
  for (const AffineSpec& spec : specs) {
    const QTensor q = quantize(w, spec);  // choose_qparams + quantize
    std::printf("%-55s SQNR %6.2f dB\n", q.summary().c_str(), sqnr_db(w, q.dequantize()));
    if (spec.dtype == DType::kInt4) int4 = q;
  }

  const auto path = std::filesystem::temp_directory_path() / "quantkit_example.safetensors";
  SafetensorsWriter writer;
  writer.add("layer.weight", int4);
  writer.write(path);
  const QTensor back = Checkpoint::open(path).qtensor("layer.weight");
  std::printf("reloaded: %s\n", back.summary().c_str());
  std::filesystem::remove(path);
  return 0;
}
