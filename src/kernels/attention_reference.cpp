// Attention kernels for the reference level (see attention_impl.h).
#define QK_ISA_NAMESPACE reference
#include "attention_impl.h"
