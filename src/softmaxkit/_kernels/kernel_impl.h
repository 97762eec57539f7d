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
 *   relative error far below float32's unit roundoff;
 * - float64 keeps the rounding error c of x - max (TwoSum) and of the division by the
 *   temperature (exact remainder), and evaluates exp(d + c) with c added after the
 *   range reduction;
 * - the entries at the maximum are counted exactly and the rest summed separately
 *   (with TwoSum per lane for float64), so that log(sum) = log1p((count - 1) + rest);
 * - edge rows (NaN, +inf, all -inf or masked, temperature 0 or inf) are given their
 *   limits without arithmetic on infinities.
 */
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

/* ---- conversions of the small float formats ---- */

static inline double small_to_double(uint16_t bits, int ebits, int mbits)
{
    int bias = (1 << (ebits - 1)) - 1;
    int e = (bits >> mbits) & ((1 << ebits) - 1);
    int m = bits & ((1 << mbits) - 1);
    double v;
    if (e == (1 << ebits) - 1)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, 1 - bias - mbits);
    else
        v = ldexp((double)(m | (1 << mbits)), e - bias - mbits);
    return (bits >> (ebits + mbits)) ? -v : v;
}

/* Round a double to the nearest (ties to even) number with ebits/mbits, in one step. */
static inline uint16_t double_to_small(double v, int ebits, int mbits)
{
    int bias = (1 << (ebits - 1)) - 1;
    uint16_t sign = signbit(v) ? (uint16_t)(1u << (ebits + mbits)) : 0;
    uint16_t all_exp = (uint16_t)(((1u << ebits) - 1) << mbits);
    double a = fabs(v);
    if (a != a)
        return sign | all_exp | (uint16_t)(1u << (mbits - 1));
    if (a == INFINITY)
        return sign | all_exp;
    if (a == 0.0)
        return sign;
    int e2;
    frexp(a, &e2);
    int unbiased = e2 - 1;
    int min_exp = 1 - bias;
    int quantum = (unbiased < min_exp ? min_exp : unbiased) - mbits;
    double n = nearbyint(ldexp(a, -quantum));
    uint32_t m = (uint32_t)n;
    if (unbiased < min_exp)
        return sign | (uint16_t)m; /* subnormal, or the smallest normal after rounding */
    if (m == (1u << (mbits + 1))) {
        m >>= 1;
        unbiased++;
    }
    if (unbiased > bias)
        return sign | all_exp;
    return sign | (uint16_t)((unsigned)(unbiased + bias) << mbits) |
           (uint16_t)(m & ((1u << mbits) - 1));
}

static inline double load_one(const char *p, int type)
{
    switch (type) {
    case SMK_F32: { float f; memcpy(&f, p, 4); return f; }
    case SMK_F64: { double d; memcpy(&d, p, 8); return d; }
    case SMK_F16: { uint16_t b; memcpy(&b, p, 2); return small_to_double(b, 5, 10); }
    default: { uint16_t b; memcpy(&b, p, 2); uint32_t w = (uint32_t)b << 16; float f;
               memcpy(&f, &w, 4); return f; }
    }
}

static inline void store_one(char *p, int type, double v)
{
    switch (type) {
    case SMK_F32: { float f = (float)v; memcpy(p, &f, 4); return; }
    case SMK_F64: memcpy(p, &v, 8); return;
    case SMK_F16: { uint16_t b = double_to_small(v, 5, 10); memcpy(p, &b, 2); return; }
    default: { uint16_t b = double_to_small(v, 8, 7); memcpy(p, &b, 2); return; }
    }
}

/* ---- loading a chunk of a row into a double buffer, and storing it back ---- */

#if SMK_USE_AVX512
/* float16 and bfloat16 converted 16 at a time (kernel_avx512.h). */
static void w_load_small(const char *p, int type, ptrdiff_t n, double *buf);
static void w_store_small(char *p, int type, ptrdiff_t n, const double *buf);
#endif

static inline ptrdiff_t round4(ptrdiff_t n) { return (n + 3) & ~(ptrdiff_t)3; }

static void pad(double *buf, ptrdiff_t n)
{
    for (ptrdiff_t i = n; i < round4(n); i++)
        buf[i] = -INFINITY;
}

static void load_typed(const char *p, ptrdiff_t es, int type, ptrdiff_t n, double *buf)
{
    if (type == SMK_F32 && es == 4) {
        ptrdiff_t i = 0;
        for (; i + 4 <= n; i += 4) {
            v4f f;
            memcpy(&f, p + 4 * i, sizeof f);
            vstore(buf + i, __builtin_convertvector(f, v4d));
        }
        for (; i < n; i++) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            buf[i] = f;
        }
    } else if (type == SMK_F64 && es == 8) {
        memcpy(buf, p, (size_t)n * sizeof(double));
#if SMK_USE_AVX512
    } else if ((type == SMK_F16 || type == SMK_BF16) && es == 2) {
        w_load_small(p, type, n, buf);
#endif
    } else {
        for (ptrdiff_t i = 0; i < n; i++)
            buf[i] = load_one(p + i * es, type);
    }
}

static void load_chunk(const smk_job *job, const char *x, const char *m, ptrdiff_t j0,
                       ptrdiff_t n, double *buf)
{
    load_typed(x + j0 * job->x_es, job->x_es, job->in_type, n, buf);
    if (m) {
        const char *q = m + j0 * job->m_es;
        for (ptrdiff_t i = 0; i < n; i++)
            if (!q[i * job->m_es])
                buf[i] = -INFINITY;
    }
    pad(buf, n);
}

static void store_chunk(const smk_job *job, char *o, ptrdiff_t j0, ptrdiff_t n, double *buf,
                        int post, double scale)
{
    char *p = o + j0 * job->o_es;
    if (post == POST_MUL && job->out_type == SMK_F64 && job->o_es == 8) {
        /* The product stored straight into the output. */
        v4d s = vsplat(scale);
        ptrdiff_t i = 0;
        for (; i + 4 <= n; i += 4) {
            v4d v = vload(buf + i) * s;
            memcpy(p + 8 * i, &v, sizeof v);
        }
        for (; i < n; i++) {
            double v = buf[i] * scale;
            memcpy(p + 8 * i, &v, 8);
        }
        return;
    }
    if (post == POST_MUL) {
        v4d s = vsplat(scale);
        for (ptrdiff_t i = 0; i < n; i += 4)
            vstore(buf + i, vload(buf + i) * s);
    } else if (post == POST_DIV) {
        v4d s = vsplat(scale);
        for (ptrdiff_t i = 0; i < n; i += 4)
            vstore(buf + i, vload(buf + i) / s);
    }
    if (job->out_type == SMK_F32 && job->o_es == 4) {
        ptrdiff_t i = 0;
        for (; i + 4 <= n; i += 4) {
            v4f f = __builtin_convertvector(vload(buf + i), v4f);
            memcpy(p + 4 * i, &f, sizeof f);
        }
        for (; i < n; i++) {
            float f = (float)buf[i];
            memcpy(p + 4 * i, &f, 4);
        }
    } else if (job->out_type == SMK_F64 && job->o_es == 8) {
        memcpy(p, buf, (size_t)n * sizeof(double));
#if SMK_USE_AVX512
    } else if ((job->out_type == SMK_F16 || job->out_type == SMK_BF16) && job->o_es == 2) {
        w_store_small(p, job->out_type, n, buf);
#endif
    } else {
        for (ptrdiff_t i = 0; i < n; i++)
            store_one(p + i * job->o_es, job->out_type, buf[i]);
    }
}

/* ---- the passes over a buffer (n4 a multiple of 4, padded with -inf) ---- */

/* One entry into the first pass's maximum, minimum and NaN flag. */
static inline void stats_one(smk_partial *part, double v)
{
    if (v > part->max)
        part->max = v;
    if (v < part->min)
        part->min = v;
    if (v != v)
        part->has_nan = 1;
}

static void buf_stats(const double *buf, ptrdiff_t n4, smk_partial *part)
{
    /* The minimum includes the -inf padding and masked entries: such rows are not near
     * (see row_is_near). */
    v4d mx = vsplat(-INFINITY), mn = vsplat(INFINITY);
    v4l nan = {0, 0, 0, 0};
    for (ptrdiff_t i = 0; i < n4; i += 4) {
        v4d x = vload(buf + i);
        mx = vblend(x > mx, x, mx);
        mn = vblend(x < mn, x, mn);
        nan |= (x != x);
    }
    for (int k = 0; k < 4; k++) {
        if (mx[k] > part->max)
            part->max = mx[k];
        if (mn[k] < part->min)
            part->min = mn[k];
        if (nan[k])
            part->has_nan = 1;
    }
}

/* Whether every shifted score (x - max) / T of a finite row is at least -depth, from
 * the minimum of the first pass (+inf where a path did not find it: not near). */
static inline int row_is_near(const smk_row *row, double depth)
{
    return row->min <= row->max && (row->min - row->max) * (1.0 / row->temperature) >= -depth;
}

static void buf_count(const double *buf, ptrdiff_t n4, int kind, double top, smk_partial *part)
{
    v4l count = {0, 0, 0, 0};
    for (ptrdiff_t i = 0; i < n4; i += 4) {
        v4d x = vload(buf + i);
        if (kind == KIND_IND_TOP)
            count -= (x == vsplat(top));
        else
            count -= (x > vsplat(-INFINITY)) & (x < vsplat(INFINITY));
    }
    part->count += count[0] + count[1] + count[2] + count[3];
}

/* The shifted score (x - max) / T as hi + lo, for one vector. */
static inline void shifted_v(v4d x, v4d m, double temperature, int scaled, int compensate,
                             int exact_division, v4d *hi, v4d *lo)
{
    v4d d = x - m;
    if (!compensate) {
        *hi = scaled ? d / vsplat(temperature) : d;
        *lo = vsplat(0.0);
        return;
    }
    /* TwoSum (Knuth): d + c == x - m exactly; c is meaningless where d is infinite. */
    v4d virt = d - x;
    v4d c = (x - (d - virt)) + (-m - virt);
    v4l finite = d > vsplat(-INFINITY);
    c = vblend(finite, c, vsplat(0.0));
    if (!scaled) {
        *hi = d;
        *lo = c;
        return;
    }
    v4d t = vsplat(temperature);
    v4d q = d / t;
    if (exact_division) {
        v4l safe = q > vsplat(-0x1p996);
        v4d qs = vblend(safe, q, vsplat(0.0));
        v4d ds = vblend(safe, d, vsplat(0.0));
#if SMK_USE_FMA
        v4d remainder = (v4d)_mm256_fnmadd_pd((__m256d)qs, (__m256d)t, (__m256d)ds);
#else
        /* Dekker's exact product q * t = p + err, with Veltkamp's splitting. */
        const v4d split = vsplat(134217729.0);
        v4d p = qs * t;
        v4d sq = split * qs, st = split * t;
        v4d qh = sq - (sq - qs), ql = qs - qh;
        v4d th = st - (st - t), tl = t - th;
        v4d err = ((qh * th - p) + qh * tl + ql * th) + ql * tl;
        v4d remainder = (ds - p) - err;
#endif
        *lo = vblend(safe, (remainder + c) / t, vsplat(0.0));
    } else {
        *lo = c / t;
    }
    *hi = q;
}

static inline void shifted(v4d x, double top, double temperature, int scaled, int compensate,
                           int exact_division, v4d *hi, v4d *lo)
{
    shifted_v(x, vsplat(top), temperature, scaled, compensate, exact_division, hi, lo);
}

/* Sum of exp over the entries below the maximum (hi + lo) and count of those at it;
 * four vectors at a time, each with its own (compensated) sum. near: every shifted
 * score >= -700 (see vexp_near); plain: softmax without the row statistics, where the
 * entries at the maximum are summed with the others (their exp is exactly 1). */
static inline __attribute__((always_inline)) void
sum_n(int cnt, int near, int plain, const double *in, double *out, const smk_job *job,
      const smk_row *row, v4d *s, v4d *c, v4l *count)
{
    double top = row->max, temperature = row->temperature;
    int scaled = temperature != 1.0, comp = job->compensate;
    int exact = temperature < 0x1p996;
    v4d x[VEXP_MAX], hi[VEXP_MAX], lo[VEXP_MAX], e[VEXP_MAX];
    EACH_V x[k] = vload(in + 4 * k);
    EACH_V shifted(x[k], top, temperature, scaled, comp, exact, &hi[k], &lo[k]);
    vexp_near(cnt, near, hi, lo, comp, e);
    EACH_V {
        if (out)
            vstore(out + 4 * k, e[k]);
        v4d ek = e[k];
        if (!plain) {
            v4l is_top = x[k] == vsplat(top);
            count[k] -= is_top;
            ek = vblend(is_top, vsplat(0.0), ek);
        }
        if (comp) {
            v4d t = s[k] + ek, bp = t - s[k];
            c[k] += (s[k] - (t - bp)) + (ek - bp);
            s[k] = t;
        } else {
            s[k] += ek;
        }
    }
}

