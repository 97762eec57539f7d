/* The soft cap of float32 logits, c * tanh(x / c) (Gemma 2), and its derivative
 * 1 - tanh^2, in one pass over a range of entries (softcap_range), in the modes of
 * smk_softcap (kernel.h): the capped logits, the derivative, both, or a gradient
 * times the derivative (computed, or as written by the mode that gives both).
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. The entry, its checks and its threads
 * are in kernel_softcap_entry.c.
 *
 * Numerics: every entry in double. u = x * (1 / c) (the CPython entry takes
 * 2^-64 <= c <= 2^64: u is a normal number or 0, within an ulp of x / c); with
 * m = exp(-2|u|) - 1 in (-1, 0] (evaluated without cancellation, see sc_exp_neg),
 * |tanh u| = -m / (2 + m), with a relative error of a few units of 2^-53 (and below
 * 5e-14 everywhere, that of the series' truncation included), and 1 - tanh(u)^2 =
 * 4 e / (1 + e)^2 with e = exp(-2|u|), without cancellation. The capped logit c * tanh
 * is rounded once to float32. -inf stays -inf, NaN stays NaN, +inf gives c; the
 * derivative is 0 at the infinities and NaN at NaN (as 4 e / (1 + e)^2 has it).
 * exp(y) for y < -708 is taken as 0: tanh is then 1 in double, and a derivative
 * below 2^-1000 times a gradient entry (at most about 2^60) is 0 in float32. */

#if SMK_USE_AVX512
#define SC_W 8
#else
#define SC_W 4
#endif

typedef double sc_vd __attribute__((vector_size(SC_W * 8)));
typedef long long sc_vl __attribute__((vector_size(SC_W * 8)));
typedef float sc_vf __attribute__((vector_size(SC_W * 4)));

static inline sc_vd sc_splat(double a)
{
    sc_vd v;
    for (int i = 0; i < SC_W; i++)
        v[i] = a;
    return v;
}

static inline sc_vd sc_blend(sc_vl mask, sc_vd a, sc_vd b)
{
    return (sc_vd)(((sc_vl)a & mask) | ((sc_vl)b & ~mask));
}

/* a * b + c, fused where the target has it. */
#if SMK_USE_AVX512
static inline sc_vd sc_fma(sc_vd a, sc_vd b, sc_vd c)
{
    return (sc_vd)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
}
#elif SMK_USE_FMA
static inline sc_vd sc_fma(sc_vd a, sc_vd b, sc_vd c)
{
    return (sc_vd)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
}
#else
static inline sc_vd sc_fma(sc_vd a, sc_vd b, sc_vd c) { return a * b + c; }
#endif

/* Float32 entries to double lanes and back. */
static inline sc_vd sc_load(const float *p)
{
#if SMK_USE_AVX512
    return (sc_vd)_mm512_cvtps_pd(_mm256_loadu_ps(p));
#elif SMK_USE_FMA
    return (sc_vd)_mm256_cvtps_pd(_mm_loadu_ps(p));
#else
    sc_vf v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, sc_vd);
#endif
}

static inline void sc_store(float *p, sc_vd v)
{
#if SMK_USE_AVX512
    _mm256_storeu_ps(p, _mm512_cvtpd_ps((__m512d)v));
#elif SMK_USE_FMA
    _mm_storeu_ps(p, _mm256_cvtpd_ps((__m256d)v));
#else
    sc_vf f = __builtin_convertvector(v, sc_vf);
    memcpy(p, &f, sizeof f);
#endif
}

/* e = exp(y) and, with em1, exp(y) - 1, for y <= 0 (or NaN: NaN): Cody-Waite reduction
 * y = k ln 2 + r (as vexp of kernel_lanes.h) and the Taylor series of exp(r) - 1 to
 * r^11 / 11! by Estrin's scheme (truncation below 7e-15 relative for |r| <= ln(2)/2).
 * exp(y) - 1 is that series itself where k = 0 (no cancellation: r = y), else
 * exp(y) - 1 with exp(y) <= 0.71 (at most 2 bits lost). 0 below -708 (see above), so
 * that 2^k is one normal factor. */
