/* The vector types, flags and constants of the kernels, and the SIMD arithmetic on
 * 4 double lanes: loads and stores, fused multiply-add, exp (vexp) and log1p (vlog1p).
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"

#ifndef SMK_USE_AVX512
#define SMK_USE_AVX512 0
#endif
#if SMK_USE_FMA
#include <immintrin.h>
#endif

typedef double v4d __attribute__((vector_size(32)));
typedef long long v4l __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

#define KIND_NAN 0
#define KIND_EMPTY 1
#define KIND_IND_TOP 2   /* mass on the entries equal to the maximum (+inf rows, T = 0) */
#define KIND_IND_FINITE 3 /* uniform over the finite entries (T = inf) */
#define KIND_FINITE 4

#define POST_NONE 0
#define POST_MUL 1
#define POST_DIV 2

static inline v4d vload(const double *p) { v4d v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(double *p, v4d v) { memcpy(p, &v, sizeof v); }
static inline v4d vsplat(double a) { return (v4d){a, a, a, a}; }
static inline v4d vblend(v4l mask, v4d a, v4d b)
{
    return (v4d)(((v4l)a & mask) | ((v4l)b & ~mask));
}

#if SMK_USE_FMA
static inline v4d vfma(v4d a, v4d b, v4d c)
{
    return (v4d)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
}
#else
static inline v4d vfma(v4d a, v4d b, v4d c) { return a * b + c; }
#endif

/* exp(hi + lo) for hi <= ~0 and |lo| tiny: Cody-Waite reduction by k ln 2 (ln2_hi has
 * 32 trailing zero bits, so k * ln2_hi and hi - k * ln2_hi are exact), Taylor series
 * of exp(r) - 1 - r for |r| <= ln(2)/2 (truncation below 4e-18 relative with terms up
 * to r^13/13!, evaluated by Estrin's scheme), scaling by 2^k in two steps so that
 * subnormal results are rounded once.
 * With accurate == 0 (float32 and narrower results), terms up to r^8/8! (truncation
 * below 2e-10, 1/300 of a float32 ulp) and one scaling step suffice: exp(-708) is
 * already far below what a float32 result or a sum >= 1 can hold. */
#define VEXP_MAX 4
#define EACH_V for (int k = 0; k < cnt; k++)

/* vexp of cnt vectors side by side, stage by stage: the chains are independent, so
 * that their latencies overlap. */
static inline __attribute__((always_inline)) void
vexp_near(int cnt, int near, const v4d *hi, const v4d *lo, int accurate, v4d *e);

static inline __attribute__((always_inline)) void
vexp_n(int cnt, const v4d *hi, const v4d *lo, int accurate, v4d *e)
{
    vexp_near(cnt, 0, hi, lo, accurate, e);
}

/* With near, the caller knows that every hi is >= -700: no underflow, and exp is a
 * normal number, so one scaling step rounds it once. */
static inline __attribute__((always_inline)) void
vexp_near(int cnt, int near, const v4d *hi, const v4d *lo, int accurate, v4d *e)
{
    const v4d shifter = vsplat(0x1.8p52);
    const v4d ln2_hi = vsplat(6.93147180369123816490e-01);
    const v4d ln2_lo = vsplat(1.90821492927058770002e-10);
    const double lowest = accurate ? -746.0 : -708.0;
    v4l underflow[VEXP_MAX];
    v4d h[VEXP_MAX], l[VEXP_MAX], t[VEXP_MAX], k_[VEXP_MAX], r[VEXP_MAX], r2[VEXP_MAX],
        r4[VEXP_MAX], q[VEXP_MAX], p[VEXP_MAX];
    if (near) {
        EACH_V underflow[k] = (v4l){0, 0, 0, 0};
        EACH_V h[k] = hi[k];
        EACH_V l[k] = lo[k];
    } else {
        EACH_V underflow[k] = hi[k] < vsplat(lowest);
        EACH_V h[k] = vblend(underflow[k], vsplat(lowest), hi[k]);
        EACH_V l[k] = accurate ? vblend(underflow[k], vsplat(0.0), lo[k]) : lo[k];
    }
    EACH_V t[k] = h[k] * vsplat(1.4426950408889634074) + shifter;
    EACH_V k_[k] = t[k] - shifter;
    EACH_V r[k] = (h[k] - k_[k] * ln2_hi) - (k_[k] * ln2_lo - l[k]);
    /* q(r) = sum of r^k / (k + 2)!, by Estrin's scheme: the terms are paired so that
     * the chain of dependent operations is four deep instead of one per term. */
    EACH_V r2[k] = r[k] * r[k];
    EACH_V r4[k] = r2[k] * r2[k];
    if (accurate) {
        v4d a0[VEXP_MAX], a1[VEXP_MAX], a2[VEXP_MAX], a3[VEXP_MAX], a4[VEXP_MAX],
            a5[VEXP_MAX];
        EACH_V a0[k] = vfma(vsplat(1.0 / 6.0), r[k], vsplat(1.0 / 2.0));
        EACH_V a1[k] = vfma(vsplat(1.0 / 120.0), r[k], vsplat(1.0 / 24.0));
        EACH_V a2[k] = vfma(vsplat(1.0 / 5040.0), r[k], vsplat(1.0 / 720.0));
        EACH_V a3[k] = vfma(vsplat(1.0 / 362880.0), r[k], vsplat(1.0 / 40320.0));
        EACH_V a4[k] = vfma(vsplat(1.0 / 39916800.0), r[k], vsplat(1.0 / 3628800.0));
        EACH_V a5[k] = vfma(vsplat(1.0 / 6227020800.0), r[k], vsplat(1.0 / 479001600.0));
        EACH_V a0[k] = vfma(a1[k], r2[k], a0[k]);
        EACH_V a2[k] = vfma(a3[k], r2[k], a2[k]);
        EACH_V a4[k] = vfma(a5[k], r2[k], a4[k]);
        EACH_V q[k] = vfma(vfma(a4[k], r4[k], a2[k]), r4[k], a0[k]);
    } else {
        v4d a0[VEXP_MAX], a1[VEXP_MAX], a2[VEXP_MAX];
        EACH_V a0[k] = vfma(vsplat(1.0 / 6.0), r[k], vsplat(1.0 / 2.0));
        EACH_V a1[k] = vfma(vsplat(1.0 / 120.0), r[k], vsplat(1.0 / 24.0));
        EACH_V a2[k] = vfma(vsplat(1.0 / 5040.0), r[k], vsplat(1.0 / 720.0));
        EACH_V a0[k] = vfma(a1[k], r2[k], a0[k]);
        EACH_V a2[k] = vfma(vsplat(1.0 / 40320.0), r2[k], a2[k]);
        EACH_V q[k] = vfma(a2[k], r4[k], a0[k]);
    }
    EACH_V p[k] = vsplat(1.0) + vfma(r2[k], q[k], r[k]);
    if (accurate && !near) {
        /* 2^k = 2^k1 * 2^k2 with k1 = round(k / 2): both factors are normal numbers. */
        v4d t1[VEXP_MAX], t2[VEXP_MAX];
        EACH_V t1[k] = k_[k] * vsplat(0.5) + shifter;
        EACH_V t2[k] = (k_[k] - (t1[k] - shifter)) + shifter;
        EACH_V e[k] = (p[k] * (v4d)(((v4l)t1[k] + 1023) << 52)) *
                      (v4d)(((v4l)t2[k] + 1023) << 52);
    } else {
        EACH_V e[k] = p[k] * (v4d)(((v4l)t[k] + 1023) << 52);
    }
    if (!near)
        EACH_V e[k] = vblend(underflow[k], vsplat(0.0), e[k]);
}

static inline v4d vexp(v4d hi, v4d lo, int accurate)
{
    v4d e;
    vexp_n(1, &hi, &lo, accurate, &e);
    return e;
}

/* log1p(a) for finite a >= 0 on four lanes, within one ulp (the normalizer of short
 * rows side by side, where one libm call per row costs as much as the row): u = 1 + a
 * with its rounding error c (Fast2Sum), u = 2^k m with m in [sqrt(1/2), sqrt(2)), and
 * log(m) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f), f = m - 1, with R the
 * minimax polynomial of the classic fdlibm log (error below 2^-58.45); c / u, the
 * first-order term of log(1 + c/u), joins the small terms before the last rounding. */
static inline v4d vlog1p(v4d a)
{
    const v4d one = vsplat(1.0);
    v4d u = one + a;
    v4l a_big = a > one;
    v4d c = vblend(a_big, one, a) - (u - vblend(a_big, a, one));
    v4l bits = (v4l)u;
    v4l e = bits >> 52; /* u >= 1: no sign bit */
    v4d m = (v4d)((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
    v4l above = m > vsplat(0x1.6a09e667f3bcdp+0);
    m = vblend(above, m * vsplat(0.5), m);
    e -= above; /* above is -1 where true */
    v4d k = ((v4d)(e | 0x4330000000000000LL) - vsplat(0x1p52)) - vsplat(1023.0);
    v4d f = m - one;
    v4d hfsq = vsplat(0.5) * f * f;
    v4d sq = f / (vsplat(2.0) + f);
    v4d z = sq * sq, w = z * z;
    v4d t1 = w * (vsplat(3.999999999940941908e-01) +
                  w * (vsplat(2.222219843214978396e-01) + w * vsplat(1.531383769920937332e-01)));
    v4d t2 = z * (vsplat(6.666666666666735130e-01) +
                  w * (vsplat(2.857142874366239149e-01) +
                       w * (vsplat(1.818357216161805012e-01) +
                            w * vsplat(1.479819860511658591e-01))));
    v4d r = t2 + t1;
    v4d small = sq * (hfsq + r) + (k * vsplat(1.90821492927058770002e-10) + c / u);
    return k * vsplat(6.93147180369123816490e-01) - ((hfsq - small) - f);
}