/* The horizontal sums of sum_n's accumulators, added to part. */
static void add_lanes(const v4d *s, const v4d *c, const v4l *count, smk_partial *part)
{
    for (int v = 0; v < VEXP_MAX; v++)
        for (int k = 0; k < 4; k++) {
            double t = part->hi + s[v][k], bp = t - part->hi;
            part->lo += ((part->hi - (t - bp)) + (s[v][k] - bp)) + c[v][k];
            part->hi = t;
            part->count += count[v][k];
        }
}

/* exp of in[0 .. n4 - 1] summed into part (with out, also stored there). */
static inline __attribute__((always_inline)) void
buf_sum_impl(int near, int plain, const double *in, double *out, ptrdiff_t n4,
             const smk_job *job, const smk_row *row, smk_partial *part)
{
    v4d s[VEXP_MAX], c[VEXP_MAX];
    v4l count[VEXP_MAX];
    for (int k = 0; k < VEXP_MAX; k++) {
        s[k] = c[k] = vsplat(0.0);
        count[k] = (v4l){0, 0, 0, 0};
    }
    ptrdiff_t i = 0;
    for (; i + 4 * VEXP_MAX <= n4; i += 4 * VEXP_MAX)
        sum_n(VEXP_MAX, near, plain, in + i, out ? out + i : NULL, job, row, s, c, count);
    for (; i < n4; i += 4)
        sum_n(1, near, plain, in + i, out ? out + i : NULL, job, row, s, c, count);
    add_lanes(s, c, count, part);
}

/* CALL(N, P) with compile-time constants equal to the flags near and plain: each
 * combination is a copy of the inlined loop specialised for it. */
#define WITH_CONSTANT_NEAR_PLAIN(near, plain, CALL)                                        \
    do {                                                                                   \
        if (near) {                                                                        \
            if (plain) CALL(1, 1); else CALL(1, 0);                                        \
        } else {                                                                           \
            if (plain) CALL(0, 1); else CALL(0, 0);                                        \
        }                                                                                  \
    } while (0)

/* n entries of buf, padded with -inf to round4(n). The pad lanes are never near: the
 * row's minimum may come from a first pass that saw no padding (the float32 path, a
 * whole row before its blocks), and vexp_near would turn -inf into NaN. */
static void buf_sum(double *buf, ptrdiff_t n, const smk_job *job, const smk_row *row,
                    int store_exp, smk_partial *part)
{
    ptrdiff_t n4 = round4(n);
    int near = n4 == n && row_is_near(row, 700.0);
    int plain = job->op == SMK_SOFTMAX && !(job->l_es && row->l);
    double *out = store_exp ? buf : NULL;
#define BUF_SUM_CALL(N, P) buf_sum_impl(N, P, buf, out, n4, job, row, part)
    WITH_CONSTANT_NEAR_PLAIN(near, plain, BUF_SUM_CALL);
#undef BUF_SUM_CALL
}



static void buf_log(double *buf, ptrdiff_t n4, const smk_job *job, const smk_row *row)
{
    double temperature = row->temperature;
    int scaled = temperature != 1.0;
    int exact = temperature < 0x1p996;
    v4d log_total = vsplat(row->log_total);
    for (ptrdiff_t i = 0; i < n4; i += 4) {
        v4d hi, lo;
        shifted(vload(buf + i), row->max, temperature, scaled, job->compensate, exact, &hi,
                &lo);
        vstore(buf + i, (hi - log_total) + lo);
    }
}

/* Rows whose result is an indicator (k entries selected) or a constant. */
static void buf_fill(double *buf, ptrdiff_t n4, const smk_job *job, const smk_row *row)
{
    double on, off;
    if (row->kind == KIND_NAN) {
        for (ptrdiff_t i = 0; i < n4; i++)
            buf[i] = NAN;
        return;
    }
    if (row->kind == KIND_EMPTY) {
        double v = job->op == SMK_SOFTMAX ? 0.0 : -INFINITY;
        for (ptrdiff_t i = 0; i < n4; i++)
            buf[i] = v;
        return;
    }
    if (job->op == SMK_SOFTMAX) {
        on = 1.0 / (double)row->count;
        off = 0.0;
    } else {
        on = -log1p((double)(row->count - 1));
        off = -INFINITY;
    }
    for (ptrdiff_t i = 0; i < n4; i += 4) {
        v4d x = vload(buf + i);
        v4l sel = row->kind == KIND_IND_TOP ? (x == vsplat(row->max))
                                            : ((x > vsplat(-INFINITY)) & (x < vsplat(INFINITY)));
        vstore(buf + i, vblend(sel, vsplat(on), vsplat(off)));
    }
}

/* ---- rows ---- */

static void row_pointers(const smk_job *job, ptrdiff_t r, smk_row *row)
{
    ptrdiff_t xo = 0, oo = 0, mo = 0, to = 0, lo = 0, go = 0, bo = 0;
    for (int d = job->ndim - 1; d >= 0; d--) {
        ptrdiff_t i = r % job->shape[d];
        r /= job->shape[d];
        xo += i * job->xs[d];
        oo += i * job->os[d];
        mo += i * job->ms[d];
        to += i * job->ts[d];
        lo += i * job->ls[d];
        go += i * job->gs[d];
        bo += i * job->bs[d];
    }
    row->bsum = job->bsum ? job->bsum + bo : NULL;
    row->x = job->x + xo;
    row->o = job->o ? job->o + oo : NULL;
    row->m = job->m ? job->m + mo : NULL;
    row->l = job->l ? job->l + lo : NULL;
    double temperature = job->t_value;
    if (job->t)
        memcpy(&temperature, job->t + to, sizeof temperature);
    row->gain = 1.0;
    if (job->g)
        memcpy(&row->gain, job->g + go, sizeof row->gain);
    row->tmode = temperature == 0.0 ? SMK_T_ZERO
                 : temperature == INFINITY ? SMK_T_INF : SMK_T_FINITE;
    row->temperature = row->tmode == SMK_T_FINITE ? temperature : 1.0;
}

static void row_begin(const smk_job *job, ptrdiff_t r, smk_row *row) { row_pointers(job, r, row); }

static void partial_init(smk_partial *p)
{
    p->max = -INFINITY;
    p->min = INFINITY;
    p->hi = p->lo = 0.0;
    p->has_nan = 0;
    p->count = 0;
}

static void row_decide(const smk_job *job, smk_row *row, const smk_partial *p)
{
    (void)job;
    row->max = p->max;
    row->min = p->min;
    row->has_nan = p->has_nan;
    if (p->has_nan)
        row->kind = KIND_NAN;
    else if (p->max == INFINITY)
        row->kind = KIND_IND_TOP;
    else if (p->max == -INFINITY)
        row->kind = KIND_EMPTY;
    else if (row->tmode == SMK_T_ZERO)
        row->kind = KIND_IND_TOP;
    else if (row->tmode == SMK_T_INF)
        row->kind = KIND_IND_FINITE;
    else
        row->kind = KIND_FINITE;
}

/* After phase 2: the normalizer of the row, and its logsumexp. */
static void row_sums(const smk_job *job, smk_row *row, const smk_partial *p)
{
    double lse;
    /* The gain multiplies the indicator and constant rows as it does the others. */
    row->post = row->gain != 1.0 ? POST_MUL : POST_NONE;
    row->scale = row->gain;
    row->count = p->count;
    row->hi = p->hi;
    row->lo = p->lo;
    int stats = job->l_es != 0 && row->l;
    switch (row->kind) {
    case KIND_NAN: lse = NAN; break;
    case KIND_EMPTY: lse = -INFINITY; break;
    case KIND_IND_TOP:
        if (row->max == INFINITY || row->max > 0.0)
            lse = INFINITY;
        else if (row->max < 0.0)
            lse = -INFINITY;
        else
            lse = log1p((double)(p->count - 1));
        break;
    case KIND_IND_FINITE: lse = log1p((double)(p->count - 1)); break;
    default: {
        double count = (double)p->count;
        if (job->op == SMK_SOFTMAX) {
            /* A product by the reciprocal, rounded once more than a quotient: within
             * the float64 bound too, and a division costs several products. */
            double total = (count + p->hi) + p->lo;
            row->post = POST_MUL;
            row->scale = row->gain / total;
        }
        /* softmax needs only the total (log1p costs as much as a short row). */
        row->log_total = job->op == SMK_SOFTMAX && !stats
                             ? 0.0
                             : log1p(((count - 1.0) + p->hi) + p->lo);
        lse = row->max / row->temperature + row->log_total;
    }
    }
    if (job->op == SMK_LOGSUMEXP && row->l && !stats)
        store_one(row->l, job->lse_type, lse);
    if (stats) {
        double pair[2] = {row->kind == KIND_NAN ? NAN : row->max,
                          row->kind == KIND_FINITE ? row->log_total : NAN};
        memcpy(row->l, &pair[0], sizeof(double));
        memcpy(row->l + job->l_es, &pair[1], sizeof(double));
    }
}

/* Phase 3 on a loaded buffer: the output values, then the store. */
static void buf_output(double *buf, ptrdiff_t n, const smk_job *job, smk_row *row,
                       int exp_stored, ptrdiff_t j0)
{
    ptrdiff_t n4 = round4(n);
    int post = POST_NONE;
    if (row->kind != KIND_FINITE) {
        buf_fill(buf, n4, job, row);
        post = row->post;
    } else if (job->op == SMK_SOFTMAX) {
        if (!exp_stored) {
            smk_partial unused;
            partial_init(&unused);
            buf_sum(buf, n, job, row, 1, &unused);
        }
        post = row->post;
    } else {
        buf_log(buf, n4, job, row);
    }
    store_chunk(job, row->o, j0, n, buf, post, row->scale);
}

/* ---- float32 rows read in place, with exp evaluated on 8 float lanes ----
 *
 * For contiguous float32 rows (no mask, temperature 1) the passes read the input
 * directly and exp is evaluated in float32 arithmetic on 8 lanes, with the parts that
 * decide the accuracy kept exact or carried in double:
 * - d + c == x - max exactly (TwoSum in float32; |c| <= ulp(d)/2);
 * - n = round(d log2(e)), and r_hi = d - n ln2_f (ln2_f = ln 2 rounded to float32) is
 *   exact with a fused multiply-add: |d| < 128 and |n| < 2^7, so r_hi is a multiple of
 *   min(ulp(d), 2^-24) below 0.36 in magnitude, which fits in 24 bits;
 * - r_lo = c - n (ln 2 - ln2_f) is below 4e-6, so its square is negligible;
 * - exp(r) - 1 - r_hi = r_hi^2 q(r_hi) + r_lo exp(r_hi) (r_lo^2 dropped), with q the
 *   Taylor series of (exp(r) - 1 - r) / r^2 up to r^6/8! (truncation below 2.2e-10 for
 *   |r| <= 0.36); its float32 rounding errors are below 1e-8 relative to exp(r);
 * - 1 + r_hi + that small part, times 2^n, is formed and summed in double (exp within
 *   0.62 ulp once rounded to float32);
 * - softmax stores exp rounded to float32 in the output and scales it in place by the
 *   double reciprocal of the sum, rounded once: the second rounding adds at most one
 *   ulp of the result (half an ulp of exp, relative), so the bound is about 1.65 ulp,
 *   and exp is evaluated once per entry;
 * - log_softmax and logsumexp sum the entries below the maximum apart from the count
 *   of those at it, for log1p, as the double path does.
 * Entries with d < -87 (2^n would leave float32's normal range) take exp of the exact
 * double difference from the C library. */

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef unsigned v8u __attribute__((vector_size(32)));

static inline v8f load8(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8f v) { memcpy(p, &v, sizeof v); }
static inline v8f splat8(float a) { return (v8f){a, a, a, a, a, a, a, a}; }
static inline v8f blend8(v8i mask, v8f a, v8f b)
{
    return (v8f)(((v8i)a & mask) | ((v8i)b & ~mask));
}
#if SMK_USE_FMA
/* The generic shuffles below are split into 128-bit steps by GCC; the intrinsics are
 * one instruction each. */
