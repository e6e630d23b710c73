// Activation kernels for the reference level (see activation_impl.h).
#define QK_ISA_NAMESPACE reference
#include "activation_impl.h"
