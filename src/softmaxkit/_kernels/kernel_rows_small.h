/* float16 and bfloat16 rows on the float32 passes: a row (or a chunk of one) widened
 * exactly to float32 in the scratch, the float32 row passes of kernel_rows_f32.h (the
 * 512-bit ones of kernel_avx512.h in the AVX-512 variant) run on it, and the float32
 * results rounded once to the small format.
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h) after kernel_rows_f32.h; not a header of its own.
 *
 * Accuracy: the widening is exact (bfloat16 is the high half of a float32; every
 * float16 is a float32), so the float32 passes see the row itself, masked entries as
 * -inf, and give softmax and log_softmax within 2 float32 ulp. Rounding that once to
 * nearest (ties to even) adds half an ulp of the small format: the error is at most
 * 1/2 + 2^-12 ulp of float16 (2^-15 of bfloat16), within its 1-ulp bound. float16's
 * subnormal results (spacing 2^-24) are normal float32 numbers, where the float32
 * error is below 2^-47; bfloat16 has float32's exponent range, and its subnormal
 * results come from float32 results rounded once from double (the far entries) or
 * within half a float32 subnormal spacing (2^-150), against bfloat16's 2^-133.
 * logsumexp is formed from the sums in double, as for float32 rows.
 *
 * The rows the float32 passes do not take (a NaN, +inf, every entry -inf or masked, a
 * temperature of 0, inf or beyond 2^+-900: see f32_row_ok) keep the double road of
 * kernel_buffer.h, so that their results do not change. */

typedef unsigned short v8us __attribute__((vector_size(16)));

/* ---- conversions of eight entries ---- */

/* float16 bits (in the low half of each lane) to float32, exactly: the exponent
 * rebiased, infinities and NaN kept, subnormals (and zero) through a float32
 * subtraction of 2^-14, which is exact. */
static inline v8u f16_to_f32_8(v8u h)
{
    const v8u exp_mask = (v8u){0, 0, 0, 0, 0, 0, 0, 0} + (0x7c00u << 13);
    v8u o = (h & 0x7fffu) << 13;
    v8u e = o & exp_mask;
    o += (127u - 15u) << 23;
    v8i special = (v8i)(e == exp_mask), sub = (v8i)(e == 0u);
    o += (v8u)special & ((128u - 16u) << 23);
    v8u os = (v8u)((v8f)(o + (1u << 23)) - splat8(0x1p-14f));
    o = (v8u)(((v8i)os & sub) | ((v8i)o & ~sub));
    return o | ((h & 0x8000u) << 16);
}

/* float32 to float16 bits, rounded to nearest, ties to even: overflow to inf, NaN as
 * double_to_small stores it (sign, quiet bit), subnormals by a float32 addition that
 * rounds at float16's spacing 2^-24. */
static inline v8u f32_to_f16_8(v8f x)
{
    v8u f = (v8u)x;
    v8u sign = f & 0x80000000u;
    f ^= sign;
    v8i big = (v8i)(f >= (143u << 23)); /* |x| >= 2^16: inf or NaN */
    v8i nan = (v8i)(f > (255u << 23));
    v8i sub = (v8i)(f < (113u << 23)); /* |x| < 2^-14 */
    const v8f magic = (v8f)((v8u){0, 0, 0, 0, 0, 0, 0, 0} + (126u << 23)); /* 0.5 */
    v8u r_sub = (v8u)((v8f)f + magic) - (126u << 23);
    v8u r_norm = (f + (((unsigned)(15 - 127) << 23) + 0xfffu) + ((f >> 13) & 1u)) >> 13;
    v8u r_big = (v8u)(((v8i)(v8u){0, 0, 0, 0, 0, 0, 0, 0} + 0x7c00) | (nan & 0x0200));
    v8i r = ((v8i)r_sub & sub) | ((v8i)r_norm & ~sub);
    r = ((v8i)r_big & big) | (r & ~big);
    return (v8u)r | (sign >> 16);
}

