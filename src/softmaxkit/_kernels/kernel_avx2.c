/* The kernels for x86-64 CPUs with AVX2 and FMA; compiled with -mavx2 -mfma and
 * selected at run time only when the CPU has both. */
#define SMK_IMPL_NAME smk_impl_avx2
#define SMK_USE_FMA 1
#include "kernel_impl.h"
