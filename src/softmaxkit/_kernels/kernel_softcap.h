/* The soft cap of float32 logits, c * tanh(x / c) (Gemma 2), and its derivative
 * 1 - tanh^2, in one pass over a range of entries (softcap_range).
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. The entry, its checks and its threads
 * are in kernel_softcap_entry.c.
 *
 * Numerics: every entry in double. u = x * (1 / c) (the CPython entry takes
 * 2^-64 <= c <= 2^64: u is a normal number or 0, within an ulp of x / c); with
 * e = exp(-2|u|) in (0, 1], |tanh u| = (1 - e) / (1 + e) where |u| >= 1/16 (1 - e
 * >= 0.11 loses at most 4 bits: a relative error below 2e-15) and the odd Taylor
 * series to u^11 below (truncation below 2e-17 relative); 1 - tanh(u)^2 =
 * 4 e / (1 + e)^2 everywhere, without cancellation. The capped logit c * tanh is
 * rounded once to float32. -inf stays -inf, NaN stays NaN, +inf gives c; the
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

/* exp(y) for y <= 0 (or NaN): Cody-Waite reduction by k ln 2 and the Taylor series of
 * exp(r) to r^13 / 13! (truncation below 4e-18 relative), as vexp of kernel_lanes.h;
 * 0 below -708 (see above), so that 2^k is one normal factor. */
static inline __attribute__((always_inline)) sc_vd sc_exp_neg(sc_vd y)
{
    const sc_vd shifter = sc_splat(0x1.8p52);
    sc_vl under = y < sc_splat(-708.0);
    y = sc_blend(under, sc_splat(-708.0), y);
    sc_vd t = y * sc_splat(1.4426950408889634074) + shifter;
    sc_vd k = t - shifter;
    sc_vd r = (y - k * sc_splat(6.93147180369123816490e-01)) -
              k * sc_splat(1.90821492927058770002e-10);
    sc_vd r2 = r * r, r4 = r2 * r2;
    sc_vd a0 = sc_splat(1.0 / 6.0) * r + sc_splat(1.0 / 2.0);
    sc_vd a1 = sc_splat(1.0 / 120.0) * r + sc_splat(1.0 / 24.0);
    sc_vd a2 = sc_splat(1.0 / 5040.0) * r + sc_splat(1.0 / 720.0);
    sc_vd a3 = sc_splat(1.0 / 362880.0) * r + sc_splat(1.0 / 40320.0);
    sc_vd a4 = sc_splat(1.0 / 39916800.0) * r + sc_splat(1.0 / 3628800.0);
    sc_vd a5 = sc_splat(1.0 / 6227020800.0) * r + sc_splat(1.0 / 479001600.0);
    a0 = a1 * r2 + a0;
    a2 = a3 * r2 + a2;
    a4 = a5 * r2 + a4;
    sc_vd q = (a4 * r4 + a2) * r4 + a0;
    sc_vd p = sc_splat(1.0) + (r2 * q + r);
    sc_vd e = p * (sc_vd)(((sc_vl)t + 1023) << 52);
    return sc_blend(under, sc_splat(0.0), e);
}

#define SC_SIGN 0x8000000000000000LL

/* The capped logits of SC_W entries. */
static inline __attribute__((always_inline)) sc_vf sc_capped(sc_vf xf, double cap,
                                                             double inv_cap)
{
    sc_vd x = __builtin_convertvector(xf, sc_vd);
    sc_vd u = x * sc_splat(inv_cap);
    sc_vl sign = (sc_vl)u & SC_SIGN;
    sc_vd a = (sc_vd)((sc_vl)u & ~SC_SIGN);
    sc_vd e = sc_exp_neg(sc_splat(-2.0) * a);
    sc_vd far = (sc_splat(1.0) - e) / (sc_splat(1.0) + e);
    /* tanh a = a + a^3 P(a^2) for a < 1/16, P the Taylor coefficients. */
    sc_vd v = a * a;
    sc_vd poly = ((((sc_splat(-1382.0 / 155925.0) * v + sc_splat(62.0 / 2835.0)) * v +
                    sc_splat(-17.0 / 315.0)) * v + sc_splat(2.0 / 15.0)) * v +
                  sc_splat(-1.0 / 3.0));
    sc_vd near = a + (a * v) * poly;
    sc_vd t = sc_blend(a < sc_splat(0.0625), near, far);
    sc_vd capped = (sc_vd)((sc_vl)t | sign) * sc_splat(cap);
    /* -inf and NaN stay as they are (+inf gives cap: tanh is 1 there). */
    sc_vl keep = (x == sc_splat(-INFINITY)) | (x != x);
    capped = sc_blend(keep, x, capped);
    return __builtin_convertvector(capped, sc_vf);
}

