/* The kernels for the baseline instruction set of the target. */
#define SMK_IMPL_NAME smk_impl_baseline
#define SMK_USE_FMA 0
#include "kernel_impl.h"
