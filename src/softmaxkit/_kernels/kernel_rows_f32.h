/* float32 rows read in place, with exp evaluated on 8 float lanes (and, in the AVX-512
 * variant, the 512-bit passes of kernel_avx512.h); the row phases and a row taken
 * through the buffer.
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own.
 *
 * Why it is long (about 650 lines): the phases of a float32 row (max, exp-and-sum,
 * scale or log) share the exp arithmetic and its error analysis below, which is the
 * argument for the 2-ulp bound; splitting the phases apart would separate each loop
 * from the proof it relies on. */
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

/* Whether a decided row is one for the float32 passes (of any float32 row: also the
 * widened float16 and bfloat16 rows of kernel_rows_small.h). */
static int f32_row_ok(const smk_row *row)
{
    /* 1/T and (x - top)/T stay normal numbers in double. */
    return row->kind == KIND_FINITE && row->temperature > 0x1p-900 &&
           row->temperature < 0x1p900;
}

static int f32_fast_row(const smk_job *job, const smk_row *row)
{
    return f32_fast(job) && f32_row_ok(row);
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
    for (int k = 0; k < 8; k++)
        stats_lane(part, mx[k], mn[k], nan[k] != 0);
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
/* float16 and bfloat16 rows widened to float32 for the passes above. */
#include "kernel_rows_small.h"

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
    if (f32_phase(job, row, phase, c0, c1, part) ||
        small_phase(job, row, phase, c0, c1, buf, part))
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