static inline __attribute__((always_inline)) sc_vd sc_exp_neg(sc_vd y, sc_vd *em1)
{
    const sc_vd shifter = sc_splat(0x1.8p52);
    sc_vl under = (sc_vl)(y < sc_splat(-708.0));
    y = sc_blend(under, sc_splat(-708.0), y);
    sc_vd t = sc_fma(y, sc_splat(1.4426950408889634074), shifter);
    sc_vd k = t - shifter;
    sc_vd r = sc_fma(k, sc_splat(-6.93147180369123816490e-01), y);
    r = sc_fma(k, sc_splat(-1.90821492927058770002e-10), r);
    sc_vd r2 = r * r, r4 = r2 * r2;
    sc_vd a0 = sc_fma(sc_splat(1.0 / 6.0), r, sc_splat(1.0 / 2.0));
    sc_vd a1 = sc_fma(sc_splat(1.0 / 120.0), r, sc_splat(1.0 / 24.0));
    sc_vd a2 = sc_fma(sc_splat(1.0 / 5040.0), r, sc_splat(1.0 / 720.0));
    sc_vd a3 = sc_fma(sc_splat(1.0 / 362880.0), r, sc_splat(1.0 / 40320.0));
    sc_vd a4 = sc_fma(sc_splat(1.0 / 39916800.0), r, sc_splat(1.0 / 3628800.0));
    a0 = sc_fma(a1, r2, a0);
    a2 = sc_fma(a3, r2, a2);
    sc_vd q = sc_fma(sc_fma(a4, r4, a2), r4, a0);
    sc_vd pm1 = sc_fma(r2, q, r);
    sc_vd scale = (sc_vd)(((sc_vl)t + 1023) << 52);
    sc_vd e = sc_blend(under, sc_splat(0.0), sc_fma(pm1, scale, scale));
    if (em1)
        *em1 = sc_blend((sc_vl)(k == sc_splat(0.0)), pm1, e - sc_splat(1.0));
    return e;
}

#define SC_SIGN 0x8000000000000000LL

/* The capped logits of SC_W entries: with m = exp(-2|u|) - 1 in (-1, 0],
 * tanh |u| = -m / (2 + m); -inf kept (NaN stays NaN by itself, +inf gives c, and
 * -0 stays -0). */
static inline __attribute__((always_inline)) sc_vd sc_capped(sc_vd x, double cap,
                                                             double inv_cap)
{
    sc_vl sign = (sc_vl)x & SC_SIGN;
    sc_vd y = (sc_vd)((sc_vl)x & ~SC_SIGN) * sc_splat(-2.0 * inv_cap);
    sc_vd m;
    sc_exp_neg(y, &m);
    /* 0 - m: +0 where m is 0, so that the sign of x alone gives that of the result */
    sc_vd tanh_abs = (sc_splat(0.0) - m) / (sc_splat(2.0) + m);
    sc_vd capped = tanh_abs * (sc_vd)((sc_vl)sc_splat(cap) | sign);
    return sc_blend((sc_vl)(x == sc_splat(-INFINITY)), x, capped);
}

/* 1 - tanh(x / c)^2 = 4 e / (1 + e)^2 of SC_W entries, e = exp(-2|x / c|). */
static inline __attribute__((always_inline)) sc_vd sc_derivative(sc_vd x, double inv_cap)
{
    sc_vd y = (sc_vd)((sc_vl)x & ~SC_SIGN) * sc_splat(-2.0 * inv_cap);
    sc_vd e = sc_exp_neg(y, NULL);
    sc_vd d = sc_splat(1.0) + e;
    return (sc_splat(4.0) * e) / (d * d);
}

/* The capped logits and the derivative of SC_W entries together: one division,
 * 1 / (2 + m), serves both. */
static inline __attribute__((always_inline)) sc_vd
sc_capped_derivative(sc_vd x, double cap, double inv_cap, sc_vd *derivative)
{
    sc_vl sign = (sc_vl)x & SC_SIGN;
    sc_vd y = (sc_vd)((sc_vl)x & ~SC_SIGN) * sc_splat(-2.0 * inv_cap);
    sc_vd m;
    sc_vd e = sc_exp_neg(y, &m);
    sc_vd q = sc_splat(1.0) / (sc_splat(2.0) + m);
    *derivative = (sc_splat(4.0) * e) * (q * q);
    sc_vd capped = ((sc_splat(0.0) - m) * q) * (sc_vd)((sc_vl)sc_splat(cap) | sign);
    return sc_blend((sc_vl)(x == sc_splat(-INFINITY)), x, capped);
}

/* One step on SC_W entries j .. j + SC_W - 1 of the mode (see smk_softcap): x float32
 * (float64 for SMK_SOFTCAP_SCALE_BY), o float32 (float64 for SMK_SOFTCAP_DERIVATIVE),
 * d float64 (SMK_SOFTCAP_BOTH only). */