/* 1 - tanh(x / c)^2 of SC_W entries. */
static inline __attribute__((always_inline)) sc_vd sc_derivative(sc_vf xf, double inv_cap)
{
    sc_vd x = __builtin_convertvector(xf, sc_vd);
    sc_vd a = (sc_vd)((sc_vl)(x * sc_splat(inv_cap)) & ~SC_SIGN);
    sc_vd e = sc_exp_neg(sc_splat(-2.0) * a);
    sc_vd d = sc_splat(1.0) + e;
    return (sc_splat(4.0) * e) / (d * d);
}

/* One step on SC_W entries at x[j], o[j] of the mode (see smk_softcap). */
static inline __attribute__((always_inline)) void
sc_step(int mode, const float *x, char *o, ptrdiff_t j, double cap, double inv_cap)
{
    sc_vf xf;
    memcpy(&xf, x + j, sizeof xf);
    if (mode == SMK_SOFTCAP_VALUES) {
        sc_vf c = sc_capped(xf, cap, inv_cap);
        memcpy((float *)(void *)o + j, &c, sizeof c);
    } else if (mode == SMK_SOFTCAP_SCALE) {
        sc_vf g;
        memcpy(&g, (float *)(void *)o + j, sizeof g);
        sc_vd scaled = __builtin_convertvector(g, sc_vd) * sc_derivative(xf, inv_cap);
        g = __builtin_convertvector(scaled, sc_vf);
        memcpy((float *)(void *)o + j, &g, sizeof g);
    } else {
        sc_vd d = sc_derivative(xf, inv_cap);
        memcpy((double *)(void *)o + j, &d, sizeof d);
    }
}

/* n entries of one row: whole steps, then the tail through a padded copy (computed by
 * the same step, so that an entry's result does not depend on where it lies). */
static inline __attribute__((always_inline)) void
sc_segment(int mode, const float *x, char *o, ptrdiff_t n, double cap, double inv_cap)
{
    ptrdiff_t j = 0;
    for (; j + 2 * SC_W <= n; j += 2 * SC_W) {
        sc_step(mode, x, o, j, cap, inv_cap);
        sc_step(mode, x, o, j + SC_W, cap, inv_cap);
    }
    for (; j + SC_W <= n; j += SC_W)
        sc_step(mode, x, o, j, cap, inv_cap);
    ptrdiff_t rest = n - j;
    if (rest > 0) {
        size_t out_size = mode == SMK_SOFTCAP_DERIVATIVE ? 8 : 4;
        float xt[SC_W] = {0};
        double ot[SC_W] = {0};
        memcpy(xt, x + j, (size_t)rest * sizeof(float));
        char *op = o + (ptrdiff_t)out_size * j;
        memcpy(ot, op, (size_t)rest * out_size);
        sc_step(mode, xt, (char *)ot, 0, cap, inv_cap);
        memcpy(op, ot, (size_t)rest * out_size);
    }
}

static void sc_segment_values(const float *x, char *o, ptrdiff_t n, double cap, double inv)
{
    sc_segment(SMK_SOFTCAP_VALUES, x, o, n, cap, inv);
}
static void sc_segment_scale(const float *x, char *o, ptrdiff_t n, double cap, double inv)
{
    sc_segment(SMK_SOFTCAP_SCALE, x, o, n, cap, inv);
}
static void sc_segment_derivative(const float *x, char *o, ptrdiff_t n, double cap,
                                  double inv)
{
    sc_segment(SMK_SOFTCAP_DERIVATIVE, x, o, n, cap, inv);
}

/* Entries e0 .. e1 - 1 of the job, counted row after row. */
static void softcap_range(const smk_softcap *job, ptrdiff_t e0, ptrdiff_t e1)
{
    void (*segment)(const float *, char *, ptrdiff_t, double, double) =
        job->mode == SMK_SOFTCAP_VALUES  ? sc_segment_values
        : job->mode == SMK_SOFTCAP_SCALE ? sc_segment_scale
                                         : sc_segment_derivative;
    ptrdiff_t out_size = job->mode == SMK_SOFTCAP_DERIVATIVE ? 8 : 4;
    double inv_cap = 1.0 / job->cap;
    if (job->len <= 0)
        return;
    ptrdiff_t r = e0 / job->len, j = e0 % job->len;
    while (e0 < e1) {
        ptrdiff_t n = job->len - j < e1 - e0 ? job->len - j : e1 - e0;
        const float *x = (const float *)(const void *)(job->x + r * job->x_rs) + j;
        char *o = job->o + r * job->o_rs + out_size * j;
        segment(x, o, n, job->cap, inv_cap);
        e0 += n;
        r++;
        j = 0;
    }
}