static inline v4d lo_half(v8f v) { return (v4d)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v)); }
static inline v4d hi_half(v8f v) { return (v4d)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1)); }
static inline v8f join8(v4d a, v4d b)
{
    return (v8f)_mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps((__m256d)a)),
                                     _mm256_cvtpd_ps((__m256d)b), 1);
}
#else
static inline v4d lo_half(v8f v)
{
    return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), v4d);
}
static inline v4d hi_half(v8f v)
{
    return __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), v4d);
}
static inline v8f join8(v4d a, v4d b)
{
    v4f fa = __builtin_convertvector(a, v4f), fb = __builtin_convertvector(b, v4f);
    return __builtin_shufflevector(fa, fb, 0, 1, 2, 3, 4, 5, 6, 7);
}
#endif

#if SMK_USE_FMA
static inline v8f fma8(v8f a, v8f b, v8f c)
{
    return (v8f)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
static inline int any8(v8i m) { return _mm256_movemask_ps((__m256)m) != 0; }
#else
/* a * b is exact in double and the sum is rounded once more: exact where the fused
 * result is representable (r_hi), otherwise within float32's rounding error. */
static inline v8f fma8(v8f a, v8f b, v8f c)
{
    v4d l = lo_half(a) * lo_half(b) + lo_half(c);
    v4d h = hi_half(a) * hi_half(b) + hi_half(c);
    return join8(l, h);
}
static inline int any8(v8i m)
{
    int r = 0;
    for (int k = 0; k < 8; k++)
        r |= m[k];
    return r != 0;
}
#endif

/* The shifted score of a row on the 8-lane path, (x - top) / T, is d + c: d rounded to
 * float32 and c the rest. At T = 1, TwoSum in float32 makes d + c == x - top exactly;
 * otherwise the quotient is formed in double (relative error below 2^-52) and split. */
typedef struct {
    v8f top;
    v4d top_d, top_hi, inv_t; /* top_d: the low four lanes' maximum, top_hi: the high */
    float top_f;
    double inv_t_s;
} f32_shift;

static inline f32_shift shift_of(float top, double temperature)
{
    f32_shift s;
    s.top = splat8(top);
    s.top_d = s.top_hi = vsplat(top);
    s.inv_t = vsplat(1.0 / temperature);
    s.top_f = top;
    s.inv_t_s = 1.0 / temperature;
    return s;
}

/* CALL(S, N, P) with compile-time constants equal to the flags scaled, near and plain:
 * each combination is a copy of the inlined loop specialised for it. */
#define WITH_CONSTANT_FLAGS(scaled, near, plain, CALL)                                     \
    do {                                                                                   \
        if (scaled) {                                                                      \
            if (near) {                                                                    \
                if (plain) CALL(1, 1, 1); else CALL(1, 1, 0);                              \
            } else {                                                                       \
                if (plain) CALL(1, 0, 1); else CALL(1, 0, 0);                              \
            }                                                                              \
        } else {                                                                           \
            if (near) {                                                                    \
                if (plain) CALL(0, 1, 1); else CALL(0, 1, 0);                              \
            } else {                                                                       \
                if (plain) CALL(0, 0, 1); else CALL(0, 0, 0);                              \
            }                                                                              \
        }                                                                                  \
    } while (0)

/* Vectors evaluated side by side in the main loops: exp is a long chain of dependent
 * operations, and the independent chains of SIDE_BY_SIDE vectors keep the pipelines
 * busy. */
#define SIDE_BY_SIDE 4
#define EACH for (int k = 0; k < cnt; k++)

static inline __attribute__((always_inline)) void
diff8n(int cnt, const f32_shift *s, int scaled, const v8f *x, v8f *d, v8f *c)
{
    if (!scaled) {
        v8f dd[SIDE_BY_SIDE], virt[SIDE_BY_SIDE];
        EACH dd[k] = x[k] - s->top;
        EACH virt[k] = dd[k] - x[k];
        EACH c[k] = (x[k] - (dd[k] - virt[k])) + (-s->top - virt[k]);
        EACH d[k] = dd[k];
        return;
    }
    v4d a[SIDE_BY_SIDE], b[SIDE_BY_SIDE];
    EACH a[k] = (lo_half(x[k]) - s->top_d) * s->inv_t;
    EACH b[k] = (hi_half(x[k]) - s->top_hi) * s->inv_t;
    EACH d[k] = join8(a[k], b[k]);
    EACH c[k] = join8(a[k] - lo_half(d[k]), b[k] - hi_half(d[k]));
}

/* The scalar twin of diff8n's d, used to find the far entries again. */
static inline float diff1(const f32_shift *s, int scaled, float x)
{
    if (!scaled)
        return x - s->top_f;
    return (float)(((double)x - (double)s->top_f) * s->inv_t_s);
}

static inline double exp_far(const f32_shift *s, int scaled, float x)
{
    double d = (double)x - (double)s->top_f;
    return exp(scaled ? d * s->inv_t_s : d);
}

/* exp(d + c) = scale * (1 + r_hi + small), valid where *slow is false. */
static inline __attribute__((always_inline)) void
exp8n_near(int cnt, int near, const v8f *d_in, const v8f *c_in, v8f *r_hi, v8f *small,
           v8f *scale, v8i *slow);

static inline __attribute__((always_inline)) void
exp8n(int cnt, const v8f *d_in, const v8f *c_in, v8f *r_hi, v8f *small, v8f *scale,
      v8i *slow)
{
    exp8n_near(cnt, 0, d_in, c_in, r_hi, small, scale, slow);
}

/* With near, the caller knows that every d is >= -87 (and finite): no far lanes. */
static inline __attribute__((always_inline)) void
exp8n_near(int cnt, int near, const v8f *d_in, const v8f *c_in, v8f *r_hi, v8f *small,
           v8f *scale, v8i *slow)
{
    const v8f shifter = splat8(0x1.8p23f);
    const v8f ln2_f = splat8(0x1.62e430p-1f);
    const v8f ln2_rest = splat8(-0x1.05c610p-29f);
    v8f d[SIDE_BY_SIDE], c[SIDE_BY_SIDE], t[SIDE_BY_SIDE], n[SIDE_BY_SIDE];
    v8f rl[SIDE_BY_SIDE], q[SIDE_BY_SIDE], tail[SIDE_BY_SIDE];
    /* The far lanes (-inf included, where c is NaN) are computed on 0 so that no NaN
     * reaches the sums; their callers replace them. */
    if (near) {
        EACH slow[k] = (v8i){0, 0, 0, 0, 0, 0, 0, 0};
        EACH d[k] = d_in[k];
        EACH c[k] = c_in[k];
    } else {
        EACH slow[k] = d_in[k] < splat8(-87.0f);
        EACH d[k] = blend8(slow[k], splat8(0.0f), d_in[k]);
        EACH c[k] = blend8(slow[k], splat8(0.0f), c_in[k]);
    }
    EACH t[k] = d[k] * splat8(0x1.715476p+0f) + shifter;
    EACH n[k] = t[k] - shifter;
    EACH r_hi[k] = fma8(-n[k], ln2_f, d[k]);
    EACH rl[k] = fma8(-n[k], ln2_rest, c[k]);
    EACH q[k] = fma8(splat8(1.0f / 40320.0f), r_hi[k], splat8(1.0f / 5040.0f));
    EACH q[k] = fma8(q[k], r_hi[k], splat8(1.0f / 720.0f));
    EACH q[k] = fma8(q[k], r_hi[k], splat8(1.0f / 120.0f));
    EACH q[k] = fma8(q[k], r_hi[k], splat8(1.0f / 24.0f));
    EACH q[k] = fma8(q[k], r_hi[k], splat8(1.0f / 6.0f));
    EACH q[k] = fma8(q[k], r_hi[k], splat8(0.5f));
    EACH tail[k] = r_hi[k] * (r_hi[k] * q[k]);
    EACH small[k] = fma8(rl[k], (splat8(1.0f) + r_hi[k]) + tail[k], tail[k]);
    EACH scale[k] = (v8f)(((v8u)t[k] + 127u) << 23);
}

static int f32_fast(const smk_job *job)
{
    if (job->in_type != SMK_F32 || job->x_es != 4 || job->m || job->block)
        return 0;
    if (job->op == SMK_LOGSUMEXP)
        return 1;
    return job->out_type == SMK_F32 && job->o_es == 4;
}

static int f32_fast_row(const smk_job *job, const smk_row *row)
{
    /* 1/T and (x - top)/T stay normal numbers in double. */
    return f32_fast(job) && row->kind == KIND_FINITE && row->temperature > 0x1p-900 &&
           row->temperature < 0x1p900;
}

static __attribute__((unused)) void f32_stats(const float *x, ptrdiff_t n, smk_partial *part)
{
    /* Two running maxima, so that the compare-and-select chains overlap; the minimum
     * tells whether the row can have entries far below the maximum. */
    v8f mx = splat8(-INFINITY), mx2 = mx, mn = splat8(INFINITY), mn2 = mn;
    v8i nan = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v8f v = load8(x + i), w = load8(x + i + 8);
        mx = blend8(v > mx, v, mx);
        mx2 = blend8(w > mx2, w, mx2);
        mn = blend8(v < mn, v, mn);
        mn2 = blend8(w < mn2, w, mn2);
        nan |= (v != v) | (w != w);
    }
    for (; i + 8 <= n; i += 8) {
        v8f v = load8(x + i);
        mx = blend8(v > mx, v, mx);
        mn = blend8(v < mn, v, mn);
        nan |= v != v;
    }
    mx = blend8(mx2 > mx, mx2, mx);
    mn = blend8(mn2 < mn, mn2, mn);
    for (int k = 0; k < 8; k++) {
        if (mx[k] > part->max)
            part->max = mx[k];
        if (mn[k] < part->min)
            part->min = mn[k];
        if (nan[k])
            part->has_nan = 1;
    }
    for (; i < n; i++)
        stats_one(part, x[i]);
}

/* The entries whose exp leaves the 8-lane path (d < -87), found again after the
 * vector loop with the same arithmetic; kept out of the loop so that no call forces
 * its vectors to memory. */
static __attribute__((noinline)) double f32_far_sum(const float *x, ptrdiff_t n,
                                                    const f32_shift *s, int scaled)
{
    double rest = 0.0;
    for (ptrdiff_t i = 0; i < n; i++)
        if (diff1(s, scaled, x[i]) < -87.0f)
            rest += exp_far(s, scaled, x[i]);
    return rest;
}

static __attribute__((noinline)) void f32_far_out(const float *x, float *o, ptrdiff_t n,
                                                  const f32_shift *s, int scaled,
                                                  double scale)
{
    for (ptrdiff_t i = 0; i < n; i++)
        if (diff1(s, scaled, x[i]) < -87.0f)
            o[i] = (float)(exp_far(s, scaled, x[i]) * scale);
}

/* The last n % 8 entries of a row, with the other lanes set to fill. */
static inline v8f load_part(const float *p, ptrdiff_t m, float fill)
{
    float t[8];
    for (int k = 0; k < 8; k++)
        t[k] = k < m ? p[k] : fill;
    return load8(t);
}

static inline v8i lanes_below(ptrdiff_t m)
{
    const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    int mm = (int)m;
    return lane < (v8i){mm, mm, mm, mm, mm, mm, mm, mm};
}

static void add_partial(smk_partial *part, double rest)
{
    double t = part->hi + rest, bp = t - part->hi;
    part->lo += (part->hi - (t - bp)) + (rest - bp);
    part->hi = t;
}

/* Accumulators of a pass: the double sums of exp over the entries below the maximum
 * (one pair per interleaved vector), the count of those at it, and the far lanes. */
typedef struct {
    v4d lo[SIDE_BY_SIDE], hi[SIDE_BY_SIDE];
    v8i count, far;
} f32_acc;

static inline void acc_init(f32_acc *a)
{
    for (int k = 0; k < SIDE_BY_SIDE; k++)
        a->lo[k] = a->hi[k] = vsplat(0.0);
    a->count = a->far = (v8i){0, 0, 0, 0, 0, 0, 0, 0};
}

static void acc_finish(const f32_acc *a, double rest, smk_partial *part)
{
    v4d s = vsplat(0.0);
    for (int k = 0; k < SIDE_BY_SIDE; k++)
        s += a->lo[k] + a->hi[k];
    for (int k = 0; k < 4; k++)
        rest += s[k];
    for (int k = 0; k < 8; k++)
        part->count += a->count[k];
    add_partial(part, rest);
}

/* exp of cnt vectors, added to the sums (the entries at the maximum counted apart);
 * with o, also stored (rounded once to float32: within 0.62 ulp of exp). With near,
 * no entry is far (see exp8n_near); with plain (softmax without the log1p form), the
 * entries at the maximum are summed with the others: their exp is exactly 1. */
