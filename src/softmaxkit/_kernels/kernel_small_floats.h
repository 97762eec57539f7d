/* Conversions of the small float formats (float16, bfloat16) to and from double, and
 * the loads and stores of one entry of any input or output type.
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. */
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
