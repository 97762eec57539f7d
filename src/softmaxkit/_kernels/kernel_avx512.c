/* The kernels for x86-64 CPUs with AVX-512 F, BW, DQ and VL (and FMA); compiled with
 * -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma and selected at run time only when
 * the CPU has all of them. SMK_USE_AVX512 turns on the 512-bit float32 and float64
 * row passes of kernel_avx512.h; everything else is the AVX2 code, re-encoded (EVEX,
 * 32 vector registers, mask compares). */
#define SMK_IMPL_NAME smk_impl_avx512
#define SMK_USE_FMA 1
#define SMK_USE_AVX512 1
#include "kernel_impl.h"