static inline __attribute__((always_inline)) void
sum8n(int cnt, int near, int plain, const f32_shift *s, int scaled, const v8f *x,
      const v8i *valid, float *o, f32_acc *a)
{
    v8f d[SIDE_BY_SIDE], c[SIDE_BY_SIDE], rh[SIDE_BY_SIDE], sm[SIDE_BY_SIDE], sc[SIDE_BY_SIDE];
    v8i slow[SIDE_BY_SIDE], is_top[SIDE_BY_SIDE];
    v4d ea[SIDE_BY_SIDE], eb[SIDE_BY_SIDE];
    diff8n(cnt, s, scaled, x, d, c);
    exp8n_near(cnt, near, d, c, rh, sm, sc, slow);
    if (!plain) {
        EACH is_top[k] = x[k] == s->top;
        EACH a->count -= is_top[k];
    }
    if (!near)
        EACH a->far |= slow[k] & valid[k];
    /* The entries at the maximum add exactly 1 each: counted, not summed (and stored
     * as 1); the far lanes are stored as 0, for the second pass to find. */
    if (!plain && !near)
        EACH sc[k] = blend8(slow[k] | is_top[k], splat8(0.0f), sc[k]);
    else if (!plain)
        EACH sc[k] = blend8(is_top[k], splat8(0.0f), sc[k]);
    else if (!near)
        EACH sc[k] = blend8(slow[k], splat8(0.0f), sc[k]);
    EACH ea[k] = vfma(lo_half(sc[k]), lo_half(rh[k]) + lo_half(sm[k]), lo_half(sc[k]));
    EACH eb[k] = vfma(hi_half(sc[k]), hi_half(rh[k]) + hi_half(sm[k]), hi_half(sc[k]));
    if (o && plain)
        EACH store8(o + 8 * k, join8(ea[k], eb[k]));
    else if (o)
        EACH store8(o + 8 * k, blend8(is_top[k], splat8(1.0f), join8(ea[k], eb[k])));
    EACH a->lo[k] += ea[k];
    EACH a->hi[k] += eb[k];
}

/* Sum of exp over the entries below the maximum and count of those at it; with o
 * (softmax, first of two passes), exp is also stored in o. The last n % 8 entries go
 * through the same lanes, padded with -inf (which adds nothing). */
static inline __attribute__((always_inline)) void
f32_sum_impl(const float *x, float *o, ptrdiff_t n, const f32_shift *s, int scaled,
             int near, int plain, smk_partial *part)
{
    f32_acc a;
    acc_init(&a);
    v8i all[SIDE_BY_SIDE];
    for (int k = 0; k < SIDE_BY_SIDE; k++)
        all[k] = (v8i){-1, -1, -1, -1, -1, -1, -1, -1};
    ptrdiff_t i = 0, n8 = n & ~(ptrdiff_t)7;
    for (; i + 8 * SIDE_BY_SIDE <= n8; i += 8 * SIDE_BY_SIDE) {
        v8f v[SIDE_BY_SIDE];
        for (int k = 0; k < SIDE_BY_SIDE; k++)
            v[k] = load8(x + i + 8 * k);
        sum8n(SIDE_BY_SIDE, near, plain, s, scaled, v, all, o ? o + i : NULL, &a);
    }
    for (; i < n8; i += 8) {
        v8f v = load8(x + i);
        sum8n(1, near, plain, s, scaled, &v, all, o ? o + i : NULL, &a);
    }
    if (i < n) {
        float t[8];
        v8f v = load_part(x + i, n - i, -INFINITY);
        v8i valid = lanes_below(n - i);
        /* not near: the padding is -inf */
        sum8n(1, 0, plain, s, scaled, &v, &valid, o ? t : NULL, &a);
        if (o)
            memcpy(o + i, t, (size_t)(n - i) * sizeof(float));
    }
    double rest = 0.0;
    if (any8(a.far))
        rest += f32_far_sum(x, n, s, scaled);
    acc_finish(&a, rest, part);
}

static __attribute__((unused)) void f32_sum(const float *x, float *o, ptrdiff_t n, const f32_shift *s, int scaled,
                    int near, int plain, smk_partial *part)
{
#define F32_SUM_CALL(S, N, P) f32_sum_impl(x, o, n, s, S, N, P, part)
    WITH_CONSTANT_FLAGS(scaled, near, plain, F32_SUM_CALL);
#undef F32_SUM_CALL
}

/* softmax, second pass: the stored exp times the reciprocal of the sum, in float32
 * arithmetic. 2^64 / S = a + b as two float32 (a rounded, b the rest rounded: together
 * within 2^-48 of it), and e a + e b is formed with the product e a exact in a fused
 * multiply-add, then scaled by 2^-64 (exact unless the result is subnormal). The 2^64
 * keeps e b, about 2^-24 of the result, a normal number, so that its rounding is
 * negligible even for results near float32's smallest normal number. Rounded once
 * for normal results: within 1 ulp of exp / sum plus the 0.62 ulp of exp, below
 * 2 ulp. The entries stored as 0 are the far ones (none when near), whose exp is
 * evaluated again in double so that subnormal results are rounded once. */
static inline __attribute__((always_inline)) void
f32_scale_out_impl(const float *x, float *o, ptrdiff_t n, const f32_shift *s, int scaled,
                   int near, double scale)
{
    double up = scale * 0x1p64;
    float a_f = (float)up;
    v8f a = splat8(a_f), b = splat8((float)(up - (double)a_f)), down = splat8(0x1p-64f);
    v8i zero = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t i = 0, n8 = n & ~(ptrdiff_t)7;
    for (; i + 16 <= n8; i += 16) {
        v8f e = load8(o + i), f = load8(o + i + 8);
        if (!near)
            zero |= (e == splat8(0.0f)) | (f == splat8(0.0f));
        store8(o + i, fma8(e, a, e * b) * down);
        store8(o + i + 8, fma8(f, a, f * b) * down);
    }
    for (; i < n8; i += 8) {
        v8f e = load8(o + i);
        if (!near)
            zero |= e == splat8(0.0f);
        store8(o + i, fma8(e, a, e * b) * down);
    }
    if (i < n) {
        float t[8];
        v8f e = load_part(o + i, n - i, 1.0f);
        zero |= e == splat8(0.0f);
        store8(t, fma8(e, a, e * b) * down);
        memcpy(o + i, t, (size_t)(n - i) * sizeof(float));
    }
    if (any8(zero))
        f32_far_out(x, o, n, s, scaled, scale);
}

static __attribute__((unused)) void f32_scale_out(const float *x, float *o, ptrdiff_t n, const f32_shift *s,
                          int scaled, int near, double scale)
{
    if (near)
        f32_scale_out_impl(x, o, n, s, scaled, 1, scale);
    else
        f32_scale_out_impl(x, o, n, s, scaled, 0, scale);
}

/* softmax in place (the output is the input): exp is evaluated again from each input
 * vector just before it is overwritten, the far entries from the loaded values. */
static inline __attribute__((always_inline)) void
f32_softmax_in_place_impl(float *x, ptrdiff_t n, const f32_shift *s, int scaled,
                          double scale)
{
    v4d vs = vsplat(scale);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = load8(x + i), d, c, rh, sm, sc;
        v8i slow;
        diff8n(1, s, scaled, &v, &d, &c);
        exp8n(1, &d, &c, &rh, &sm, &sc, &slow);
        v4d a = lo_half(sc) * vs, b = hi_half(sc) * vs;
        v8f p = join8(vfma(a, lo_half(rh) + lo_half(sm), a), vfma(b, hi_half(rh) + hi_half(sm), b));
        if (any8(slow)) {
            float xs[8], ps[8];
            memcpy(xs, &v, sizeof xs);
            memcpy(ps, &p, sizeof ps);
            for (int k = 0; k < 8; k++)
                if (diff1(s, scaled, xs[k]) < -87.0f)
                    ps[k] = (float)(exp_far(s, scaled, xs[k]) * scale);
            memcpy(&p, ps, sizeof ps);
        }
        store8(x + i, p);
    }
    for (; i < n; i++)
        x[i] = (float)(exp_far(s, scaled, x[i]) * scale);
}

static void f32_softmax_in_place(float *x, ptrdiff_t n, const f32_shift *s, int scaled,
                                 double scale)
{
    if (scaled)
        f32_softmax_in_place_impl(x, n, s, 1, scale);
    else
        f32_softmax_in_place_impl(x, n, s, 0, scale);
}

static __attribute__((unused)) void f32_log_softmax_out(const float *x, float *o, ptrdiff_t n, float top,
                                double temperature, double log_total)
{
    v4d vt = vsplat(top), vl = vsplat(log_total), tv = vsplat(temperature);
    ptrdiff_t i = 0;
    if (temperature == 1.0) {
        for (; i + 8 <= n; i += 8) {
            v8f v = load8(x + i);
            store8(o + i, join8((lo_half(v) - vt) - vl, (hi_half(v) - vt) - vl));
        }
    } else {
        for (; i + 8 <= n; i += 8) {
            v8f v = load8(x + i);
            store8(o + i, join8((lo_half(v) - vt) / tv - vl, (hi_half(v) - vt) / tv - vl));
        }
    }
    for (; i < n; i++)
        o[i] = (float)(((double)x[i] - (double)top) / temperature - log_total);
}

#if SMK_USE_AVX512
#include "kernel_avx512.h"
#define F32_STATS w_stats
#define F32_SUM w_sum
#define F32_SCALE_OUT w_scale_out
#define F32_LOG_SOFTMAX_OUT w_log_softmax_out
#else
#define F32_STATS f32_stats
#define F32_SUM f32_sum
#define F32_SCALE_OUT f32_scale_out
#define F32_LOG_SOFTMAX_OUT f32_log_softmax_out
#endif

/* One phase over the elements [c0, c1) of a float32 row; returns 0 when the row is
 * not one for this path. */
static int f32_phase(const smk_job *job, smk_row *row, int phase, ptrdiff_t c0,
                     ptrdiff_t c1, smk_partial *part)
{
    const float *x = (const float *)(void *)row->x + c0;
    if (phase == 1) {
        if (!f32_fast(job))
            return 0;
        F32_STATS(x, c1 - c0, part);
        return 1;
    }
    if (!f32_fast_row(job, row))
        return 0;
    float top = (float)row->max;
    int scaled = row->temperature != 1.0;
    f32_shift s = shift_of(top, row->temperature);
    float *o = job->op == SMK_LOGSUMEXP ? NULL : (float *)(void *)row->o + c0;
    /* The two-pass softmax stores exp in the output and reads the input again for the
     * far entries, so it needs an output apart from the input (the caller computes a
     * partial overlap aside; here only out is x remains). */
    int stored = job->op == SMK_SOFTMAX && (const float *)o != x;
    /* No entry of the row is far below the maximum (with a margin for the rounding of
     * d), so the far lanes need no care; min is -inf when one entry is. */
    int near = row_is_near(row, 86.0);
    /* softmax without the row statistics needs the total only, not the log1p form. */
    int plain = job->op == SMK_SOFTMAX && !(job->l_es && row->l);
    if (phase == 2)
        F32_SUM(x, stored ? o : NULL, c1 - c0, &s, scaled, near, plain, part);
    else if (stored)
        F32_SCALE_OUT(x, o, c1 - c0, &s, scaled, near, row->scale);
    else if (job->op == SMK_SOFTMAX)
        f32_softmax_in_place(o, c1 - c0, &s, scaled, row->scale);
    else
        F32_LOG_SOFTMAX_OUT(x, o, c1 - c0, top, row->temperature, row->log_total);
    return 1;
}

/* One phase of a row over the elements [c0, c1), reloading chunks into buf.
 * For softmax into float32 or float64, phase 2 writes exp into the output and phase 3
 * only scales it, so that exp is evaluated once: the extra rounding of exp to the
 * output dtype costs at most half an ulp, within the bounds. */
static void row_phase(const smk_job *job, smk_row *row, int phase, ptrdiff_t c0, ptrdiff_t c1,
                      double *buf, smk_partial *part)
{
    int exp_in_out = job->op == SMK_SOFTMAX && row->kind == KIND_FINITE &&
                     (job->out_type == SMK_F32 || job->out_type == SMK_F64);
    partial_init(part);
    if (f32_phase(job, row, phase, c0, c1, part))
        return;
    for (ptrdiff_t j0 = c0; j0 < c1; j0 += SMK_CHUNK) {
        ptrdiff_t n = c1 - j0 < SMK_CHUNK ? c1 - j0 : SMK_CHUNK;
        ptrdiff_t n4 = round4(n);
        if (phase == 3 && exp_in_out) {
            load_typed(row->o + j0 * job->o_es, job->o_es, job->out_type, n, buf);
            pad(buf, n);
            store_chunk(job, row->o, j0, n, buf, row->post, row->scale);
            continue;
        }
        load_chunk(job, row->x, row->m, j0, n, buf);
        if (phase == 1)
            buf_stats(buf, n4, part);
        else if (phase == 2) {
            if (row->kind == KIND_FINITE) {
                buf_sum(buf, n, job, row, exp_in_out, part);
                if (exp_in_out)
                    store_chunk(job, row->o, j0, n, buf, POST_NONE, 1.0);
            } else if (row->kind == KIND_IND_TOP || row->kind == KIND_IND_FINITE)
                buf_count(buf, n4, row->kind, row->max, part);
        } else
            buf_output(buf, n, job, row, 0, j0);
    }
}

