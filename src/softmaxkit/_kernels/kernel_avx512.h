/* The float32 row passes on 512-bit vectors (included by kernel_rows_f32.h in the AVX-512
 * variant only, SMK_USE_AVX512): each pass of kernel_rows_f32.h that has a
 * 512-bit form is here beside the others, so that the variant reads as one piece
 * (which is why it is about 600 lines long: float32 and float64 passes, each checked
 * operation for operation against its 256-bit form in kernel_rows_f32.h/_f64.h).
 *
 * The same passes as f32_stats, f32_sum_impl, f32_scale_out_impl and
 * f32_log_softmax_out, with the same arithmetic lane by lane (diff8n, exp8n_near and
 * sum8n, operation for operation), on sixteen float32 lanes at a time and eight
 * doubles per half: the exp of each entry, and so each stored value, is the one the
 * AVX2 variant computes; only the order in which the double sums are accumulated
 * differs (a rounding of the sum, far below the bounds). The last n % 16 entries go
 * through the same lanes under a mask (padded with -inf for the sums, 1 for the
 * scaling), instead of a copy through a buffer. */
#include <immintrin.h>

/* 16-float vectors evaluated side by side in the exp-and-sum loop. */
#define W_SIDE 2
#define W_EACH for (int k = 0; k < cnt; k++)

static inline __m512d w_lo(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
static inline __m512d w_hi(__m512 v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); }
static inline __m512 w_join(__m512d a, __m512d b)
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(a)), _mm512_cvtpd_ps(b), 1);
}
static inline __mmask16 w_lanes_below(ptrdiff_t m)
{
    return (__mmask16)((1u << m) - 1u); /* 0 <= m < 16 */
}

static void w_stats(const float *x, ptrdiff_t n, smk_partial *part)
{
    /* vmaxps(v, mx) is v > mx ? v : mx, the blend of f32_stats (NaN keeps mx). */
    __m512 mx = _mm512_set1_ps(-INFINITY), mx2 = mx, mn = _mm512_set1_ps(INFINITY), mn2 = mn;
    __mmask16 nan = 0;
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v = _mm512_loadu_ps(x + i), w = _mm512_loadu_ps(x + i + 16);
        mx = _mm512_max_ps(v, mx);
        mx2 = _mm512_max_ps(w, mx2);
        mn = _mm512_min_ps(v, mn);
        mn2 = _mm512_min_ps(w, mn2);
        nan |= _mm512_cmp_ps_mask(v, w, _CMP_UNORD_Q);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : w_lanes_below(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        mx = _mm512_mask_max_ps(mx, m, v, mx);
        mn = _mm512_mask_min_ps(mn, m, v, mn);
        nan |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
    }
    mx = _mm512_max_ps(mx2, mx);
    mn = _mm512_min_ps(mn2, mn);
    float a[16], b[16];
    _mm512_storeu_ps(a, mx);
    _mm512_storeu_ps(b, mn);
    for (int k = 0; k < 16; k++)
        stats_lane(part, a[k], b[k], 0);
    if (nan)
        part->has_nan = 1;
}

/* diff8n on 16 lanes: d + c, the shifted score (top: the maxima, one per lane, also as
 * doubles in top_lo and top_hi; inv_t: 1 / T). */
typedef struct {
    __m512 top;
    __m512d top_lo, top_hi, inv_t;
} w_shift;

static inline w_shift w_shift_of(__m512 top, double inv_t)
{
    w_shift s = {top, w_lo(top), w_hi(top), _mm512_set1_pd(inv_t)};
    return s;
}

static inline __attribute__((always_inline)) void
w_diff(int cnt, const w_shift *s, int scaled, const __m512 *x, __m512 *d, __m512 *c)
{
    if (!scaled) {
        const __m512 neg_top = _mm512_xor_ps(s->top, _mm512_set1_ps(-0.0f));
        __m512 virt[W_SIDE];
        W_EACH d[k] = _mm512_sub_ps(x[k], s->top);
        W_EACH virt[k] = _mm512_sub_ps(d[k], x[k]);
        W_EACH c[k] = _mm512_add_ps(_mm512_sub_ps(x[k], _mm512_sub_ps(d[k], virt[k])),
                                    _mm512_sub_ps(neg_top, virt[k]));
        return;
    }
    __m512d a[W_SIDE], b[W_SIDE];
    W_EACH a[k] = _mm512_mul_pd(_mm512_sub_pd(w_lo(x[k]), s->top_lo), s->inv_t);
    W_EACH b[k] = _mm512_mul_pd(_mm512_sub_pd(w_hi(x[k]), s->top_hi), s->inv_t);
    W_EACH d[k] = w_join(a[k], b[k]);
    W_EACH c[k] = w_join(_mm512_sub_pd(a[k], w_lo(d[k])), _mm512_sub_pd(b[k], w_hi(d[k])));
}

