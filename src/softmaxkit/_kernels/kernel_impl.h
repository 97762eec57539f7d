/* The softmaxkit kernels, written once and compiled once per instruction set.
 *
 * The including file defines SMK_IMPL_NAME (the smk_impl object to define),
 * SMK_USE_FMA (1 when the target has fused multiply-add) and, optionally,
 * SMK_USE_AVX512 (1: the float32 row passes on 512-bit vectors, kernel_avx512.h). The arithmetic uses GCC/Clang
 * vector extensions (4 doubles), which the compiler lowers to AVX2 or to the
 * baseline instruction set of the target (SSE2, NEON, scalar).
 *
 * Numerics (the same as softmaxkit/_lib/_shifted_exp.py):
 * - every entry is converted to double; float32/float16/bfloat16 work entirely in
 *   double, where x - max and the division by the temperature are exact or have a
 *   relative error far below float32's unit roundoff (except on the float32 row
 *   passes of kernel_rows_f32.h, which float16 and bfloat16 rows also take, widened
 *   exactly to float32, by kernel_rows_small.h);
 * - float64 keeps the rounding error c of x - max (TwoSum) and of the division by the
 *   temperature (exact remainder), and evaluates exp(d + c) with c added after the
 *   range reduction;
 * - the entries at the maximum are counted exactly and the rest summed separately
 *   (with TwoSum per lane for float64), so that log(sum) = log1p((count - 1) + rest);
 * - edge rows (NaN, +inf, all -inf or masked, temperature 0 or inf) are given their
 *   limits without arithmetic on infinities.
 *
 * The code is in one header per code path, included here in this order into the one
 * translation unit of each variant (so their functions stay static, each variant
 * its own copy): kernel_lanes.h (vector types, exp, log1p), kernel_small_floats.h
 * (float16/bfloat16), kernel_buffer.h (rows through a double buffer),
 * kernel_rows_f32.h (float32 rows in place; kernel_avx512.h in the AVX-512 variant;
 * kernel_rows_small.h, float16/bfloat16 rows widened to float32, included by it),
 * kernel_side_by_side.h (16 rows side by side), kernel_columns_small.h (float16 and
 * bfloat16 column blocks), kernel_columns_streamed.h (streamed columns),
 * kernel_rows_f64.h (float64 rows in place), kernel_softcap.h (the soft cap of float32
 * logits and its derivative) and kernel_dispatch.h (the dispatch and the smk_impl
 * object).
 */
#include "kernel_lanes.h"
#include "kernel_small_floats.h"
#include "kernel_buffer.h"
#include "kernel_rows_f32.h"
#include "kernel_side_by_side.h"
#include "kernel_columns_small.h"
#include "kernel_columns_streamed.h"
#include "kernel_rows_f64.h"
#include "kernel_softcap.h"
#include "kernel_dispatch.h"