/* A whole row already in buf (n <= SMK_CHUNK): all phases without reloading. */
static void row_in_buffer(const smk_job *job, smk_row *row, double *buf, ptrdiff_t n,
                          int store)
{
    ptrdiff_t n4 = round4(n);
    smk_partial part;
    partial_init(&part);
    buf_stats(buf, n4, &part);
    row_decide(job, row, &part);
    partial_init(&part);
    int keep_exp = job->op == SMK_SOFTMAX && row->kind == KIND_FINITE;
    if (row->kind == KIND_FINITE)
        buf_sum(buf, n, job, row, keep_exp, &part);
    else if (row->kind == KIND_IND_TOP || row->kind == KIND_IND_FINITE)
        buf_count(buf, n4, row->kind, row->max, &part);
    row_sums(job, row, &part);
    if (job->op == SMK_LOGSUMEXP)
        return;
    int post = POST_NONE;
    if (row->kind != KIND_FINITE) {
        buf_fill(buf, n4, job, row);
        post = row->post;
    } else if (job->op == SMK_SOFTMAX)
        post = row->post;
    else
        buf_log(buf, n4, job, row);
    if (store)
        store_chunk(job, row->o, 0, n, buf, post, row->scale);
    else if (post == POST_MUL) {
        for (ptrdiff_t i = 0; i < n; i++)
            buf[i] *= row->scale;
    } else if (post == POST_DIV) {
        for (ptrdiff_t i = 0; i < n; i++)
            buf[i] /= row->scale;
    }
}


/* ---- sixteen float32 rows side by side ----
 *
 * When the rows, not the entries of a row, are adjacent in memory (a reduction over
 * axis 0 of a C-contiguous matrix), entry j of sixteen consecutive rows is one cache
 * line: each lane of two 8-lane vectors follows one row, with the arithmetic of the
 * row path above, so the input is read in place, once per pass, from cache. Short
 * contiguous rows are transposed into this layout through a small buffer. Blocks
 * with a row that is not finite (NaN, +inf, every entry -inf), a mask, or rows of
 * different temperatures go the general way. */

#define LANES 16
#define SHORT_ROW 64
/* The hardware prefetchers do not follow a stride of a whole row: the lines this many
 * steps ahead are requested explicitly (a prefetch never faults). */
#define PREFETCH_AHEAD 8

static inline f32_shift shift_lanes(v8f top, double temperature)
{
    f32_shift s;
    s.top = top;
    s.top_d = lo_half(top);
    s.top_hi = hi_half(top);
    s.inv_t = vsplat(1.0 / temperature);
    s.top_f = top[0];
    s.inv_t_s = 1.0 / temperature;
    return s;
}

/* Whether the sixteen rows have one finite temperature (rows side by side share it). */
static int lanes_share_a_temperature(const smk_row *rows)
{
    for (int b = 0; b < LANES; b++)
        if (rows[b].tmode != SMK_T_FINITE || rows[b].temperature != rows[0].temperature)
            return 0;
    return 1;
}

/* logsumexp of sixteen finite rows side by side, max / T + log_total, into their lse
 * (as row_sums forms it). */
static void store_lanes_lse(const smk_job *job, const smk_row *rows, const v4d *top,
                            double temperature, const v4d *log_total)
{
    for (int q = 0; q < 4; q++) {
        v4d lse = top[q] / vsplat(temperature) + log_total[q];
        for (int k = 0; k < 4; k++)
            store_one(rows[4 * q + k].l, job->lse_type, lse[k]);
    }
}

/* Eight doubles (lo: lanes 0-3, hi: lanes 4-7) as a + b, a rounded to float32 and b
 * the rest rounded: within 2^-48 of them (the factors of the scale passes). */
static inline void two_floats(v4d lo, v4d hi, v8f *a, v8f *b)
{
    *a = join8(lo, hi);
    *b = join8(lo - lo_half(*a), hi - hi_half(*a));
}

/* The exp-and-sum pass of sixteen rows side by side (see f32_lanes), two steps at a
 * time: four vectors side by side, as on the row path. near and plain as in sum8n;
 * with e_buf, exp is stored there. */
static inline __attribute__((always_inline, unused)) void
lanes_sum(int scaled, int near, int plain, const f32_shift *s, const float *x, ptrdiff_t xs,
          float *e_buf, ptrdiff_t n, v4d *sum, v8i *count, v8i *far)
{
    for (ptrdiff_t j = 0; j < n; j += 2) {
        int cnt = j + 1 < n ? 4 : 2;
        v8f v[4], d[4], c[4], rh[4], sm[4], sc[4];
        v8i slow[4], is_top[4];
        for (int k = 0; k < cnt; k++) {
            int h = k % 2;
            v[k] = load8(x + (j + k / 2) * xs + 8 * h);
            diff8n(1, &s[h], scaled, &v[k], &d[k], &c[k]);
        }
        if (cnt == 4)
            exp8n_near(4, near, d, c, rh, sm, sc, slow);
        else
            exp8n_near(2, near, d, c, rh, sm, sc, slow);
        for (int k = 0; k < cnt; k++) {
            int h = k % 2;
            if (!plain) {
                is_top[k] = v[k] == s[h].top;
                count[h] -= is_top[k];
            }
            if (!near)
                far[h] |= slow[k];
            if (!plain && !near)
                sc[k] = blend8(slow[k] | is_top[k], splat8(0.0f), sc[k]);
            else if (!plain)
                sc[k] = blend8(is_top[k], splat8(0.0f), sc[k]);
            else if (!near)
                sc[k] = blend8(slow[k], splat8(0.0f), sc[k]);
            v4d ea = vfma(lo_half(sc[k]), lo_half(rh[k]) + lo_half(sm[k]), lo_half(sc[k]));
            v4d eb = vfma(hi_half(sc[k]), hi_half(rh[k]) + hi_half(sm[k]), hi_half(sc[k]));
            if (e_buf && plain)
                store8(e_buf + (j + k / 2) * LANES + 8 * h, join8(ea, eb));
            else if (e_buf)
                store8(e_buf + (j + k / 2) * LANES + 8 * h,
                       blend8(is_top[k], splat8(1.0f), join8(ea, eb)));
            sum[2 * h] += ea;
            sum[2 * h + 1] += eb;
        }
    }
}

/* Entry j of row b at x[j * xs + b], b < 16; results at o[j * os + b] (o apart from
 * x), or into the rows' lse; softmax keeps exp in e_buf[j * 16 + b] between its
 * passes. Returns 0, having written nothing, when a row is not for this path. */
static int f32_lanes(const smk_job *job, smk_row *rows, const float *x, ptrdiff_t xs,
                     float *e_buf, float *o, ptrdiff_t os, ptrdiff_t n)
{
    double temperature = rows[0].temperature;
    if (!lanes_share_a_temperature(rows) || !(temperature > 0x1p-900 && temperature < 0x1p900))
        return 0;
    v8f mx[2] = {splat8(-INFINITY), splat8(-INFINITY)};
    v8f mn[2] = {splat8(INFINITY), splat8(INFINITY)};
    v8i bad = {0, 0, 0, 0, 0, 0, 0, 0};
    for (ptrdiff_t j = 0; j < n; j++) {
        for (int h = 0; h < 2; h++) {
            v8f v = load8(x + j * xs + 8 * h);
            mx[h] = blend8(v > mx[h], v, mx[h]);
            mn[h] = blend8(v < mn[h], v, mn[h]);
            bad |= v != v;
        }
    }
    for (int h = 0; h < 2; h++)
        bad |= (mx[h] == splat8(INFINITY)) | (mx[h] == splat8(-INFINITY));
    if (any8(bad))
        return 0;
    int scaled = temperature != 1.0;
    f32_shift s[2] = {shift_lanes(mx[0], temperature), shift_lanes(mx[1], temperature)};
    /* As on the row path: every entry within 86 of its row's maximum, and softmax
     * without the row statistics. */
    v4l far_rows = {0, 0, 0, 0};
    for (int h = 0; h < 2; h++) {
        far_rows |= (lo_half(mn[h]) - lo_half(mx[h])) * s[h].inv_t < vsplat(-86.0);
        far_rows |= (hi_half(mn[h]) - hi_half(mx[h])) * s[h].inv_t < vsplat(-86.0);
    }
    int near = !(far_rows[0] | far_rows[1] | far_rows[2] | far_rows[3]);
    int plain = job->op == SMK_SOFTMAX && !rows[0].l;
    v4d sum[4] = {vsplat(0.0), vsplat(0.0), vsplat(0.0), vsplat(0.0)};
    v8i count[2] = {{0}, {0}}, far[2] = {{0}, {0}};
    float *e_out = job->op == SMK_SOFTMAX ? e_buf : NULL;
#if SMK_USE_AVX512
#define LANES_SUM_CALL(S, N, P) w_lanes_sum(S, N, P, s, x, xs, e_out, n, sum, count, far)
#else
#define LANES_SUM_CALL(S, N, P) lanes_sum(S, N, P, s, x, xs, e_out, n, sum, count, far)
#endif
    WITH_CONSTANT_FLAGS(scaled, near, plain, LANES_SUM_CALL);
#undef LANES_SUM_CALL
    v4d factor[4], top_d[4];
    for (int b = 0; b < LANES; b++)
        top_d[b / 4][b % 4] = s[b / 8].top[b % 8];
    int any_far = any8(far[0] | far[1]);
    if (job->op != SMK_SOFTMAX && !any_far && !job->l_es) {
        /* log_softmax and logsumexp: the log-normalizers, log1p((count - 1) + sum),
         * on four lanes at a time. */
        for (int q = 0; q < 4; q++) {
            v4d count_d = q % 2 ? hi_half(__builtin_convertvector(count[q / 2], v8f))
                                : lo_half(__builtin_convertvector(count[q / 2], v8f));
            factor[q] = vlog1p((count_d - vsplat(1.0)) + sum[q]);
        }
        if (job->op == SMK_LOGSUMEXP) {
            store_lanes_lse(job, rows, top_d, temperature, factor);
            return 1;
        }
    } else if (job->op == SMK_SOFTMAX && !any_far && !rows[0].l) {
        /* The usual softmax block: each row's factor, gain / total, on four lanes at a
         * time (the totals are (count + sum) as row_sums forms them). */
        for (int q = 0; q < 4; q++) {
            v4d count_d = q % 2 ? hi_half(__builtin_convertvector(count[q / 2], v8f))
                                : lo_half(__builtin_convertvector(count[q / 2], v8f));
            v4d gain;
            for (int k = 0; k < 4; k++)
                gain[k] = rows[4 * q + k].gain;
            factor[q] = gain / (count_d + sum[q]);
        }
    } else {
        /* Each row's partial, completed by the far entries, then the row's decisions. */
        for (int b = 0; b < LANES; b++) {
            int h = b / 8, k = b % 8;
            smk_partial part;
            partial_init(&part);
            part.max = s[h].top[k];
            part.count = count[h][k];
            double rest = sum[2 * h + k / 4][k % 4];
            if (far[h][k]) {
                f32_shift one = shift_of(s[h].top[k], temperature);
                for (ptrdiff_t j = 0; j < n; j++) {
                    float xv = x[j * xs + b];
                    if (diff1(&one, scaled, xv) < -87.0f)
                        rest += exp_far(&one, scaled, xv);
                }
            }
            add_partial(&part, rest);
            row_decide(job, &rows[b], &part);
            row_sums(job, &rows[b], &part);
        }
        if (job->op == SMK_LOGSUMEXP)
            return 1;
        for (int b = 0; b < LANES; b++)
            factor[b / 4][b % 4] = job->op == SMK_SOFTMAX ? rows[b].scale : rows[b].log_total;
    }
    if (job->op == SMK_SOFTMAX) {
        /* Each row's factor as two float32, scaled by 2^64 (see f32_scale_out_impl). */
        v8f a[2], b[2];
        const v8f down = splat8(0x1p-64f);
        for (int h = 0; h < 2; h++)
            two_floats(factor[2 * h] * vsplat(0x1p64), factor[2 * h + 1] * vsplat(0x1p64),
                       &a[h], &b[h]);
        for (ptrdiff_t j = 0; j < n; j++) {
            __builtin_prefetch(o + (j + PREFETCH_AHEAD) * os, 1, 0);
            for (int h = 0; h < 2; h++) {
                v8f e = load8(e_buf + j * LANES + 8 * h);
                store8(o + j * os + 8 * h, fma8(e, a[h], e * b[h]) * down);
            }
        }
        for (int b = 0; b < LANES && any_far; b++) {
            if (!far[b / 8][b % 8])
                continue;
            f32_shift one = shift_of((float)rows[b].max, temperature);
            for (ptrdiff_t j = 0; j < n; j++) {
                float xv = x[j * xs + b];
                if (diff1(&one, scaled, xv) < -87.0f)
                    o[j * os + b] = (float)(exp_far(&one, scaled, xv) * rows[b].scale);
            }
        }
        return 1;
    }
    v4d tv = vsplat(temperature);
    for (ptrdiff_t j = 0; j < n; j++)
        for (int h = 0; h < 2; h++) {
            v8f v = load8(x + j * xs + 8 * h);
            v4d a = lo_half(v) - top_d[2 * h], c = hi_half(v) - top_d[2 * h + 1];
            if (scaled) {
                a = a / tv;
                c = c / tv;
            }
            store8(o + j * os + 8 * h, join8(a - factor[2 * h], c - factor[2 * h + 1]));
        }
    return 1;
}