static inline __attribute__((always_inline)) void
sc_step(int mode, const char *x, char *o, char *d, ptrdiff_t j, double cap, double inv_cap)
{
    float *of = (float *)(void *)o + j;
    if (mode == SMK_SOFTCAP_SCALE_BY) {
        sc_vd factor;
        memcpy(&factor, (const double *)(const void *)x + j, sizeof factor);
        sc_store(of, sc_load(of) * factor);
        return;
    }
    sc_vd xd = sc_load((const float *)(const void *)x + j);
    if (mode == SMK_SOFTCAP_VALUES) {
        sc_store(of, sc_capped(xd, cap, inv_cap));
    } else if (mode == SMK_SOFTCAP_BOTH) {
        sc_vd derivative;
        sc_store(of, sc_capped_derivative(xd, cap, inv_cap, &derivative));
        memcpy((double *)(void *)d + j, &derivative, sizeof derivative);
    } else if (mode == SMK_SOFTCAP_SCALE) {
        sc_store(of, sc_load(of) * sc_derivative(xd, inv_cap));
    } else {
        sc_vd derivative = sc_derivative(xd, inv_cap);
        memcpy((double *)(void *)o + j, &derivative, sizeof derivative);
    }
}

/* n entries of one row: whole steps, then the tail through padded copies (computed by
 * the same step, so that an entry's result does not depend on where it lies). */
static inline __attribute__((always_inline)) void
sc_segment(int mode, const char *x, char *o, char *d, ptrdiff_t n, double cap, double inv_cap)
{
    ptrdiff_t j = 0;
    for (; j + 2 * SC_W <= n; j += 2 * SC_W) {
        sc_step(mode, x, o, d, j, cap, inv_cap);
        sc_step(mode, x, o, d, j + SC_W, cap, inv_cap);
    }
    for (; j + SC_W <= n; j += SC_W)
        sc_step(mode, x, o, d, j, cap, inv_cap);
    ptrdiff_t rest = n - j;
    if (rest > 0) {
        size_t x_size = mode == SMK_SOFTCAP_SCALE_BY ? 8 : 4;
        size_t o_size = mode == SMK_SOFTCAP_DERIVATIVE ? 8 : 4;
        double xt[SC_W] = {0}, ot[SC_W] = {0}, dt[SC_W] = {0};
        memcpy(xt, x + (ptrdiff_t)x_size * j, (size_t)rest * x_size);
        memcpy(ot, o + (ptrdiff_t)o_size * j, (size_t)rest * o_size);
        sc_step(mode, (const char *)xt, (char *)ot, (char *)dt, 0, cap, inv_cap);
        memcpy(o + (ptrdiff_t)o_size * j, ot, (size_t)rest * o_size);
        if (mode == SMK_SOFTCAP_BOTH)
            memcpy(d + 8 * j, dt, (size_t)rest * 8);
    }
}

#define SC_SEGMENT(NAME, MODE)                                                         \
    static void NAME(const char *x, char *o, char *d, ptrdiff_t n, double cap,         \
                     double inv)                                                       \
    {                                                                                  \
        sc_segment(MODE, x, o, d, n, cap, inv);                                        \
    }
SC_SEGMENT(sc_segment_values, SMK_SOFTCAP_VALUES)
SC_SEGMENT(sc_segment_scale, SMK_SOFTCAP_SCALE)
SC_SEGMENT(sc_segment_derivative, SMK_SOFTCAP_DERIVATIVE)
SC_SEGMENT(sc_segment_both, SMK_SOFTCAP_BOTH)
SC_SEGMENT(sc_segment_scale_by, SMK_SOFTCAP_SCALE_BY)

/* Entries e0 .. e1 - 1 of the job, counted row after row. */
static void softcap_range(const smk_softcap *job, ptrdiff_t e0, ptrdiff_t e1)
{
    void (*const segments[])(const char *, char *, char *, ptrdiff_t, double, double) = {
        sc_segment_values, sc_segment_scale, sc_segment_derivative, sc_segment_both,
        sc_segment_scale_by};
    void (*segment)(const char *, char *, char *, ptrdiff_t, double, double) =
        segments[job->mode];
    ptrdiff_t x_size = job->mode == SMK_SOFTCAP_SCALE_BY ? 8 : 4;
    ptrdiff_t o_size = job->mode == SMK_SOFTCAP_DERIVATIVE ? 8 : 4;
    double inv_cap = 1.0 / job->cap;
    if (job->len <= 0)
        return;
    ptrdiff_t r = e0 / job->len, j = e0 % job->len;
    while (e0 < e1) {
        ptrdiff_t n = job->len - j < e1 - e0 ? job->len - j : e1 - e0;
        char *d = job->d ? job->d + r * job->d_rs + 8 * j : NULL;
        segment(job->x + r * job->x_rs + x_size * j, job->o + r * job->o_rs + o_size * j, d,
                n, job->cap, inv_cap);
        e0 += n;
        r++;
        j = 0;
    }
}
