// Software prefetch that the compiler keeps. GCC counts __builtin_prefetch (and _mm_prefetch) as
// free of side effects: its IPA marks a function whose only effect is a prefetch as pure, then
// deletes the calls whose (void) result goes unused. GCC 12 at -O2 had compiled the row kernels'
// prefetch_at_line_start, the attention's prefetch_row and the compact-metadata prefetch to
// nothing. An asm volatile is a side effect: it stays wherever the source puts it.
#pragma once

namespace quantkit::kernels {

/// Fetches the 64-byte line holding p into L1 (Level 0: prefetcht0) or L2 (Level 1: prefetcht1).
/// Never faults, whatever p points to.
template <int Level>
inline void prefetch_line(const void* p) {
  static_assert(Level == 0 || Level == 1);
#if defined(__x86_64__) && defined(__GNUC__)
  asm volatile("prefetcht%c1 %0" : : "m"(*static_cast<const char*>(p)), "i"(Level));
#else
  __builtin_prefetch(p, 0, 3 - Level);
#endif
}

inline void prefetch_l1(const void* p) {
  prefetch_line<0>(p);
}

inline void prefetch_l2(const void* p) {
  prefetch_line<1>(p);
}

}  // namespace quantkit::kernels