static int f64_lanes_job(const smk_job *job)
{
    return job->in_type == SMK_F64 && !job->m && !job->bsum &&
           (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F64);
}

static int f32_lanes_job(const smk_job *job)
{
    return job->in_type == SMK_F32 && !job->m && !job->bsum &&
           (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F32);
}

/* Sixteen short rows r0 .. r0 + 15 gathered into a transposing buffer: entry j of
 * row b at in[j * 16 + b] (elements of size bytes: inlined, so that each copy is one
 * move of a known size). */
static inline __attribute__((always_inline)) void
short_rows_gather(const smk_job *job, ptrdiff_t r0, smk_row *rows, char *in, size_t size)
{
    for (int b = 0; b < LANES; b++) {
        if (b && job->ndim == 1 && !job->t && !job->g) {
            /* One outer dimension: the next row is one stride on. */
            rows[b] = rows[b - 1];
            rows[b].x += job->xs[0];
            rows[b].o = rows[b].o ? rows[b].o + job->os[0] : NULL;
            rows[b].l = rows[b].l ? rows[b].l + job->ls[0] : NULL;
        } else {
            row_pointers(job, r0 + b, &rows[b]);
        }
    }
    /* The loop bounds and strides in locals: the stores could alias the job. */
    ptrdiff_t n = job->len, es = job->x_es;
    for (int b = 0; b < LANES; b++) {
        const char *p = rows[b].x;
        for (ptrdiff_t j = 0; j < n; j++)
            memcpy(in + (j * LANES + b) * size, p + j * es, size);
    }
}

/* The results of short_rows_gather's rows, from the same layout, into their outputs. */
static inline __attribute__((always_inline)) void
short_rows_scatter(const smk_job *job, smk_row *rows, const char *res, size_t size)
{
    ptrdiff_t n = job->len, es = job->o_es;
    for (int b = 0; b < LANES; b++) {
        char *p = rows[b].o;
        for (ptrdiff_t j = 0; j < n; j++)
            memcpy(p + j * es, res + (j * LANES + b) * size, size);
    }
}

/* Sixteen short contiguous float32 rows r0 .. r0 + 15, through a transposing buffer. */
static int f32_short_rows(const smk_job *job, ptrdiff_t r0)
{
    smk_row rows[LANES];
    float in[SHORT_ROW * LANES], res[SHORT_ROW * LANES];
    short_rows_gather(job, r0, rows, (char *)in, sizeof(float));
    if (!f32_lanes(job, rows, in, LANES, res, res, LANES, job->len))
        return 0;
    if (job->op != SMK_LOGSUMEXP)
        short_rows_scatter(job, rows, (const char *)res, sizeof(float));
    return 1;
}

/* The exp-and-sum pass of f64_lanes (near and plain as in sum_n); with e_out, exp
 * overwrites the entries there. */
static inline __attribute__((always_inline)) void
lanes64_sum(int near, int plain, const double *in, double *e_out, const v4d *mx,
            double temperature, ptrdiff_t n, v4d *sum, v4d *comp, v4l *count)
{
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    for (ptrdiff_t j = 0; j < n; j++) {
        v4d x[4], hi[4], lo[4], e[4];
        for (int q = 0; q < 4; q++) {
            x[q] = vload(in + j * LANES + 4 * q);
            shifted_v(x[q], mx[q], temperature, scaled, 1, exact, &hi[q], &lo[q]);
        }
        vexp_near(4, near, hi, lo, 1, e);
        for (int q = 0; q < 4; q++) {
            if (e_out)
                vstore(e_out + j * LANES + 4 * q, e[q]);
            v4d ek = e[q];
            if (!plain) {
                v4l is_top = x[q] == mx[q];
                count[q] -= is_top;
                ek = vblend(is_top, vsplat(0.0), ek);
            }
            v4d t = sum[q] + ek, bp = t - sum[q];
            comp[q] += (sum[q] - (t - bp)) + (ek - bp);
            sum[q] = t;
        }
    }
}

/* Sixteen float64 rows side by side: entry j of row b at in[j * LANES + b] (a scratch
 * copy, which softmax overwrites with exp between its passes), results at
 * o[j * os + b]; four 4-lane vectors per step, with the double path's numerics (TwoSum
 * for x - max and the sum, the exact remainder of the division by the temperature,
 * the accurate exp, which covers the whole range). Returns 0, having written nothing
 * to o, when a row is not finite or the temperatures differ. */
static int f64_lanes(const smk_job *job, smk_row *rows, double *in, double *o, ptrdiff_t os,
                     ptrdiff_t n)
{
    if (!lanes_share_a_temperature(rows))
        return 0;
    double temperature = rows[0].temperature;
    v4d mx[4], mn[4], zero = vsplat(0.0);
    v4l bad = {0, 0, 0, 0};
    for (int q = 0; q < 4; q++) {
        mx[q] = vsplat(-INFINITY);
        mn[q] = vsplat(INFINITY);
    }
    for (ptrdiff_t j = 0; j < n; j++)
        for (int q = 0; q < 4; q++) {
            v4d v = vload(in + j * LANES + 4 * q);
            mx[q] = vblend(v > mx[q], v, mx[q]);
            mn[q] = vblend(v < mn[q], v, mn[q]);
            bad |= v != v;
        }
    v4l far_rows = {0, 0, 0, 0};
    for (int q = 0; q < 4; q++) {
        bad |= (mx[q] == vsplat(INFINITY)) | (mx[q] == vsplat(-INFINITY));
        /* NaN (an infinite difference over an infinite temperature) counts as far. */
        far_rows |= ~((mn[q] - mx[q]) * vsplat(1.0 / temperature) >= vsplat(-700.0));
    }
    if (bad[0] | bad[1] | bad[2] | bad[3])
        return 0;
    int near = !(far_rows[0] | far_rows[1] | far_rows[2] | far_rows[3]);
    int plain = job->op == SMK_SOFTMAX && !(job->l_es && rows[0].l);
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    v4d sum[4], comp[4];
    v4l count[4];
    for (int q = 0; q < 4; q++) {
        sum[q] = comp[q] = zero;
        count[q] = (v4l){0, 0, 0, 0};
    }
    double *e_out = job->op == SMK_SOFTMAX ? in : NULL;
#define LANES64_SUM_CALL(N, P) lanes64_sum(N, P, in, e_out, mx, temperature, n, sum, comp, count)
    WITH_CONSTANT_NEAR_PLAIN(near, plain, LANES64_SUM_CALL);
#undef LANES64_SUM_CALL
    v4d factor[4];
    if (job->op != SMK_SOFTMAX && !job->l_es) {
        /* log_softmax and logsumexp: the log-normalizers on four lanes at a time, the
         * argument formed as row_sums forms it. */
        for (int q = 0; q < 4; q++) {
            v4d c = {(double)count[q][0], (double)count[q][1], (double)count[q][2],
                     (double)count[q][3]};
            factor[q] = vlog1p(((c - vsplat(1.0)) + sum[q]) + comp[q]);
        }
        if (job->op == SMK_LOGSUMEXP) {
            store_lanes_lse(job, rows, mx, temperature, factor);
            return 1;
        }
    } else if (job->op == SMK_SOFTMAX && !rows[0].l && !job->g) {
        /* The usual softmax block: 1 / total on four lanes at a time, the total formed
         * as row_sums forms it. */
        for (int q = 0; q < 4; q++) {
            v4d c = {(double)count[q][0], (double)count[q][1], (double)count[q][2],
                     (double)count[q][3]};
            factor[q] = vsplat(1.0) / ((c + sum[q]) + comp[q]);
        }
    } else {
        for (int b = 0; b < LANES; b++) {
            int q = b / 4, k = b % 4;
            smk_partial part;
            partial_init(&part);
            part.max = mx[q][k];
            part.count = count[q][k];
            part.hi = sum[q][k];
            part.lo = comp[q][k];
            row_decide(job, &rows[b], &part);
            row_sums(job, &rows[b], &part);
            factor[q][k] = job->op == SMK_SOFTMAX ? rows[b].scale : rows[b].log_total;
        }
    }
    if (job->op == SMK_LOGSUMEXP)
        return 1;
    for (ptrdiff_t j = 0; j < n; j++) {
        __builtin_prefetch(o + (j + PREFETCH_AHEAD) * os, 1, 0);
        for (int q = 0; q < 4; q++) {
            v4d r;
            if (job->op == SMK_SOFTMAX) {
                r = vload(in + j * LANES + 4 * q) * factor[q];
            } else {
                v4d hi, lo;
                shifted_v(vload(in + j * LANES + 4 * q), mx[q], temperature, scaled, 1, exact,
                          &hi, &lo);
                r = (hi - factor[q]) + lo;
            }
            vstore(o + j * os + 4 * q, r);
        }
    }
    return 1;
}

/* Sixteen short contiguous float64 rows r0 .. r0 + 15, through a transposing buffer. */
static int f64_short_rows(const smk_job *job, ptrdiff_t r0)
{
    smk_row rows[LANES];
    double in[SHORT_ROW * LANES], res[SHORT_ROW * LANES];
    short_rows_gather(job, r0, rows, (char *)in, sizeof(double));
    if (!f64_lanes(job, rows, in, res, LANES, job->len))
        return 0;
    if (job->op != SMK_LOGSUMEXP)
        short_rows_scatter(job, rows, (const char *)res, sizeof(double));
    return 1;
}

/* Adjacent rows (nb of them, the first 16 * (nb / 16) by the 16-lane path) read along a
 * stride of a whole row: the lines are copied into a contiguous buffer first, since a
 * power-of-two stride maps them all to a few cache sets, where they would not survive
 * from one pass to the next. Returns how many of the leading rows were done: the
 * groups of 16 that the path took, up to the first it did not. */
static ptrdiff_t f32_column_block(const smk_job *job, smk_row *rows, ptrdiff_t nb,
                                  float *scratch)
{
    ptrdiff_t n = job->len, groups = nb / LANES;
    float *in = scratch, *res = scratch + n * nb;
    const char *x = rows[0].x;
    if (nb == SMK_BLOCK_F32) /* a copy of constant size, inlined */
        for (ptrdiff_t j = 0; j < n; j++) {
            __builtin_prefetch(x + (j + PREFETCH_AHEAD) * job->x_es, 0, 0);
            memcpy(in + j * SMK_BLOCK_F32, x + j * job->x_es, SMK_BLOCK_F32 * sizeof(float));
        }
    else
        for (ptrdiff_t j = 0; j < n; j++)
            memcpy(in + j * nb, x + j * job->x_es, (size_t)nb * sizeof(float));
    /* The results go straight to the output, whole lines per step. */
    for (ptrdiff_t g = 0; g < groups; g++) {
        float *o = job->op == SMK_LOGSUMEXP ? NULL : (float *)(void *)rows[g * LANES].o;
        if (!f32_lanes(job, rows + g * LANES, in + g * LANES, nb, res, o, job->o_es / 4, n))
            return g * LANES;
    }
    return groups * LANES;
}