/* exp8n_near on 16 lanes: exp(d + c) = scale * (1 + r_hi + small) where slow is clear. */
static inline __attribute__((always_inline)) void
w_exp(int cnt, int near, const __m512 *d_in, const __m512 *c_in, __m512 *r_hi, __m512 *small,
      __m512 *scale, __mmask16 *slow)
{
    const __m512 shifter = _mm512_set1_ps(0x1.8p23f);
    const __m512 neg_ln2_f = _mm512_set1_ps(-0x1.62e430p-1f);
    const __m512 neg_ln2_rest = _mm512_set1_ps(0x1.05c610p-29f);
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 d[W_SIDE], c[W_SIDE], t[W_SIDE], n[W_SIDE], rl[W_SIDE], q[W_SIDE], tail[W_SIDE];
    if (near) {
        W_EACH slow[k] = 0;
        W_EACH d[k] = d_in[k];
        W_EACH c[k] = c_in[k];
    } else {
        W_EACH slow[k] = _mm512_cmp_ps_mask(d_in[k], _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
        W_EACH d[k] = _mm512_mask_mov_ps(d_in[k], slow[k], _mm512_setzero_ps());
        W_EACH c[k] = _mm512_mask_mov_ps(c_in[k], slow[k], _mm512_setzero_ps());
    }
    /* The product and the sum rounded apart, as exp8n_near's (not fused). */
    W_EACH t[k] = _mm512_add_ps(_mm512_mul_ps(d[k], _mm512_set1_ps(0x1.715476p+0f)), shifter);
    W_EACH n[k] = _mm512_sub_ps(t[k], shifter);
    /* fma(-n, ln2, d) == fma(n, -ln2, d): the negation is exact. */
    W_EACH r_hi[k] = _mm512_fmadd_ps(n[k], neg_ln2_f, d[k]);
    W_EACH rl[k] = _mm512_fmadd_ps(n[k], neg_ln2_rest, c[k]);
    W_EACH q[k] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 40320.0f), r_hi[k],
                                  _mm512_set1_ps(1.0f / 5040.0f));
    W_EACH q[k] = _mm512_fmadd_ps(q[k], r_hi[k], _mm512_set1_ps(1.0f / 720.0f));
    W_EACH q[k] = _mm512_fmadd_ps(q[k], r_hi[k], _mm512_set1_ps(1.0f / 120.0f));
    W_EACH q[k] = _mm512_fmadd_ps(q[k], r_hi[k], _mm512_set1_ps(1.0f / 24.0f));
    W_EACH q[k] = _mm512_fmadd_ps(q[k], r_hi[k], _mm512_set1_ps(1.0f / 6.0f));
    W_EACH q[k] = _mm512_fmadd_ps(q[k], r_hi[k], _mm512_set1_ps(0.5f));
    W_EACH tail[k] = _mm512_mul_ps(r_hi[k], _mm512_mul_ps(r_hi[k], q[k]));
    W_EACH small[k] = _mm512_fmadd_ps(rl[k], _mm512_add_ps(_mm512_add_ps(one, r_hi[k]), tail[k]),
                                      tail[k]);
    W_EACH scale[k] = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_add_epi32(_mm512_castps_si512(t[k]), _mm512_set1_epi32(127)), 23));
}

/* lanes_sum on 16 lanes, one per row (see f32_lanes): entry j of the sixteen rows is
 * one vector; two steps side by side. Each lane's sum is accumulated in the order of
 * lanes_sum's, and the results are returned in its layout. */
static inline __attribute__((always_inline)) void
w_lanes_sum(int scaled, int near, int plain, const f32_shift *fs, const float *x, ptrdiff_t xs,
            float *e_buf, ptrdiff_t n, v4d *sum, v8i *count, v8i *far)
{
    __m512 top = _mm512_insertf32x8(_mm512_castps256_ps512((__m256)fs[0].top), (__m256)fs[1].top, 1);
    const w_shift ws = w_shift_of(top, fs[0].inv_t_s), *s = &ws;
    __m512d acc_lo = _mm512_insertf64x4(_mm512_castpd256_pd512((__m256d)sum[0]), (__m256d)sum[1], 1);
    __m512d acc_hi = _mm512_insertf64x4(_mm512_castpd256_pd512((__m256d)sum[2]), (__m256d)sum[3], 1);
    __m512i counts = _mm512_setzero_si512();
    __mmask16 farm = 0;
    for (ptrdiff_t j = 0; j < n; j += 2) {
        int cnt = j + 1 < n ? 2 : 1;
        __m512 v[W_SIDE], d[W_SIDE], c[W_SIDE], rh[W_SIDE], sm[W_SIDE], sc[W_SIDE];
        __mmask16 slow[W_SIDE], is_top[W_SIDE];
        W_EACH v[k] = _mm512_loadu_ps(x + (j + k) * xs);
        if (cnt == 2) {
            w_diff(2, s, scaled, v, d, c);
            w_exp(2, near, d, c, rh, sm, sc, slow);
        } else {
            w_diff(1, s, scaled, v, d, c);
            w_exp(1, near, d, c, rh, sm, sc, slow);
        }
        W_EACH {
            if (!plain) {
                is_top[k] = _mm512_cmp_ps_mask(v[k], s->top, _CMP_EQ_OQ);
                counts = _mm512_mask_add_epi32(counts, is_top[k], counts, _mm512_set1_epi32(1));
            }
            if (!near)
                farm |= slow[k];
            if (!plain && !near)
                sc[k] = _mm512_mask_mov_ps(sc[k], slow[k] | is_top[k], _mm512_setzero_ps());
            else if (!plain)
                sc[k] = _mm512_mask_mov_ps(sc[k], is_top[k], _mm512_setzero_ps());
            else if (!near)
                sc[k] = _mm512_mask_mov_ps(sc[k], slow[k], _mm512_setzero_ps());
            __m512d sl = w_lo(sc[k]), sh = w_hi(sc[k]);
            __m512d ea = _mm512_fmadd_pd(sl, _mm512_add_pd(w_lo(rh[k]), w_lo(sm[k])), sl);
            __m512d eb = _mm512_fmadd_pd(sh, _mm512_add_pd(w_hi(rh[k]), w_hi(sm[k])), sh);
            if (e_buf) {
                __m512 e = w_join(ea, eb);
                if (!plain)
                    e = _mm512_mask_mov_ps(e, is_top[k], _mm512_set1_ps(1.0f));
                _mm512_storeu_ps(e_buf + (j + k) * 16, e); /* LANES */
            }
            acc_lo = _mm512_add_pd(acc_lo, ea);
            acc_hi = _mm512_add_pd(acc_hi, eb);
        }
    }
    sum[0] = (v4d)_mm512_castpd512_pd256(acc_lo);
    sum[1] = (v4d)_mm512_extractf64x4_pd(acc_lo, 1);
    sum[2] = (v4d)_mm512_castpd512_pd256(acc_hi);
    sum[3] = (v4d)_mm512_extractf64x4_pd(acc_hi, 1);
    count[0] += (v8i)_mm512_castsi512_si256(counts);
    count[1] += (v8i)_mm512_extracti64x4_epi64(counts, 1);
    far[0] |= (v8i)_mm256_movm_epi32((__mmask8)farm);
    far[1] |= (v8i)_mm256_movm_epi32((__mmask8)(farm >> 8));
}

typedef struct {
    __m512d lo[W_SIDE], hi[W_SIDE];
    __m512i count;
    __mmask16 far;
} w_acc;

/* sum8n on 16 lanes (valid: the lanes that hold entries). */
static inline __attribute__((always_inline)) void
w_sum_step(int cnt, int near, int plain, const w_shift *s, int scaled, const __m512 *x,
           __mmask16 valid, float *o, w_acc *a)
{
    __m512 d[W_SIDE], c[W_SIDE], rh[W_SIDE], sm[W_SIDE], sc[W_SIDE];
    __mmask16 slow[W_SIDE], is_top[W_SIDE];
    __m512d ea[W_SIDE], eb[W_SIDE];
    w_diff(cnt, s, scaled, x, d, c);
    w_exp(cnt, near, d, c, rh, sm, sc, slow);
    if (!plain) {
        W_EACH is_top[k] = _mm512_cmp_ps_mask(x[k], s->top, _CMP_EQ_OQ);
        W_EACH a->count = _mm512_mask_add_epi32(a->count, is_top[k], a->count,
                                                _mm512_set1_epi32(1));
    }
    if (!near)
        W_EACH a->far |= slow[k] & valid;
    if (!plain && !near)
        W_EACH sc[k] = _mm512_mask_mov_ps(sc[k], slow[k] | is_top[k], _mm512_setzero_ps());
    else if (!plain)
        W_EACH sc[k] = _mm512_mask_mov_ps(sc[k], is_top[k], _mm512_setzero_ps());
    else if (!near)
        W_EACH sc[k] = _mm512_mask_mov_ps(sc[k], slow[k], _mm512_setzero_ps());
    W_EACH {
        __m512d sl = w_lo(sc[k]), sh = w_hi(sc[k]);
        ea[k] = _mm512_fmadd_pd(sl, _mm512_add_pd(w_lo(rh[k]), w_lo(sm[k])), sl);
        eb[k] = _mm512_fmadd_pd(sh, _mm512_add_pd(w_hi(rh[k]), w_hi(sm[k])), sh);
    }
    if (o) {
        W_EACH {
            __m512 e = w_join(ea[k], eb[k]);
            if (!plain)
                e = _mm512_mask_mov_ps(e, is_top[k], _mm512_set1_ps(1.0f));
            if (valid == (__mmask16)0xffff)
                _mm512_storeu_ps(o + 16 * k, e);
            else
                _mm512_mask_storeu_ps(o + 16 * k, valid, e);
        }
    }
    W_EACH a->lo[k] = _mm512_add_pd(a->lo[k], ea[k]);
    W_EACH a->hi[k] = _mm512_add_pd(a->hi[k], eb[k]);
}

static inline __attribute__((always_inline)) void
w_sum_impl(const float *x, float *o, ptrdiff_t n, const f32_shift *fs, int scaled, int near,
           int plain, smk_partial *part)
{
    const w_shift ws = w_shift_of(_mm512_set1_ps(fs->top_f), fs->inv_t_s), *s = &ws;
    w_acc a;
    for (int k = 0; k < W_SIDE; k++)
        a.lo[k] = a.hi[k] = _mm512_setzero_pd();
    a.count = _mm512_setzero_si512();
    a.far = 0;
    ptrdiff_t i = 0, n16 = n & ~(ptrdiff_t)15;
    for (; i + 16 * W_SIDE <= n16; i += 16 * W_SIDE) {
        __m512 v[W_SIDE];
        for (int k = 0; k < W_SIDE; k++)
            v[k] = _mm512_loadu_ps(x + i + 16 * k);
        w_sum_step(W_SIDE, near, plain, s, scaled, v, 0xffff, o ? o + i : NULL, &a);
    }
    for (; i < n16; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        w_sum_step(1, near, plain, s, scaled, &v, 0xffff, o ? o + i : NULL, &a);
    }
    if (i < n) {
        __mmask16 valid = w_lanes_below(n - i);
        __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), valid, x + i);
        /* not near: the padding is -inf */
        w_sum_step(1, 0, plain, s, scaled, &v, valid, o ? o + i : NULL, &a);
    }
    double rest = 0.0;
    if (a.far)
        rest += f32_far_sum(x, n, fs, scaled);
    __m512d sum = _mm512_setzero_pd();
    for (int k = 0; k < W_SIDE; k++)
        sum = _mm512_add_pd(sum, _mm512_add_pd(a.lo[k], a.hi[k]));
    double lanes[8];
    _mm512_storeu_pd(lanes, sum);
    for (int k = 0; k < 8; k++)
        rest += lanes[k];
    part->count += _mm512_reduce_add_epi32(a.count);
    add_partial(part, rest);
}

static void w_sum(const float *x, float *o, ptrdiff_t n, const f32_shift *s, int scaled,
                  int near, int plain, smk_partial *part)
{
#define W_SUM_CALL(S, N, P) w_sum_impl(x, o, n, s, S, N, P, part)
    WITH_CONSTANT_FLAGS(scaled, near, plain, W_SUM_CALL);
#undef W_SUM_CALL
}

/* f32_scale_out_impl on 16 lanes: e (2^64 / S as a + b) 2^-64, the far entries again. */
static inline __attribute__((always_inline)) void
w_scale_out_impl(const float *x, float *o, ptrdiff_t n, const f32_shift *s, int scaled,
                 int near, double scale)
{
    double up = scale * 0x1p64;
    float a_f = (float)up;
    const __m512 a = _mm512_set1_ps(a_f), b = _mm512_set1_ps((float)(up - (double)a_f));
    const __m512 down = _mm512_set1_ps(0x1p-64f), zero = _mm512_setzero_ps();
    __mmask16 zeros = 0;
    ptrdiff_t i = 0, n16 = n & ~(ptrdiff_t)15;
    for (; i + 32 <= n16; i += 32) {
        __m512 e = _mm512_loadu_ps(o + i), f = _mm512_loadu_ps(o + i + 16);
        if (!near)
            zeros |= _mm512_cmp_ps_mask(e, zero, _CMP_EQ_OQ) |
                     _mm512_cmp_ps_mask(f, zero, _CMP_EQ_OQ);
        _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_fmadd_ps(e, a, _mm512_mul_ps(e, b)), down));
        _mm512_storeu_ps(o + i + 16,
                         _mm512_mul_ps(_mm512_fmadd_ps(f, a, _mm512_mul_ps(f, b)), down));
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : w_lanes_below(n - i);
        __m512 e = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), m, o + i);
        zeros |= _mm512_cmp_ps_mask(e, zero, _CMP_EQ_OQ);
        _mm512_mask_storeu_ps(o + i, m,
                              _mm512_mul_ps(_mm512_fmadd_ps(e, a, _mm512_mul_ps(e, b)), down));
    }
    if (zeros)
        f32_far_out(x, o, n, s, scaled, scale);
}

static void w_scale_out(const float *x, float *o, ptrdiff_t n, const f32_shift *s, int scaled,
                        int near, double scale)
{
    if (near)
        w_scale_out_impl(x, o, n, s, scaled, 1, scale);
    else
        w_scale_out_impl(x, o, n, s, scaled, 0, scale);
}

/* f32_log_softmax_out on 16 lanes: ((x - top) / T - log_total) in double, rounded once. */
static void w_log_softmax_out(const float *x, float *o, ptrdiff_t n, float top,
                              double temperature, double log_total)
{
    const __m512d vt = _mm512_set1_pd(top), vl = _mm512_set1_pd(log_total),
                  tv = _mm512_set1_pd(temperature);
    int scaled = temperature != 1.0;
    for (ptrdiff_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : w_lanes_below(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512d a = _mm512_sub_pd(w_lo(v), vt), b = _mm512_sub_pd(w_hi(v), vt);
        if (scaled) {
            a = _mm512_div_pd(a, tv);
            b = _mm512_div_pd(b, tv);
        }
        _mm512_mask_storeu_ps(o + i, m, w_join(_mm512_sub_pd(a, vl), _mm512_sub_pd(b, vl)));
    }
}

/* ---- float64 rows read in place, on eight lanes ----
 *
 * The passes of f64_row_in_place over the multiple of 8 of a row: the maximum, minimum
 * and NaN flag; exp and its compensated sum (shifted_v, vexp_near with accurate and near,
 * and sum_n's TwoSum, operation for operation, with 2^k applied by vscalefpd, exact
 * here since near rows have normal results); the scaling, and log_softmax's output. */

#define W64_SIDE 2

static void w64_stats(const double *x, ptrdiff_t n8, smk_partial *part)
{
    __m512d mx = _mm512_set1_pd(-INFINITY), mx2 = mx, mn = _mm512_set1_pd(INFINITY), mn2 = mn;
    __mmask8 nan = 0;
    ptrdiff_t i = 0;
    for (; i + 16 <= n8; i += 16) {
        __m512d v = _mm512_loadu_pd(x + i), w = _mm512_loadu_pd(x + i + 8);
        mx = _mm512_max_pd(v, mx);
        mx2 = _mm512_max_pd(w, mx2);
        mn = _mm512_min_pd(v, mn);
        mn2 = _mm512_min_pd(w, mn2);
        nan |= _mm512_cmp_pd_mask(v, w, _CMP_UNORD_Q);
    }
    for (; i < n8; i += 8) {
        __m512d v = _mm512_loadu_pd(x + i);
        mx = _mm512_max_pd(v, mx);
        mn = _mm512_min_pd(v, mn);
        nan |= _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
    }
    mx = _mm512_max_pd(mx2, mx);
    mn = _mm512_min_pd(mn2, mn);
    double a[8], b[8];
    _mm512_storeu_pd(a, mx);
    _mm512_storeu_pd(b, mn);
    for (int k = 0; k < 8; k++)
        stats_lane(part, a[k], b[k], 0);
    if (nan)
        part->has_nan = 1;
}

/* shifted_v with compensate on eight lanes: (x - m) / T as hi + lo. */
static inline __attribute__((always_inline)) void
w64_shifted(__m512d x, __m512d m, __m512d t, int scaled, int exact, __m512d *hi, __m512d *lo)
{
    __m512d d = _mm512_sub_pd(x, m);
    __m512d virt = _mm512_sub_pd(d, x);
    __m512d c = _mm512_add_pd(_mm512_sub_pd(x, _mm512_sub_pd(d, virt)),
                              _mm512_sub_pd(_mm512_sub_pd(_mm512_setzero_pd(), m), virt));
    __mmask8 finite = _mm512_cmp_pd_mask(d, _mm512_set1_pd(-INFINITY), _CMP_GT_OQ);
    c = _mm512_maskz_mov_pd(finite, c);
    if (!scaled) {
        *hi = d;
        *lo = c;
        return;
    }
    __m512d q = _mm512_div_pd(d, t);
    if (exact) {
        __mmask8 safe = _mm512_cmp_pd_mask(q, _mm512_set1_pd(-0x1p996), _CMP_GT_OQ);
        __m512d qs = _mm512_maskz_mov_pd(safe, q), ds = _mm512_maskz_mov_pd(safe, d);
        __m512d remainder = _mm512_fnmadd_pd(qs, t, ds);
        *lo = _mm512_maskz_mov_pd(safe, _mm512_div_pd(_mm512_add_pd(remainder, c), t));
    } else {
        *lo = _mm512_div_pd(c, t);
    }
    *hi = q;
}

/* vexp_near(near = 1, accurate = 1) on eight lanes: every hi >= -700. */
static inline __attribute__((always_inline)) void
w64_exp_near(int cnt, const __m512d *h, const __m512d *l, __m512d *e)
{
    const __m512d shifter = _mm512_set1_pd(0x1.8p52);
    const __m512d ln2_hi = _mm512_set1_pd(6.93147180369123816490e-01);
    const __m512d ln2_lo = _mm512_set1_pd(1.90821492927058770002e-10);
    __m512d t[W64_SIDE], k_[W64_SIDE], r[W64_SIDE], r2[W64_SIDE], r4[W64_SIDE], q[W64_SIDE];
    __m512d a0[W64_SIDE], a1[W64_SIDE], a2[W64_SIDE], a3[W64_SIDE], a4[W64_SIDE], a5[W64_SIDE];
    W_EACH t[k] = _mm512_add_pd(_mm512_mul_pd(h[k], _mm512_set1_pd(1.4426950408889634074)),
                                shifter);
    W_EACH k_[k] = _mm512_sub_pd(t[k], shifter);
    W_EACH r[k] = _mm512_sub_pd(_mm512_sub_pd(h[k], _mm512_mul_pd(k_[k], ln2_hi)),
                                _mm512_sub_pd(_mm512_mul_pd(k_[k], ln2_lo), l[k]));
    W_EACH r2[k] = _mm512_mul_pd(r[k], r[k]);
    W_EACH r4[k] = _mm512_mul_pd(r2[k], r2[k]);
#define W64_PAIR(A, B) _mm512_fmadd_pd(_mm512_set1_pd(A), r[k], _mm512_set1_pd(B))
    W_EACH a0[k] = W64_PAIR(1.0 / 6.0, 1.0 / 2.0);
    W_EACH a1[k] = W64_PAIR(1.0 / 120.0, 1.0 / 24.0);
    W_EACH a2[k] = W64_PAIR(1.0 / 5040.0, 1.0 / 720.0);
    W_EACH a3[k] = W64_PAIR(1.0 / 362880.0, 1.0 / 40320.0);
    W_EACH a4[k] = W64_PAIR(1.0 / 39916800.0, 1.0 / 3628800.0);
    W_EACH a5[k] = W64_PAIR(1.0 / 6227020800.0, 1.0 / 479001600.0);
#undef W64_PAIR
    W_EACH a0[k] = _mm512_fmadd_pd(a1[k], r2[k], a0[k]);
    W_EACH a2[k] = _mm512_fmadd_pd(a3[k], r2[k], a2[k]);
    W_EACH a4[k] = _mm512_fmadd_pd(a5[k], r2[k], a4[k]);
    W_EACH q[k] = _mm512_fmadd_pd(_mm512_fmadd_pd(a4[k], r4[k], a2[k]), r4[k], a0[k]);
    W_EACH {
        __m512d p = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_fmadd_pd(r2[k], q[k], r[k]));
        /* p 2^k, exact for the normal results of near rows (as the product by 2^k). */
        e[k] = _mm512_scalef_pd(p, k_[k]);
    }
}

/* buf_sum_impl(near = 1) over n8 entries (a multiple of 8) of a float64 row. */
static inline __attribute__((always_inline)) void
w64_sum_near_impl(int plain, int scaled, int exact, const double *in, double *out,
                  ptrdiff_t n8, const smk_row *row, smk_partial *part)
{
    const __m512d top = _mm512_set1_pd(row->max), tv = _mm512_set1_pd(row->temperature);
    __m512d s[W64_SIDE], c[W64_SIDE];
    __m512i count = _mm512_setzero_si512();
    for (int k = 0; k < W64_SIDE; k++)
        s[k] = c[k] = _mm512_setzero_pd();
    ptrdiff_t i = 0;
    for (; i < n8; i += 8 * W64_SIDE) {
        int cnt = n8 - i >= 8 * W64_SIDE ? W64_SIDE : 1;
        __m512d x[W64_SIDE], hi[W64_SIDE], lo[W64_SIDE], e[W64_SIDE];
        W_EACH x[k] = _mm512_loadu_pd(in + i + 8 * k);
        W_EACH w64_shifted(x[k], top, tv, scaled, exact, &hi[k], &lo[k]);
        if (cnt == W64_SIDE)
            w64_exp_near(W64_SIDE, hi, lo, e);
        else
            w64_exp_near(1, hi, lo, e);
        W_EACH {
            if (out)
                _mm512_storeu_pd(out + i + 8 * k, e[k]);
            __m512d ek = e[k];
            if (!plain) {
                __mmask8 is_top = _mm512_cmp_pd_mask(x[k], top, _CMP_EQ_OQ);
                count = _mm512_mask_add_epi64(count, is_top, count, _mm512_set1_epi64(1));
                ek = _mm512_mask_mov_pd(ek, is_top, _mm512_setzero_pd());
            }
            __m512d t = _mm512_add_pd(s[k], ek), bp = _mm512_sub_pd(t, s[k]);
            c[k] = _mm512_add_pd(c[k], _mm512_add_pd(_mm512_sub_pd(s[k], _mm512_sub_pd(t, bp)),
                                                     _mm512_sub_pd(ek, bp)));
            s[k] = t;
        }
    }
    /* add_lanes: each lane's sum into part by TwoSum, its compensation added. */
    for (int v = 0; v < W64_SIDE; v++) {
        double sv[8], cv[8];
        _mm512_storeu_pd(sv, s[v]);
        _mm512_storeu_pd(cv, c[v]);
        for (int k = 0; k < 8; k++) {
            double t = part->hi + sv[k], bp = t - part->hi;
            part->lo += ((part->hi - (t - bp)) + (sv[k] - bp)) + cv[k];
            part->hi = t;
        }
    }
    part->count += _mm512_reduce_add_epi64(count);
}

static void w64_sum_near(int plain, const double *in, double *out, ptrdiff_t n8,
                         const smk_row *row, smk_partial *part)
{
    double temperature = row->temperature;
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
#define W64_CALL(P, S, E) w64_sum_near_impl(P, S, E, in, out, n8, row, part)
    if (plain) {
        if (!scaled) W64_CALL(1, 0, 0); else if (exact) W64_CALL(1, 1, 1); else W64_CALL(1, 1, 0);
    } else {
        if (!scaled) W64_CALL(0, 0, 0); else if (exact) W64_CALL(0, 1, 1); else W64_CALL(0, 1, 0);
    }
#undef W64_CALL
}

static void w64_scale(double *o, ptrdiff_t n8, double scale)
{
    const __m512d s = _mm512_set1_pd(scale);
    for (ptrdiff_t i = 0; i < n8; i += 8)
        _mm512_storeu_pd(o + i, _mm512_mul_pd(_mm512_loadu_pd(o + i), s));
}

static void w64_log_out(const double *x, double *o, ptrdiff_t n8, const smk_row *row)
{
    double temperature = row->temperature;
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    const __m512d top = _mm512_set1_pd(row->max), tv = _mm512_set1_pd(temperature),
                  log_total = _mm512_set1_pd(row->log_total);
    for (ptrdiff_t i = 0; i < n8; i += 8) {
        __m512d hi, lo;
        if (!scaled)
            w64_shifted(_mm512_loadu_pd(x + i), top, tv, 0, 0, &hi, &lo);
        else if (exact)
            w64_shifted(_mm512_loadu_pd(x + i), top, tv, 1, 1, &hi, &lo);
        else
            w64_shifted(_mm512_loadu_pd(x + i), top, tv, 1, 0, &hi, &lo);
        _mm512_storeu_pd(o + i, _mm512_add_pd(_mm512_sub_pd(hi, log_total), lo));
    }
}

/* ---- float16 and bfloat16 converted in registers ----
 *
 * Loads: float16 by vcvtph2ps, bfloat16 by a shift into the high half of a float32
 * (both exact), then to double. Stores: the double rounded to float32 towards zero,
 * with the lowest bit set where that was inexact (rounding to odd: float32 keeps more
 * than two bits beyond float16's and bfloat16's significands, so that the second
 * rounding, to nearest even, gives the correctly rounded result of the double, in one
 * step as double_to_small does), then vcvtps2ph, or bfloat16's round to nearest even
 * on the bits. NaN is stored as double_to_small stores it (sign, quiet bit). */

/* Sixteen float16 or bfloat16 entries widened to float32, exactly. */
static inline __m512 w_widen16(__m256i h, int type)
{
    return type == SMK_F16
               ? _mm512_cvtph_ps(h)
               : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Sixteen float32 rounded to float16 or bfloat16 (to nearest, ties to even; NaN as
 * double_to_small stores it: its sign and the quiet bit). */
static inline __m256i w_narrow16(__m512 f, int type)
{
    __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    __m512i bits = _mm512_castps_si512(f);
    __m512i sign = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x8000));
    __m512i r;
    if (type == SMK_F16) {
        r = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT |
                                                         _MM_FROUND_NO_EXC));
        r = _mm512_mask_or_epi32(r, nan, sign, _mm512_set1_epi32(0x7e00));
    } else {
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
        r = _mm512_srli_epi32(
            _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
        r = _mm512_mask_or_epi32(r, nan, sign, _mm512_set1_epi32(0x7fc0));
    }
    return _mm512_cvtepi32_epi16(r);
}

static void w_load_small(const char *p, int type, ptrdiff_t n, double *buf)
{
    for (ptrdiff_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : w_lanes_below(n - i);
        __m512 f = w_widen16(_mm256_maskz_loadu_epi16(m, p + 2 * i), type);
        __mmask8 lo = (__mmask8)m, hi = (__mmask8)(m >> 8);
        _mm512_mask_storeu_pd(buf + i, lo, w_lo(f));
        _mm512_mask_storeu_pd(buf + i + 8, hi, w_hi(f));
    }
}

/* Eight doubles rounded to float32 by rounding to odd. */
static inline __m256 w_round_odd(__m512d d)
{
    __m256 f = _mm512_cvt_roundpd_ps(d, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask8 inexact = _mm512_cmp_pd_mask(_mm512_cvtps_pd(f), d, _CMP_NEQ_UQ);
    __m256i bits = _mm256_castps_si256(f);
    bits = _mm256_mask_or_epi32(bits, inexact, bits, _mm256_set1_epi32(1));
    return _mm256_castsi256_ps(bits);
}

static void w_store_small(char *p, int type, ptrdiff_t n, const double *buf)
{
    for (ptrdiff_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : w_lanes_below(n - i);
        __m512d a = _mm512_maskz_loadu_pd((__mmask8)m, buf + i);
        __m512d b = _mm512_maskz_loadu_pd((__mmask8)(m >> 8), buf + i + 8);
        __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(w_round_odd(a)), w_round_odd(b), 1);
        _mm256_mask_storeu_epi16(p + 2 * i, m, w_narrow16(f, type));
    }
}
