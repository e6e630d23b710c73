// Instruction-set levels and the run-time choice among them. Every kernel exists as a portable
// reference (the spec) and as builds for x86 AVX2 (with and without AVX-VNNI) and AVX-512; the
// best level the CPU supports is chosen once, on first use.
// QUANTKIT_ISA=reference|avx2|avx2_vnni|avx512|amx forces a level (for tests and benchmarks);
// forcing a level the CPU lacks is an error.
#pragma once

#include <string_view>
#include <vector>

namespace quantkit {

/// kAvx2: AVX2 + FMA + F16C. kAvx2Vnni: the same kernels with the VEX-encoded VNNI dot products
/// (vpdpbusd / vpdpwssd on 256 bits: Alder Lake and later Intel cores without AVX-512, Sierra
/// Forest, Zen 5), for the integer-activation kernels. kAvx512: AVX-512 F/BW/VL/DQ + VNNI + GFNI
/// (Ice Lake, Sapphire Rapids, AMD Zen 4 and later; an AVX-512 CPU without VNNI or GFNI, such as
/// Skylake-SP or Cascade Lake, runs the avx2 level). kAmx: the avx512 kernels, plus AMX int8 tiles
/// for dynamic W8A8/W4A8 with many tokens (Sapphire Rapids and later, where the OS grants the tile
/// state).
enum class Isa { kReference, kAvx2, kAvx2Vnni, kAvx512, kAmx };

std::string_view isa_name(Isa isa);
/// Levels this CPU can run, reference first.
std::vector<Isa> supported_isas();
/// The level in use (QUANTKIT_ISA or the best supported one).
Isa active_isa();
/// Switches the level for the whole process (tests, benchmarks). Throws when unsupported.
void set_active_isa(Isa isa);

}  // namespace quantkit