/* Sixteen adjacent float64 rows read along a stride of a whole row, copied into a
 * contiguous buffer (two lines per step) as f32_column_block does; the results go
 * straight to the output. Returns 0 when the 16-lane path did not take them. */
static int f64_column_block(const smk_job *job, smk_row *rows, double *scratch)
{
    ptrdiff_t n = job->len;
    const char *x = rows[0].x;
    for (ptrdiff_t j = 0; j < n; j++) {
        __builtin_prefetch(x + (j + PREFETCH_AHEAD) * job->x_es, 0, 0);
        memcpy(scratch + j * LANES, x + j * job->x_es, LANES * sizeof(double));
    }
    double *o = job->op == SMK_LOGSUMEXP ? NULL : (double *)(void *)rows[0].o;
    return f64_lanes(job, rows, scratch, o, job->o_es / 8, n);
}

/* ---- float32 column mode by streaming ----
 *
 * nb adjacent rows (entry j of row b at x[j * x_es + 4 b], a column of a C-contiguous
 * matrix) read a matrix row at a time, each pass in order through memory: the rows'
 * maxima, minima and sums are kept in the scratch, eight rows to a vector, and the
 * arithmetic is the float32 row path's for rows within 86 of their maximum (near, see
 * exp8n_near). Returns 0, having written nothing, when a row is not finite or not near:
 * the caller then takes the block by the 32-row path. */
static int f32_stream_block(const smk_job *job, const smk_row *row0, ptrdiff_t nb,
                            double *scratch)
{
    ptrdiff_t n = job->len, groups = nb / 8;
    const char *x = row0->x;
    double temperature = job->t_value;
    int scaled = temperature != 1.0;
    /* The state: top and low (float32), then sums (two v4d per group), counts. */
    float *top = (float *)(void *)scratch, *low = top + nb;
    v4d *sums = (v4d *)(void *)(scratch + nb);
    v8i *counts = (v8i *)(void *)(scratch + 3 * nb);
    for (ptrdiff_t g = 0; g < groups; g++) {
        store8(top + 8 * g, splat8(-INFINITY));
        store8(low + 8 * g, splat8(INFINITY));
    }
    v8i bad = {0, 0, 0, 0, 0, 0, 0, 0};
    for (ptrdiff_t j = 0; j < n; j++) {
        const float *p = (const float *)(const void *)(x + j * job->x_es);
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f v = load8(p + 8 * g), mx = load8(top + 8 * g), mn = load8(low + 8 * g);
            store8(top + 8 * g, blend8(v > mx, v, mx));
            store8(low + 8 * g, blend8(v < mn, v, mn));
            bad |= v != v;
        }
    }
    v4d inv_t = vsplat(1.0 / temperature);
    for (ptrdiff_t g = 0; g < groups; g++) {
        v8f mx = load8(top + 8 * g), mn = load8(low + 8 * g);
        bad |= (mx == splat8(INFINITY)) | (mx == splat8(-INFINITY));
        v4l far = ~((lo_half(mn) - lo_half(mx)) * inv_t >= vsplat(-86.0)) |
                  ~((hi_half(mn) - hi_half(mx)) * inv_t >= vsplat(-86.0));
        bad |= (v8i)far;
    }
    if (any8(bad))
        return 0;
    int plain = job->op == SMK_SOFTMAX;
    for (ptrdiff_t g = 0; g < groups; g++) {
        sums[2 * g] = sums[2 * g + 1] = vsplat(0.0);
        counts[g] = (v8i){0, 0, 0, 0, 0, 0, 0, 0};
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        const float *p = (const float *)(const void *)(x + j * job->x_es);
        float *o = plain ? (float *)(void *)(row0->o + j * job->o_es) : NULL;
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f v = load8(p + 8 * g), d, c, rh, sm, sc;
            v8i slow;
            f32_shift s = shift_lanes(load8(top + 8 * g), temperature);
            if (scaled)
                diff8n(1, &s, 1, &v, &d, &c);
            else
                diff8n(1, &s, 0, &v, &d, &c);
            exp8n_near(1, 1, &d, &c, &rh, &sm, &sc, &slow);
            if (!plain) {
                v8i is_top = v == s.top;
                counts[g] -= is_top;
                sc = blend8(is_top, splat8(0.0f), sc);
            }
            v4d ea = vfma(lo_half(sc), lo_half(rh) + lo_half(sm), lo_half(sc));
            v4d eb = vfma(hi_half(sc), hi_half(rh) + hi_half(sm), hi_half(sc));
            if (o)
                store8(o + 8 * g, join8(ea, eb));
            sums[2 * g] += ea;
            sums[2 * g + 1] += eb;
        }
    }
    if (plain) {
        /* Each row's 2^64 / total as two float32 (see f32_scale_out_impl), in place of
         * top and low. */
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f a, b;
            two_floats(vsplat(0x1p64) / sums[2 * g], vsplat(0x1p64) / sums[2 * g + 1], &a, &b);
            store8(top + 8 * g, a);
            store8(low + 8 * g, b);
        }
        const v8f down = splat8(0x1p-64f);
        for (ptrdiff_t j = 0; j < n; j++) {
            float *o = (float *)(void *)(row0->o + j * job->o_es);
            for (ptrdiff_t g = 0; g < groups; g++) {
                v8f e = load8(o + 8 * g);
                store8(o + 8 * g, fma8(e, load8(top + 8 * g), e * load8(low + 8 * g)) * down);
            }
        }
        return 1;
    }
    /* log_softmax and logsumexp: log1p((count - 1) + sum), in place of the sums. */
    for (ptrdiff_t g = 0; g < groups; g++) {
        v8f count = __builtin_convertvector(counts[g], v8f);
        sums[2 * g] = vlog1p((lo_half(count) - vsplat(1.0)) + sums[2 * g]);
        sums[2 * g + 1] = vlog1p((hi_half(count) - vsplat(1.0)) + sums[2 * g + 1]);
    }
    if (job->op == SMK_LOGSUMEXP) {
        ptrdiff_t ls = job->ls[job->ndim - 1];
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f mx = load8(top + 8 * g);
            v4d lse[2] = {lo_half(mx) / vsplat(temperature) + sums[2 * g],
                          hi_half(mx) / vsplat(temperature) + sums[2 * g + 1]};
            for (int k = 0; k < 8; k++)
                store_one(row0->l + (8 * g + k) * ls, job->lse_type, lse[k / 4][k % 4]);
        }
        return 1;
    }
    v4d tv = vsplat(temperature);
    for (ptrdiff_t j = 0; j < n; j++) {
        const float *p = (const float *)(const void *)(x + j * job->x_es);
        float *o = (float *)(void *)(row0->o + j * job->o_es);
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f v = load8(p + 8 * g), mx = load8(top + 8 * g);
            v4d a = lo_half(v) - lo_half(mx), b = hi_half(v) - hi_half(mx);
            if (scaled) {
                a = a / tv;
                b = b / tv;
            }
            store8(o + 8 * g, join8(a - sums[2 * g], b - sums[2 * g + 1]));
        }
    }
    return 1;
}

/* float64 column mode by streaming, as f32_stream_block, with the double path's
 * numerics (see f64_lanes), for rows whose shifted scores are all >= -700. */
static int f64_stream_block(const smk_job *job, const smk_row *row0, ptrdiff_t nb,
                            double *scratch)
{
    ptrdiff_t n = job->len, groups = nb / 4;
    const char *x = row0->x;
    double temperature = job->t_value;
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    v4d *top = (v4d *)(void *)scratch, *low = top + groups, *sum = low + groups,
        *comp = sum + groups;
    v4l *count = (v4l *)(void *)(comp + groups);
    for (ptrdiff_t q = 0; q < groups; q++) {
        top[q] = vsplat(-INFINITY);
        low[q] = vsplat(INFINITY);
    }
    v4l bad = {0, 0, 0, 0};
    for (ptrdiff_t j = 0; j < n; j++) {
        const double *p = (const double *)(const void *)(x + j * job->x_es);
        for (ptrdiff_t q = 0; q < groups; q++) {
            v4d v = vload(p + 4 * q);
            top[q] = vblend(v > top[q], v, top[q]);
            low[q] = vblend(v < low[q], v, low[q]);
            bad |= v != v;
        }
    }
    v4d inv_t = vsplat(1.0 / temperature);
    for (ptrdiff_t q = 0; q < groups; q++) {
        bad |= (top[q] == vsplat(INFINITY)) | (top[q] == vsplat(-INFINITY));
        bad |= ~((low[q] - top[q]) * inv_t >= vsplat(-700.0));
    }
    if (bad[0] | bad[1] | bad[2] | bad[3])
        return 0;
    int plain = job->op == SMK_SOFTMAX;
    for (ptrdiff_t q = 0; q < groups; q++) {
        sum[q] = comp[q] = vsplat(0.0);
        count[q] = (v4l){0, 0, 0, 0};
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        const double *p = (const double *)(const void *)(x + j * job->x_es);
        double *o = plain ? (double *)(void *)(row0->o + j * job->o_es) : NULL;
        ptrdiff_t q = 0;
        for (; q < groups; q += VEXP_MAX) {
            int cnt = groups - q < VEXP_MAX ? (int)(groups - q) : VEXP_MAX;
            v4d xv[VEXP_MAX], hi[VEXP_MAX], lo[VEXP_MAX], e[VEXP_MAX];
            for (int k = 0; k < cnt; k++) {
                xv[k] = vload(p + 4 * (q + k));
                shifted_v(xv[k], top[q + k], temperature, scaled, 1, exact, &hi[k], &lo[k]);
            }
            if (cnt == VEXP_MAX)
                vexp_near(VEXP_MAX, 1, hi, lo, 1, e);
            else
                for (int k = 0; k < cnt; k++)
                    vexp_near(1, 1, &hi[k], &lo[k], 1, &e[k]);
            for (int k = 0; k < cnt; k++) {
                v4d ek = e[k];
                if (o)
                    vstore(o + 4 * (q + k), ek);
                if (!plain) {
                    v4l is_top = xv[k] == top[q + k];
                    count[q + k] -= is_top;
                    ek = vblend(is_top, vsplat(0.0), ek);
                }
                v4d t = sum[q + k] + ek, bp = t - sum[q + k];
                comp[q + k] += (sum[q + k] - (t - bp)) + (ek - bp);
                sum[q + k] = t;
            }
        }
    }
    if (plain) {
        for (ptrdiff_t q = 0; q < groups; q++)
            low[q] = vsplat(1.0) / (sum[q] + comp[q]);
        for (ptrdiff_t j = 0; j < n; j++) {
            double *o = (double *)(void *)(row0->o + j * job->o_es);
            for (ptrdiff_t q = 0; q < groups; q++)
                vstore(o + 4 * q, vload(o + 4 * q) * low[q]);
        }
        return 1;
    }
    for (ptrdiff_t q = 0; q < groups; q++) {
        v4d c = {(double)count[q][0], (double)count[q][1], (double)count[q][2],
                 (double)count[q][3]};
        sum[q] = vlog1p(((c - vsplat(1.0)) + sum[q]) + comp[q]);
    }
    if (job->op == SMK_LOGSUMEXP) {
        ptrdiff_t ls = job->ls[job->ndim - 1];
        for (ptrdiff_t q = 0; q < groups; q++) {
            v4d lse = top[q] / vsplat(temperature) + sum[q];
            for (int k = 0; k < 4; k++)
                store_one(row0->l + (4 * q + k) * ls, job->lse_type, lse[k]);
        }
        return 1;
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        const double *p = (const double *)(const void *)(x + j * job->x_es);
        double *o = (double *)(void *)(row0->o + j * job->o_es);
        for (ptrdiff_t q = 0; q < groups; q++) {
            v4d hi, lo;
            shifted_v(vload(p + 4 * q), top[q], temperature, scaled, 1, exact, &hi, &lo);
            vstore(o + 4 * q, (hi - sum[q]) + lo);
        }
    }
    return 1;
}

/* logsumexp with the sum of each block of bsize entries kept (for sampling by a
 * search over the blocks): the exp-and-sum pass taken block by block. The sums are
 * NaN on rows that are not finite (NaN, +inf, every entry -inf). */
static void row_block_sums(const smk_job *job, smk_row *row, double *buf)
{
    ptrdiff_t n = job->len, size = job->bsize;
    smk_partial part, total;
    row_phase(job, row, 1, 0, n, buf, &part);
    row_decide(job, row, &part);
    partial_init(&total);
    total.max = part.max;
    for (ptrdiff_t k = 0, c0 = 0; c0 < n; k++, c0 += size) {
        ptrdiff_t c1 = n - c0 < size ? n : c0 + size;
        double block = NAN;
        if (row->kind == KIND_FINITE) {
            row_phase(job, row, 2, c0, c1, buf, &part);
            block = ((double)part.count + part.hi) + part.lo;
            total.count += part.count;
            add_partial(&total, part.hi);
            total.lo += part.lo;
        }
        memcpy(row->bsum + k * job->b_es, &block, sizeof block);
    }
    row_sums(job, row, &total);
}

