"""JAX arrays at XLA's speed: the compiled kernel as an XLA foreign function, and
closed-form gradients.

The dispatch table's JAX entry (``_dispatch.py``) takes softmax, log_softmax and
logsumexp of a JAX array (concrete or traced: under ``jit``, ``grad``, ``vmap``) over
one axis, with a scalar temperature and any mask, in the input's own floating dtype.

- **Forward.** On the CPU, where the extension was built with jaxlib's FFI headers
  (``jax_ffi.cc``), XLA calls the compiled kernel on its own buffers
  (:func:`jax.ffi.ffi_call`): the NumPy path's accuracy and speed, inside the compiled
  graph. Elsewhere (a GPU, or no foreign functions) the generic array-API code runs,
  as before. :func:`jax.lax.platform_dependent` picks one when XLA compiles.
- **Backward.** :func:`jax.custom_vjp` with the closed forms, so that ``grad`` does not
  differentiate through the compensated arithmetic: softmax ``y * (g - sum(g * y)) / T``,
  log_softmax ``(g - softmax * sum(g)) / T`` (the rule of :func:`softmaxkit.log_softmax_vjp`:
  an entry whose output is ``-inf`` passes its own ``g`` through),
  logsumexp ``g * softmax / T``. The core's rules at the edges: 0 at ``-inf`` and
  masked entries of softmax and logsumexp, on all ``-inf`` rows, rows with a ``+inf``
  and at ``T = 0`` or ``inf``; NaN on rows containing NaN.

A temperature given as an array (one per row, or traced), logsumexp's ``b`` and
``return_sign``, several axes and ``dtype=`` conversions stay with the generic code
and JAX's own differentiation of it. The number of kernel threads is read when a
function is traced (``jit`` caches it with the compiled graph).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._kernels import LOG_SOFTMAX, LOGSUMEXP, SOFTMAX, _forced_generic
from ._kernels import _kernel as _extension
from ._lib import _generic
from ._lib._call import Call
from ._lib._library import Library
from ._threads import _setting

__all__ = ["plan", "run", "ffi_available"]

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_TARGETS = {}  # name -> registered target name, once registered


def _registered():
    """The names of the registered foreign functions ({} where there are none)."""
    if _TARGETS or _extension is None or not hasattr(_extension, "jax_handlers"):
        return _TARGETS
    handlers = _extension.jax_handlers()
    if not handlers:
        return _TARGETS
    import jax

    for name, capsule in handlers.items():
        target = f"softmaxkit_{name}"
        jax.ffi.register_ffi_target(target, capsule, platform="cpu")
        _TARGETS[name] = target
    return _TARGETS


def ffi_available() -> bool:
    """Whether JAX arrays on the CPU run in the compiled kernel (for the tests)."""
    return bool(_registered()) and not _forced_generic[0]


def plan(op, call, options):
    """The validated call, where the JAX entry takes it, else None."""
    if call.library is not Library.JAX or options.out is not None or len(call.axes) != 1:
        return None
    if not isinstance(call.temperature, float) or call.is_empty:
        return None
    if op == LOGSUMEXP and (options.b is not None or options.return_sign):
        return None
    name = str(call.source.dtype)
    if name not in _FLOATS or str(call.plan.result) != name:
        return None
    return call


def _kernel_takes(dtype_name, temperature):
    """Whether the kernel is right for this dtype and temperature: float64 with a
    temperature above 1 or below 2**-900 stays with the generic code (the kernel's
    float64 path is not exact there when x - max leaves the float range)."""
    if dtype_name != "float64":
        return True
    return temperature == 0.0 or math.isinf(temperature) or 2.0**-900 <= temperature <= 1.0


def run(op, call, _call, options):
    axis, temperature = call.axes[0], call.temperature
    use_ffi = ffi_available() and _kernel_takes(str(call.source.dtype), temperature)
    threads = int(_setting[0])
    if op == LOGSUMEXP:
        result = _differentiable()[1](
            call.source, call.keep, axis, temperature, use_ffi, threads, call
        )
        if not options.keepdims:
            import jax.numpy as jnp

            result = jnp.squeeze(result, axis=axis)
        return result
    return _differentiable()[0](
        call.source, call.keep, op, axis, temperature, use_ffi, threads, call
    )


# ---------------------------------------------------------------- forward


def _generic_forward(op, x, keep, axis, temperature, call):
    described = Call(call.xp, x, (axis,), temperature, keep, call.plan)
    if op == LOGSUMEXP:
        result, _ = _generic.logsumexp(described, b=None, keepdims=True, return_sign=False)
        return result
    return _generic.normalize(described, log=op == LOG_SOFTMAX)


def _ffi_forward(op, x, keep, axis, temperature, threads):
    import jax

    shape = x.shape
    if op == LOGSUMEXP:
        shape = shape[:axis] + (1,) + shape[axis + 1 :]
    attributes = dict(
        op=np.int32(op),
        axis_from_end=np.int64(x.ndim - 1 - axis),
        temperature=np.float64(temperature),
        threads=np.int32(threads),
    )
    targets = _registered()
    result = jax.ShapeDtypeStruct(shape, x.dtype)
    if keep is None:
        call = jax.ffi.ffi_call(targets["normalize"], result, vmap_method="broadcast_all")
        return call(x, **attributes)
    call = jax.ffi.ffi_call(targets["normalize_masked"], result, vmap_method="broadcast_all")
    return call(x, keep, **attributes)


def _forward(op, x, keep, axis, temperature, use_ffi, threads, call):
    generic = functools.partial(_generic_forward, op, axis=axis, temperature=temperature, call=call)
    if not use_ffi:
        return generic(x, keep)
    import jax

    on_cpu = functools.partial(
        _ffi_forward, op, axis=axis, temperature=temperature, threads=threads
    )
    return jax.lax.platform_dependent(x, keep, cpu=on_cpu, default=generic)


# ---------------------------------------------------------------- backward


def _edges(x, keep, axis, temperature, grad):
    """``grad`` with the core's rules at the edges: 0 on rows holding a ``+inf`` and at
    ``T = 0`` or ``inf``, NaN on rows holding NaN."""
    import jax.numpy as jnp

    kept = x if keep is None else jnp.where(keep, x, -jnp.inf)
    top = jnp.max(kept, axis=axis, keepdims=True)
    zero = jnp.zeros((), grad.dtype)
    if temperature == 0.0 or math.isinf(temperature):
        nan = jnp.asarray(jnp.nan, grad.dtype)
        return jnp.broadcast_to(jnp.where(jnp.isnan(top), nan, zero), grad.shape)
    return jnp.where(top == jnp.inf, zero, grad)


def _work_dtype(x):
    import jax.numpy as jnp

    return jnp.float32 if x.dtype in (jnp.float16, jnp.bfloat16) else x.dtype


def _normalize_primal(x, keep, op, axis, temperature, use_ffi, threads, call):
    return _forward(op, x, keep, axis, temperature, use_ffi, threads, call)


def _normalize_fwd(x, keep, op, axis, temperature, use_ffi, threads, call):
    y = _forward(op, x, keep, axis, temperature, use_ffi, threads, call)
    return y, (x, keep, y)


def _normalize_bwd(op, axis, temperature, use_ffi, threads, call, residuals, g):
    import jax.numpy as jnp

    x, keep, y = residuals
    work = _work_dtype(x)
    g, y = g.astype(work), y.astype(work)
    if op == SOFTMAX:
        total = jnp.sum(g * y, axis=axis, keepdims=True)
        grad = y * (g - total)
    else:
        # log_softmax_vjp's rule (and PyTorch's, jax.nn's): an entry whose output is
        # -inf passes its own g through. (Excluding those entries from the sum would
        # put a comparison inside the reduction, which XLA's CPU fusions run 3x slower.)
        total = jnp.sum(g, axis=axis, keepdims=True)
        grad = g - jnp.exp(y) * total
    if temperature != 1.0 and 0.0 < temperature < math.inf:
        grad = grad / jnp.asarray(temperature, work)
    grad = _edges(x, keep, axis, temperature, grad)
    return grad.astype(x.dtype), None


def _logsumexp_primal(x, keep, axis, temperature, use_ffi, threads, call):
    return _forward(LOGSUMEXP, x, keep, axis, temperature, use_ffi, threads, call)


def _logsumexp_fwd(x, keep, axis, temperature, use_ffi, threads, call):
    y = _forward(LOGSUMEXP, x, keep, axis, temperature, use_ffi, threads, call)
    return y, (x, keep)


def _logsumexp_bwd(axis, temperature, use_ffi, threads, call, residuals, g):
    x, keep = residuals
    work = _work_dtype(x)
    # The softmax, by the forward pass (accurate at every scale), times g / T.
    probs = _forward(SOFTMAX, x, keep, axis, temperature, use_ffi, threads, call).astype(work)
    grad = probs * g.astype(work)
    if temperature != 1.0 and 0.0 < temperature < math.inf:
        grad = grad / temperature
    grad = _edges(x, keep, axis, temperature, grad)
    return grad.astype(x.dtype), None


@functools.cache
def _differentiable():
    """The two functions with their closed-form gradients (JAX is imported here, on the
    first JAX call, not with softmaxkit)."""
    import jax

    normalize = jax.custom_vjp(_normalize_primal, nondiff_argnums=(2, 3, 4, 5, 6, 7))
    normalize.defvjp(_normalize_fwd, _normalize_bwd)
    logsumexp = jax.custom_vjp(_logsumexp_primal, nondiff_argnums=(2, 3, 4, 5, 6))
    logsumexp.defvjp(_logsumexp_fwd, _logsumexp_bwd)
    return normalize, logsumexp