/* float32 to bfloat16 bits, rounded to nearest, ties to even, NaN as above. */
static inline v8u f32_to_bf16_8(v8f x)
{
    v8u b = (v8u)x;
    v8u r = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
    v8i nan = x != x;
    v8u quiet = ((b >> 16) & 0x8000u) | 0x7fc0u;
    return (v8u)(((v8i)quiet & nan) | ((v8i)r & ~nan));
}

static inline v8f widen8(v8us h, int type)
{
    v8u w = __builtin_convertvector(h, v8u);
    return type == SMK_F16 ? (v8f)f16_to_f32_8(w) : (v8f)(w << 16);
}

static inline v8us narrow8(v8f f, int type)
{
    return __builtin_convertvector(type == SMK_F16 ? f32_to_f16_8(f) : f32_to_bf16_8(f), v8us);
}

/* ---- a chunk widened into float32, and results rounded back ---- */

/* n contiguous float16 or bfloat16 entries at p into out. */
static inline __attribute__((always_inline)) void
widen_contiguous_as(const char *p, int type, ptrdiff_t n, float *out)
{
    ptrdiff_t i = 0;
#if SMK_USE_AVX512
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, w_widen16(_mm256_loadu_si256((const void *)(p + 2 * i)), type));
    if (i < n) {
        __mmask16 m = w_lanes_below(n - i);
        _mm512_mask_storeu_ps(out + i, m, w_widen16(_mm256_maskz_loadu_epi16(m, p + 2 * i), type));
    }
#else
    for (; i + 8 <= n; i += 8) {
        v8us h;
        memcpy(&h, p + 2 * i, sizeof h);
        store8(out + i, widen8(h, type));
    }
    if (i < n) {
        v8us h = {0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(&h, p + 2 * i, (size_t)(n - i) * 2);
        float t[8];
        store8(t, widen8(h, type));
        memcpy(out + i, t, (size_t)(n - i) * sizeof(float));
    }
#endif
}

/* n float32 results rounded into contiguous float16 or bfloat16 entries at p. */
static inline __attribute__((always_inline)) void
narrow_contiguous_as(const float *in, int type, ptrdiff_t n, char *p)
{
    ptrdiff_t i = 0;
#if SMK_USE_AVX512
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((void *)(p + 2 * i), w_narrow16(_mm512_loadu_ps(in + i), type));
    if (i < n) {
        __mmask16 m = w_lanes_below(n - i);
        _mm256_mask_storeu_epi16(p + 2 * i, m, w_narrow16(_mm512_maskz_loadu_ps(m, in + i), type));
    }
#else
    for (; i + 8 <= n; i += 8) {
        v8us h = narrow8(load8(in + i), type);
        memcpy(p + 2 * i, &h, sizeof h);
    }
    if (i < n) {
        v8us h = narrow8(load_part(in + i, n - i, 0.0f), type);
        memcpy(p + 2 * i, &h, (size_t)(n - i) * 2);
    }
#endif
}

/* The entries [j0, j0 + n) of a row (x, its mask m or NULL) into out, masked entries
 * as -inf. */
static void small_widen(const smk_job *job, const char *x, const char *m, ptrdiff_t j0,
                        ptrdiff_t n, float *out)
{
    const char *p = x + j0 * job->x_es;
    if (job->x_es != 2) {
        for (ptrdiff_t i = 0; i < n; i++)
            out[i] = (float)load_one(p + i * job->x_es, job->in_type);
    } else if (job->in_type == SMK_F16) {
        widen_contiguous_as(p, SMK_F16, n, out);
    } else {
        widen_contiguous_as(p, SMK_BF16, n, out);
    }
    if (m) {
        const char *q = m + j0 * job->m_es;
        for (ptrdiff_t i = 0; i < n; i++)
            if (!q[i * job->m_es])
                out[i] = -INFINITY;
    }
}