/* ---- float64 rows read in place ----
 *
 * Contiguous float64 rows without a mask whose shifted scores are all >= -700 (near)
 * are read where they are, as the float32 path does: the maximum, then exp and its
 * sum with exp stored in the output (softmax), then the output scaled in place; the
 * numerics are the buffer path's. The last n % 4 entries go through a padded vector. */
static int f64_in_place_job(const smk_job *job)
{
    return job->in_type == SMK_F64 && job->x_es == 8 && !job->m && !job->bsum &&
           (job->op == SMK_LOGSUMEXP || (job->out_type == SMK_F64 && job->o_es == 8));
}

/* Returns 0, having written nothing, when the row is not one for this path. */
static int f64_row_in_place(const smk_job *job, smk_row *row)
{
    ptrdiff_t n = job->len, n4 = n & ~(ptrdiff_t)3, rest = n - n4;
    const double *x = (const double *)(const void *)row->x;
    double *o = job->op == SMK_LOGSUMEXP ? NULL : (double *)(void *)row->o;
    if (o == x)
        return 0; /* in place: the buffer path */
    smk_partial partial, *part = &partial;
    partial_init(part);
#if SMK_USE_AVX512
    /* The multiple of 8 on eight lanes (kernel_avx512.h), then up to n4 on four. */
    ptrdiff_t n8 = n & ~(ptrdiff_t)7;
    w64_stats(x, n8, part);
#else
    ptrdiff_t n8 = 0;
#endif
    buf_stats(x + n8, n4 - n8, part);
    for (ptrdiff_t i = n4; i < n; i++)
        stats_one(part, x[i]);
    row_decide(job, row, part);
    if (row->kind != KIND_FINITE || !row_is_near(row, 700.0))
        return 0;
    partial_init(part);
    int plain = job->op == SMK_SOFTMAX && !(job->l_es && row->l);
    double *out = job->op == SMK_SOFTMAX ? o : NULL;
#if SMK_USE_AVX512
    w64_sum_near(plain, x, out, n8, row, part);
#endif
    if (plain)
        buf_sum_impl(1, 1, x + n8, out ? out + n8 : NULL, n4 - n8, job, row, part);
    else
        buf_sum_impl(1, 0, x + n8, out ? out + n8 : NULL, n4 - n8, job, row, part);
    if (rest) {
        /* The tail, padded with -inf: not near. */
        double tail[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        memcpy(tail, x + n4, (size_t)rest * sizeof(double));
        if (plain)
            buf_sum_impl(0, 1, tail, out ? tail : NULL, 4, job, row, part);
        else
            buf_sum_impl(0, 0, tail, out ? tail : NULL, 4, job, row, part);
        if (out)
            memcpy(out + n4, tail, (size_t)rest * sizeof(double));
    }
    row_sums(job, row, part);
    if (job->op == SMK_LOGSUMEXP)
        return 1;
    if (job->op == SMK_SOFTMAX) {
        v4d scale = vsplat(row->scale);
        ptrdiff_t i = n8;
#if SMK_USE_AVX512
        w64_scale(o, n8, row->scale);
#endif
        for (; i < n4; i += 4)
            vstore(o + i, vload(o + i) * scale);
        for (; i < n; i++)
            o[i] *= row->scale;
        return 1;
    }
    double temperature = row->temperature;
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    v4d log_total = vsplat(row->log_total);
#if SMK_USE_AVX512
    w64_log_out(x, o, n8, row);
#endif
    for (ptrdiff_t i = n8; i < n4; i += 4) {
        v4d hi, lo;
        shifted(vload(x + i), row->max, temperature, scaled, 1, exact, &hi, &lo);
        vstore(o + i, (hi - log_total) + lo);
    }
    for (ptrdiff_t i = n4; i < n; i++) {
        v4d hi, lo;
        shifted(vsplat(x[i]), row->max, temperature, scaled, 1, exact, &hi, &lo);
        o[i] = ((hi - log_total) + lo)[0];
    }
    return 1;
}
static void run_row(const smk_job *job, ptrdiff_t r, double *buf)
{
    smk_row row;
    row_pointers(job, r, &row);
    ptrdiff_t n = job->len;
    if (job->bsum) {
        row_block_sums(job, &row, buf);
        return;
    }
    if (f32_fast(job)) {
        /* The float32 path reads the row in place; the rows that it does not take
         * (NaN, infinities, all -inf, temperature other than 1) go on chunk by chunk. */
        smk_partial part;
        row_phase(job, &row, 1, 0, n, buf, &part);
        row_decide(job, &row, &part);
        row_phase(job, &row, 2, 0, n, buf, &part);
        row_sums(job, &row, &part);
        if (job->op != SMK_LOGSUMEXP)
            row_phase(job, &row, 3, 0, n, buf, &part);
        return;
    }
    if (n <= SMK_CHUNK && f64_in_place_job(job) && f64_row_in_place(job, &row))
        return;
    if (n <= SMK_CHUNK) {
        load_chunk(job, row.x, row.m, 0, n, buf);
        row_in_buffer(job, &row, buf, n, 1);
        return;
    }
    smk_partial part;
    row_phase(job, &row, 1, 0, n, buf, &part);
    row_decide(job, &row, &part);
    row_phase(job, &row, 2, 0, n, buf, &part);
    row_sums(job, &row, &part);
    if (job->op != SMK_LOGSUMEXP)
        row_phase(job, &row, 3, 0, n, buf, &part);
}

/* Column mode: rows r0 .. r0 + nb - 1 are adjacent in memory (the innermost outer
 * dimension is contiguous); gather them into nb buffers so the input is read once. */
static void run_block_general(const smk_job *job, smk_row *rows, ptrdiff_t nb, double *buf);

static void run_block(const smk_job *job, ptrdiff_t r0, ptrdiff_t nb, double *buf)
{
    smk_row rows[SMK_BLOCK_F32];
    if (nb < 1)
        return;
    if (job->stream) {
        /* The multiples of 8 streamed, unless a row is not for that path; the rest by
         * the 32-row path, with its scratch after the state. */
        ptrdiff_t done = 0;
        smk_row row0;
        row_pointers(job, r0, &row0);
        ptrdiff_t whole = nb & ~(ptrdiff_t)7;
        int taken = whole > 0 && (job->in_type == SMK_F32
                                      ? f32_stream_block(job, &row0, whole, buf)
                                      : f64_stream_block(job, &row0, whole, buf));
        if (taken) {
            done = whole;
            __atomic_fetch_add(&smk_streamed_blocks_count, 1, __ATOMIC_RELAXED);
        }
        smk_job sub = *job;
        sub.stream = 0;
        sub.block = job->in_type == SMK_F32 ? SMK_BLOCK_F32 : SMK_BLOCK;
        for (; done < nb; done += sub.block)
            run_block(&sub, r0 + done, nb - done < sub.block ? nb - done : sub.block,
                      buf + 8 * SMK_STREAM_ROWS);
        return;
    }
    for (ptrdiff_t b = 0; b < nb; b++)
        row_pointers(job, r0 + b, &rows[b]);
    ptrdiff_t done = 0;
    if (nb >= LANES && f32_lanes_job(job) && job->xs[job->ndim - 1] == 4 &&
        (job->op == SMK_LOGSUMEXP || (job->os[job->ndim - 1] == 4 && job->o_es % 4 == 0)))
        done = f32_column_block(job, rows, nb, (float *)(void *)buf);
    else if (nb == LANES && f64_lanes_job(job) && job->xs[job->ndim - 1] == 8 &&
             (job->op == SMK_LOGSUMEXP || (job->os[job->ndim - 1] == 8 && job->o_es % 8 == 0)))
        done = f64_column_block(job, rows, buf) ? LANES : 0;
    /* The rest (a group the path did not take, and what follows it) in groups of at
     * most SMK_BLOCK rows. */
    while (done < nb) {
        ptrdiff_t count = nb - done < SMK_BLOCK ? nb - done : SMK_BLOCK;
        run_block_general(job, rows + done, count, buf);
        done += count;
    }
}

/* Rows gathered into nb double scratch rows, each computed there, and scattered back. */
static void run_block_general(const smk_job *job, smk_row *rows, ptrdiff_t nb, double *buf)
{
    ptrdiff_t n = job->len, stride = round4(n);
    const char *x = rows[0].x;
    ptrdiff_t xb = job->xs[job->ndim - 1];
    if (job->in_type == SMK_F32 && xb == 4) {
        for (ptrdiff_t j = 0; j < n; j++) {
            float v[SMK_BLOCK];
            memcpy(v, x + j * job->x_es, (size_t)nb * sizeof(float));
            for (ptrdiff_t b = 0; b < nb; b++)
                buf[b * stride + j] = v[b];
        }
    } else if (job->in_type == SMK_F64 && xb == 8) {
        for (ptrdiff_t j = 0; j < n; j++) {
            double v[SMK_BLOCK];
            __builtin_prefetch(x + (j + PREFETCH_AHEAD) * job->x_es, 0, 0);
            memcpy(v, x + j * job->x_es, (size_t)nb * sizeof(double));
            for (ptrdiff_t b = 0; b < nb; b++)
                buf[b * stride + j] = v[b];
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++)
            for (ptrdiff_t b = 0; b < nb; b++)
                buf[b * stride + j] = load_one(x + b * xb + j * job->x_es, job->in_type);
    }
    for (ptrdiff_t b = 0; b < nb; b++) {
        double *row_buf = buf + b * stride;
        if (rows[b].m) {
            for (ptrdiff_t j = 0; j < n; j++)
                if (!rows[b].m[j * job->m_es])
                    row_buf[j] = -INFINITY;
        }
        pad(row_buf, n);
        row_in_buffer(job, &rows[b], row_buf, n, 0);
    }
    if (job->op == SMK_LOGSUMEXP)
        return;
    char *o = rows[0].o;
    ptrdiff_t ob = job->os[job->ndim - 1];
    if (job->out_type == SMK_F32 && ob == 4) {
        for (ptrdiff_t j = 0; j < n; j++) {
            float v[SMK_BLOCK];
            for (ptrdiff_t b = 0; b < nb; b++)
                v[b] = (float)buf[b * stride + j];
            memcpy(o + j * job->o_es, v, (size_t)nb * sizeof(float));
        }
    } else if (job->out_type == SMK_F64 && ob == 8) {
        for (ptrdiff_t j = 0; j < n; j++) {
            double v[SMK_BLOCK];
            __builtin_prefetch(o + (j + PREFETCH_AHEAD) * job->o_es, 1, 0);
            for (ptrdiff_t b = 0; b < nb; b++)
                v[b] = buf[b * stride + j];
            memcpy(o + j * job->o_es, v, (size_t)nb * sizeof(double));
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++)
            for (ptrdiff_t b = 0; b < nb; b++)
                store_one(o + b * ob + j * job->o_es, job->out_type, buf[b * stride + j]);
    }
}

/* Tasks t0 .. t1 - 1: rows in row mode, blocks of rows in column mode. */
static void run_tasks(const smk_job *job, ptrdiff_t t0, ptrdiff_t t1, double *buf)
{
    if (!job->block) {
        ptrdiff_t r = t0;
        int (*short_rows)(const smk_job *, ptrdiff_t) =
            job->len > SHORT_ROW ? NULL
            : f32_lanes_job(job) ? f32_short_rows
            : f64_lanes_job(job) ? f64_short_rows
                                 : NULL;
        if (short_rows)
            for (; r + LANES <= t1; r += LANES)
                if (!short_rows(job, r))
                    for (ptrdiff_t q = r; q < r + LANES; q++)
                        run_row(job, q, buf);
        for (; r < t1; r++)
            run_row(job, r, buf);
        return;
    }
    ptrdiff_t inner = job->shape[job->ndim - 1];
    ptrdiff_t per_prefix = (inner + job->block - 1) / job->block;
    for (ptrdiff_t t = t0; t < t1; t++) {
        ptrdiff_t prefix = t / per_prefix, blk = t % per_prefix;
        ptrdiff_t first = blk * job->block;
        ptrdiff_t nb = inner - first < job->block ? inner - first : job->block;
        run_block(job, prefix * inner + first, nb, buf);
    }
}

const smk_impl SMK_IMPL_NAME = {run_tasks, row_begin, row_phase, row_decide, row_sums};
