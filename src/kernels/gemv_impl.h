// Weight-only GEMV/small-GEMM kernels, written once in portable C++ with explicit vector lanes
// (independent accumulators the compiler maps to SIMD registers) and compiled per ISA.
// QK_ISA_NAMESPACE names the instantiation. The parts, by activation type:
//   gemv_rows.h        what they share: chunk size, prefetch, group metadata and bias sums
//   gemv_float.h       float32 x (GemvArgs), and the dequantized rows of the sgemm path
//   gemv_int16.h       x rounded to int16 per chunk (GemvInt16Args, the default weight-only path):
//                      its specification and dispatch over gemv_int16_rows.h (any tokens),
//                      gemv_int16_decode_avx2.h (one token), gemv_int16_tiles_avx2.h (4-bit
//                      channel tiles) and gemv_int16_avx512.h
//   gemv_int8.h        dynamic int8 x along the rows (GemvInt8Args), dispatch to the tiles
//   gemv_int8_tiles.h  channel tiles: output channels in the vector lanes (int8 and int16 x)
//   gemv_int8_tile_pairs.h  two tiles at once, and the dispatch over a slice of tiles
// This file gathers them into the ISA's GemvKernels table.
#pragma once

#include <limits>

#include "gemv_float.h"
#include "gemv_int16.h"
#include "gemv_int8.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
constexpr bool kI8ReadsChannelTiles = true;
#else
constexpr bool kI8ReadsChannelTiles = false;
#endif

// The AVX-512 single-token kernels take 64 bytes of codes a step (4-bit and 2-bit), the AVX2
// ones 32 bytes (4-bit: two chunks unpacked in 128-bit lanes; 2-bit: vpmaddubsw on split
// bytes); the reference reads plain int16.
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
constexpr Int16Layout kU4SingleTokenLayout{4, 16, true}, kU2SingleTokenLayout{8, 8, true};
#elif defined(__AVX2__)
constexpr Int16Layout kU4SingleTokenLayout{2, 8}, kU2SingleTokenLayout{4, 8, true};
#else
constexpr Int16Layout kU4SingleTokenLayout{1, 32}, kU2SingleTokenLayout{2, 8};
#endif
// 4-bit codes for several tokens: channel tiles on split bytes (16 or 8 channels). The avx2
// tiles lose to the row kernels below 8 tokens and to sgemm from about 1024, where the
// activations every tile meets outgrow L2 (gemv_int16_u4_tiled_avx2). With AVX-VNNI they stay
// ahead of sgemm at every M measured (Emerald Rapids, OpenBLAS on its Haswell kernels as on an
// AVX2 CPU, 4096^2 g32, 2 threads, GFLOPS tiles against sgemm at M = 640 / 1024 / 2048 / 4096:
// 180 / 183 / 171 / 158 against 151 / 149 / 131 / 150; avx2 tiles 132 / 140 / 130 / 126).
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
constexpr Int16Layout kU4TokensLayout{4, 16, true};
constexpr int64_t kU4TokensMin = 1, kU4GemmMinTokens = std::numeric_limits<int64_t>::max();
#elif defined(__AVX2__)
constexpr Int16Layout kU4TokensLayout{4, 16, true};
#if defined(__AVXVNNI__)
// The VNNI tiles also win from 4 tokens (g32, 4096^2, GFLOPS rows -> tiles: in cache, 1
// thread, M = 3 / 4 / 6 58 / 59-60 / 57-58 -> 62 / 69-70 / 76-77; from DRAM, 2 threads, 85 /
// 86 / 90 -> 74 / 100 / 112).
constexpr int64_t kU4TokensMin = 4, kU4GemmMinTokens = std::numeric_limits<int64_t>::max();
#else
constexpr int64_t kU4TokensMin = 8, kU4GemmMinTokens = 641;
#endif
#else
constexpr Int16Layout kU4TokensLayout{1, 32};
constexpr int64_t kU4TokensMin = 1, kU4GemmMinTokens = 0;  // unused: not split
#endif
#if !defined(__AVX512BW__) || !defined(__AVX512VNNI__)
constexpr int64_t kU4PairTilesMinTokens = std::numeric_limits<int64_t>::max();
constexpr int kPairTileTokens = 0;
#endif

inline const GemvKernels kGemvTable = {gemv<8>,
                                       gemv<4>,
                                       gemv<2>,
                                       gemv<8, Codes::kE4M3>,
                                       gemv<8, Codes::kE5M2>,
                                       dequantize_row<8>,
                                       dequantize_row<4>,
                                       dequantize_row<2>,
                                       dequantize_row<8, Codes::kE4M3>,
                                       dequantize_row<8, Codes::kE5M2>,
                                       gemv_int8<8>,
                                       gemv_int8<4>,
                                       kI8ReadsChannelTiles,
                                       gemv_int16<8>,
                                       gemv_int16<4>,
                                       gemv_int16<2>,
                                       expand_group_params,
                                       kU4SingleTokenLayout,
                                       kU2SingleTokenLayout,
                                       kU4TokensLayout,
                                       kU4TokensMin,
                                       kU4GemmMinTokens,
                                       kU4PairTilesMinTokens,
                                       kPairTileTokens};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE
