/* The compiled kernels as XLA foreign functions, for JAX arrays on the CPU.
 *
 * Built only where jaxlib's FFI headers are found at build time (meson.build); the
 * Python side (softmaxkit/_jax.py) registers these handlers with
 * jax.ffi.register_ffi_target and calls them with jax.ffi.ffi_call, so that a
 * softmax under jax.jit runs the same kernel as a NumPy array, in place in XLA's
 * buffers. XLA hands over dense row-major buffers: the reduced axis is the middle one
 * of (outer, len, inner).
 *
 * Attributes: op (0 softmax, 1 log_softmax, 2 logsumexp), axis_from_end (the reduced
 * axis counted from the last one, so that vmap's leading batch dimensions leave it
 * in place), temperature (a scalar >= 0, inf allowed), threads.
 */
#include <cstddef>
#include <cstdint>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

extern "C" int smk_run_dense(int op, int type, const void *x, void *out,
                             const unsigned char *mask, ptrdiff_t outer, ptrdiff_t len,
                             ptrdiff_t inner, double t_value, int n_threads);

namespace {

int type_code(ffi::DataType type)
{
    switch (type) {
    case ffi::DataType::F32:
        return 0;
    case ffi::DataType::F64:
        return 1;
    case ffi::DataType::F16:
        return 2;
    case ffi::DataType::BF16:
        return 3;
    default:
        return -1;
    }
}

ffi::Error run(ffi::AnyBuffer x, const unsigned char *mask, ffi::AnyBuffer::Dimensions mask_dims,
               void *out, int32_t op, int64_t axis_from_end, double temperature, int32_t threads)
{
    int code = type_code(x.element_type());
    if (code < 0)
        return ffi::Error::InvalidArgument("softmaxkit: x must be float16, bfloat16, float32 or float64");
    auto dims = x.dimensions();
    int64_t rank = static_cast<int64_t>(dims.size());
    int64_t axis = rank - 1 - axis_from_end;
    if (axis < 0 || axis >= rank)
        return ffi::Error::InvalidArgument("softmaxkit: axis out of range");
    if (mask && mask_dims.size() != dims.size())
        return ffi::Error::InvalidArgument("softmaxkit: the mask must have x's shape");
    ptrdiff_t outer = 1, inner = 1;
    for (int64_t d = 0; d < rank; d++) {
        if (mask && mask_dims[d] != dims[d])
            return ffi::Error::InvalidArgument("softmaxkit: the mask must have x's shape");
        if (d < axis)
            outer *= dims[d];
        else if (d > axis)
            inner *= dims[d];
    }
    ptrdiff_t len = dims[axis];
    if (outer * inner * len == 0)
        return ffi::Error::Success();
    if (smk_run_dense(op, code, x.untyped_data(), out, mask, outer, len, inner, temperature,
                      threads))
        return ffi::Error::Internal("softmaxkit: out of memory");
    return ffi::Error::Success();
}

ffi::Error normalize(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, int32_t op, int64_t axis_from_end,
                     double temperature, int32_t threads)
{
    return run(x, nullptr, x.dimensions(), y->untyped_data(), op, axis_from_end, temperature,
               threads);
}

ffi::Error normalize_masked(ffi::AnyBuffer x, ffi::AnyBuffer keep, ffi::Result<ffi::AnyBuffer> y,
                            int32_t op, int64_t axis_from_end, double temperature, int32_t threads)
{
    if (keep.element_type() != ffi::DataType::PRED)
        return ffi::Error::InvalidArgument("softmaxkit: the mask must be boolean");
    return run(x, static_cast<const unsigned char *>(keep.untyped_data()), keep.dimensions(),
               y->untyped_data(), op, axis_from_end, temperature, threads);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(smk_xla_normalize, normalize,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int32_t>("op")
                                  .Attr<int64_t>("axis_from_end")
                                  .Attr<double>("temperature")
                                  .Attr<int32_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(smk_xla_normalize_masked, normalize_masked,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int32_t>("op")
                                  .Attr<int64_t>("axis_from_end")
                                  .Attr<double>("temperature")
                                  .Attr<int32_t>("threads"));