/* n float32 results into the entries [j0, j0 + n) of the output row o. */
static void small_narrow(const smk_job *job, const float *in, ptrdiff_t n, char *o,
                         ptrdiff_t j0)
{
    char *p = o + j0 * job->o_es;
    if (job->o_es != 2) {
        /* double_to_small of a float32 is its rounding to nearest, as above */
        for (ptrdiff_t i = 0; i < n; i++)
            store_one(p + i * job->o_es, job->out_type, (double)in[i]);
    } else if (job->out_type == SMK_F16) {
        narrow_contiguous_as(in, SMK_F16, n, p);
    } else {
        narrow_contiguous_as(in, SMK_BF16, n, p);
    }
}

/* ---- log_softmax rounded to odd ----
 *
 * log_softmax is formed in double, (x - top) / T - log_total: rounded to float32 by
 * rounding to odd (towards zero, the lowest bit set where inexact; float32 keeps more
 * than two bits beyond the small formats' significands, subnormals included), the
 * rounding to the small format gives the double rounded once, as the double road
 * stores it. The rows' entries are never NaN here (finite rows; -inf stays -inf). */

#if SMK_USE_AVX512
static inline __attribute__((always_inline)) void
small_log_softmax_as(const float *x, float *o, char *p, int type, ptrdiff_t n, float top,
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
        __m256 fa = w_round_odd(_mm512_sub_pd(a, vl)), fb = w_round_odd(_mm512_sub_pd(b, vl));
        __m512 r = _mm512_insertf32x8(_mm512_castps256_ps512(fa), fb, 1);
        if (p)
            _mm256_mask_storeu_epi16(p + 2 * i, m, w_narrow16(r, type));
        else
            _mm512_mask_storeu_ps(o + i, m, r);
    }
}
#endif

typedef int v4i __attribute__((vector_size(16)));

/* Eight doubles (a: lanes 0-3, b: 4-7), none NaN, rounded to float32 by rounding to
 * odd: rounded to nearest, one step back towards zero where that went up in
 * magnitude (compared as integers, which order the magnitudes), then the lowest bit
 * set where inexact. */
static inline v8f join8_odd(v4d a, v4d b)
{
    const v4l magnitude = {0x7fffffffffffffffLL, 0x7fffffffffffffffLL, 0x7fffffffffffffffLL,
                           0x7fffffffffffffffLL};
    v8f f = join8(a, b);
    v4d fa = lo_half(f), fb = hi_half(f);
    v4l up_a = ((v4l)fa & magnitude) > ((v4l)a & magnitude);
    v4l up_b = ((v4l)fb & magnitude) > ((v4l)b & magnitude);
    v4l inexact_a = fa != a, inexact_b = fb != b;
    v4i ua = __builtin_convertvector(up_a, v4i), ub = __builtin_convertvector(up_b, v4i);
    v4i ia = __builtin_convertvector(inexact_a, v4i), ib = __builtin_convertvector(inexact_b, v4i);
    v8i up = __builtin_shufflevector(ua, ub, 0, 1, 2, 3, 4, 5, 6, 7);
    v8i inexact = __builtin_shufflevector(ia, ib, 0, 1, 2, 3, 4, 5, 6, 7);
    v8i bits = (v8i)f + up; /* up is -1 where true */
    return (v8f)(bits | (inexact & 1));
}

#if !SMK_USE_AVX512
static inline __attribute__((always_inline)) void
small_log_softmax_as(const float *x, float *o, char *p, int type, ptrdiff_t n, float top,
                     double temperature, double log_total)
{
    v4d vt = vsplat(top), vl = vsplat(log_total), tv = vsplat(temperature);
    int scaled = temperature != 1.0;
    for (ptrdiff_t i = 0; i < n; i += 8) {
        ptrdiff_t m = n - i >= 8 ? 8 : n - i;
        v8f v = m == 8 ? load8(x + i) : load_part(x + i, m, 0.0f);
        v4d a = lo_half(v) - vt, b = hi_half(v) - vt;
        if (scaled) {
            a = a / tv;
            b = b / tv;
        }
        v8f r = join8_odd(a - vl, b - vl);
        if (p) {
            v8us h = narrow8(r, type);
            memcpy(p + 2 * i, &h, (size_t)m * 2);
        } else {
            memcpy(o + i, &r, (size_t)m * sizeof(float));
        }
    }
}
#endif

/* log_softmax of n widened entries x: rounded into the contiguous small-format
 * entries at p, or (p NULL) to odd into o, for small_narrow. */
static void small_log_softmax_out(const float *x, float *o, char *p, int type, ptrdiff_t n,
                                  float top, double temperature, double log_total)
{
    if (type == SMK_F16)
        small_log_softmax_as(x, o, p, SMK_F16, n, top, temperature, log_total);
    else
        small_log_softmax_as(x, o, p, SMK_BF16, n, top, temperature, log_total);
}

/* ---- softmax's last pass, rounded in registers ----
 *
 * The stored exp e times the reciprocal of the sum, formed as F32_SCALE_OUT forms it
 * (see f32_scale_out_impl, operation for operation), rounded to the small format in
 * registers and stored into n contiguous entries at p; the far entries (stored as 0)
 * evaluated again as f32_far_out does, rounded to float32, then to the small format.
 * The results are those of F32_SCALE_OUT followed by small_narrow. */
static inline __attribute__((always_inline)) void
small_scale_out_as(const float *x, const float *e32, char *p, int type, ptrdiff_t n,
                   const f32_shift *s, int scaled, int near, double scale)
{
    double up = scale * 0x1p64;
    float a_f = (float)up, b_f = (float)(up - (double)a_f);
    int any_zero;
#if SMK_USE_AVX512
    const __m512 a = _mm512_set1_ps(a_f), b = _mm512_set1_ps(b_f);
    const __m512 down = _mm512_set1_ps(0x1p-64f), zero = _mm512_setzero_ps();
    __mmask16 zeros = 0;
    for (ptrdiff_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : w_lanes_below(n - i);
        __m512 e = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), m, e32 + i);
        if (!near)
            zeros |= _mm512_cmp_ps_mask(e, zero, _CMP_EQ_OQ);
        __m512 r = _mm512_mul_ps(_mm512_fmadd_ps(e, a, _mm512_mul_ps(e, b)), down);
        _mm256_mask_storeu_epi16(p + 2 * i, m, w_narrow16(r, type));
    }
    any_zero = zeros != 0;
#else
    const v8f a = splat8(a_f), b = splat8(b_f), down = splat8(0x1p-64f);
    v8i zeros = {0, 0, 0, 0, 0, 0, 0, 0};
    for (ptrdiff_t i = 0; i < n; i += 8) {
        ptrdiff_t m = n - i >= 8 ? 8 : n - i;
        v8f e = m == 8 ? load8(e32 + i) : load_part(e32 + i, m, 1.0f);
        if (!near)
            zeros |= e == splat8(0.0f);
        v8us h = narrow8(fma8(e, a, e * b) * down, type);
        memcpy(p + 2 * i, &h, (size_t)m * 2);
    }
    any_zero = any8(zeros);
#endif
    if (any_zero)
        for (ptrdiff_t i = 0; i < n; i++)
            if (diff1(s, scaled, x[i]) < -87.0f)
                store_one(p + 2 * i, type, (float)(exp_far(s, scaled, x[i]) * scale));
}

static void small_scale_out(const float *x, const float *e32, char *p, int type, ptrdiff_t n,
                            const f32_shift *s, int scaled, int near, double scale)
{
#define SMALL_SCALE_CALL(T, N) small_scale_out_as(x, e32, p, T, n, s, scaled, N, scale)
    if (type == SMK_F16) {
        if (near) SMALL_SCALE_CALL(SMK_F16, 1); else SMALL_SCALE_CALL(SMK_F16, 0);
    } else {
        if (near) SMALL_SCALE_CALL(SMK_BF16, 1); else SMALL_SCALE_CALL(SMK_BF16, 0);
    }
#undef SMALL_SCALE_CALL
}

/* ---- rows ---- */

/* Jobs whose rows may take this road: float16 or bfloat16 rows (any stride, with or
 * without a mask) in row mode, into the same kind of output or into logsumexp. */
static int small_fast(const smk_job *job)
{
    if ((job->in_type != SMK_F16 && job->in_type != SMK_BF16) || job->block || job->bsum)
        return 0;
    return job->op == SMK_LOGSUMEXP || job->out_type == SMK_F16 || job->out_type == SMK_BF16;
}

/* Phases 2 and 3 of a row decided finite, on the n widened entries x32 that start at
 * entry j0 of the row (exp kept in o32 between the passes); phase 0: both, the sums
 * (row_sums) between them. The results go straight into the contiguous small-format
 * entries at p, or (p NULL) through o32 and small_narrow into the row's output. */
static void small_passes(const smk_job *job, smk_row *row, int phase, const float *x32,
                         float *o32, ptrdiff_t n, ptrdiff_t j0, char *p, smk_partial *part)
{
    float top = (float)row->max;
    int scaled = row->temperature != 1.0;
    f32_shift s = shift_of(top, row->temperature);
    int near = row_is_near(row, 86.0);
    int plain = job->op == SMK_SOFTMAX && !(job->l_es && row->l);
    int softmax = job->op == SMK_SOFTMAX;
    smk_partial unused;
    if (phase != 3)
        F32_SUM(x32, softmax && phase == 0 ? o32 : NULL, n, &s, scaled, near, plain, part);
    else if (softmax) {
        partial_init(&unused);
        F32_SUM(x32, o32, n, &s, scaled, near, plain, &unused);
    }
    if (phase == 0)
        row_sums(job, row, part);
    if (phase == 2 || job->op == SMK_LOGSUMEXP)
        return;
    if (softmax && p)
        small_scale_out(x32, o32, p, job->out_type, n, &s, scaled, near, row->scale);
    else if (softmax)
        F32_SCALE_OUT(x32, o32, n, &s, scaled, near, row->scale);
    else
        small_log_softmax_out(x32, o32, p, job->out_type, n, top, row->temperature,
                              row->log_total);
    if (!p)
        small_narrow(job, o32, n, row->o, j0);
}

/* A whole row of n <= SMK_CHUNK entries (buf: round4(n) + 8 doubles, which hold the
 * widened row and the float32 results). Returns 0, having written nothing, when the
 * row is not for the float32 passes (its state then set by row_decide). */
static int small_row(const smk_job *job, smk_row *row, double *buf)
{
    ptrdiff_t n = job->len;
    float *x32 = (float *)(void *)buf, *o32 = x32 + round4(n) + 8;
    small_widen(job, row->x, row->m, 0, n, x32);
    smk_partial part;
    partial_init(&part);
    F32_STATS(x32, n, &part);
    row_decide(job, row, &part);
    if (!f32_row_ok(row))
        return 0;
    partial_init(&part);
    small_passes(job, row, 0, x32, o32, n, 0, job->o_es == 2 && row->o ? row->o : NULL, &part);
    return 1;
}

/* One phase over the entries [c0, c1) of a row longer than SMK_CHUNK (buf: SMK_CHUNK
 * + 8 doubles), in chunks of SMK_CHUNK / 2 widened again in each phase; softmax
 * evaluates exp again in phase 3. Returns 0 when the row is not for this road. */
static int small_phase(const smk_job *job, smk_row *row, int phase, ptrdiff_t c0,
                       ptrdiff_t c1, double *buf, smk_partial *part)
{
    if (!small_fast(job) || (phase != 1 && !f32_row_ok(row)))
        return 0;
    const ptrdiff_t chunk = SMK_CHUNK / 2;
    float *x32 = (float *)(void *)buf, *o32 = x32 + chunk;
    for (ptrdiff_t j0 = c0; j0 < c1; j0 += chunk) {
        ptrdiff_t n = c1 - j0 < chunk ? c1 - j0 : chunk;
        small_widen(job, row->x, row->m, j0, n, x32);
        if (phase == 1) {
            F32_STATS(x32, n, part);
            continue;
        }
        char *p = job->o_es == 2 && row->o ? row->o + 2 * j0 : NULL;
        small_passes(job, row, phase, x32, o32, n, j0, p, part);
    }
    return 1;
}
