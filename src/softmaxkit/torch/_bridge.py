"""The compiled kernel on PyTorch CPU tensors, zero-copy (internal).

A tensor's memory is handed to the kernel as a NumPy view of it (``Tensor.numpy()``
shares the memory; bfloat16 is viewed as int16, then as ``ml_dtypes.bfloat16``, which
the kernel reads as raw bfloat16), with its strides, whatever they are; the result is
written into a fresh tensor of the input's dtype (or into ``out=``) through the same
kind of view. Nothing is copied or widened in memory.

Two ways in, as for NumPy: :func:`fast_normalize` / :func:`fast_reduce` take the
common call (a plain CPU tensor, one int axis, a Python-number temperature, no mask,
no gradient) before any validation; :func:`plan` / :func:`run` are the ``TORCH``
entry of the dispatch table (``softmaxkit._dispatch``) for a validated call: a mask,
a temperature per row, ``out=``, and tensors that need a gradient (through
``._autograd``).

The kernel uses ``torch.get_num_threads()`` threads, unless the user chose
softmaxkit's own setting (``softmaxkit.set_num_threads`` or ``SOFTMAXKIT_NUM_THREADS``),
and from the first tensor on it runs them on torch's own OpenMP team where torch has
one (:func:`share_torch_openmp`): torch's threads keep polling for a while after each
torch operation, and on a machine with as many cores as threads a second set of
threads would wait for the cores they hold.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.autograd import forward_ad as _forward_ad

from .. import _kernels, _threads
from .._kernels import LOGSUMEXP
from .._lib._validation import check_tensor_out

try:
    import ml_dtypes
except ImportError:  # bfloat16 tensors then take the generic path
    ml_dtypes = None

__all__ = ["fast_normalize", "fast_reduce", "plan", "run", "array_of", "threads"]

_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2}
if ml_dtypes is not None:
    _CODES[torch.bfloat16] = 3

_Tensor = torch.Tensor
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor

#: Test hook: called with every NumPy view handed to the kernel as its input.
input_hook = None

# Below this many entries the kernel runs on the calling thread alone (its
# SMK_MIN_PER_THREAD is 6144 entries a thread).
_SMALL = 12288


def share_torch_openmp():
    """Run the kernel's parallel calls on torch's OpenMP team; whether they now do.

    The runtime is the one the process has loaded (GNU ``libgomp``, as in the PyTorch
    wheels, or LLVM's ``libomp``), found in ``/proc/self/maps``. Nothing changes where
    torch has no OpenMP, outside Linux, or when ``SOFTMAXKIT_SHARE_OPENMP=0``: the
    kernel's own pool of workers runs the calls. Once shared, every parallel call of
    the process (NumPy arrays too) runs on that team.
    """
    kernel = _kernels._kernel
    if kernel is None or not torch._C.has_openmp:
        return False
    if os.environ.get("SOFTMAXKIT_SHARE_OPENMP", "1") == "0":
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            fields = [line.split(None, 5) for line in maps]
    except OSError:
        return False
    paths = sorted({f[5].strip() for f in fields if len(f) == 6})
    runtimes = ("libgomp", "libomp", "libiomp5")
    return any(
        os.path.basename(path).startswith(runtimes) and kernel.share_openmp(path)
        for path in paths
    )


share_torch_openmp()


def threads():
    """The number of threads for one call on tensors."""
    if _threads._explicit[0]:
        return _threads._setting[0]
    return max(1, min(torch.get_num_threads(), _threads.MAX_THREADS))


def array_of(t):
    """A NumPy view of the CPU tensor ``t`` (its memory, its strides; no copy)."""
    if t.requires_grad:
        t = t.detach()
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _takes_tensor(x):
    """Whether the kernel may read ``x``: a plain strided CPU tensor of a float dtype
    it knows, not wrapped by torch.func, with at least one entry."""
    return (
        x.dtype in _CODES
        and x.is_cpu
        and x.layout is torch.strided
        and not _is_wrapped(x)
        and 0 < x.ndim <= _kernels._kernel.MAX_NDIM
        and x.numel() > 0
    )


def _readable(source):
    """``source`` as the kernel reads it: its typed loads need an aligned array (a
    tensor made by ``torch.frombuffer`` at an odd offset is copied first)."""
    if not source.flags.aligned:
        source = source.copy()
    if input_hook is not None:
        input_hook(source)
    return source


def _moved(array, axis, ndim):
    if array is None or axis == ndim - 1:
        return array
    return np.moveaxis(array, axis, -1)


def normalize_tensor(op, x, axis, t_value, t_row=None, mask=None, out=None):
    """softmax (op 0) or log_softmax (op 1) of the tensor ``x`` along ``axis`` by the
    kernel: ``t_row`` a float64 ndarray (length 1 along ``axis``) or None, ``mask`` a
    bool ndarray of ``x``'s shape or None; into ``out`` (a tensor) if given."""
    code = _CODES[x.dtype]
    source = _readable(array_of(x))
    if out is None and mask is None and t_row is None and code != 3 and x.numel() < _SMALL:
        # One thread either way: the extension's own entry allocates and runs at less cost.
        result = _kernels.fast_normalize(op, source, axis, t_value, None, None, None)
        if result is not NotImplemented:
            return torch.from_numpy(result)
    target = torch.empty_like(x) if out is None else out
    target_array = array_of(target)
    if not target_array.flags.aligned:  # see _readable: computed aside, then copied
        target.copy_(normalize_tensor(op, x, axis, t_value, t_row, mask, None))
        return target
    ndim = x.ndim
    arguments = (_moved(mask, axis, ndim), _moved(t_row, axis, ndim), t_value, None, threads())
    moved_source = _moved(source, axis, ndim)
    if not _kernels._kernel.run(
        op, moved_source, code, _moved(target_array, axis, ndim), code, *arguments
    ):
        # out overlaps x without being x: computed aside, then copied.
        aside = torch.empty_like(x)
        _kernels._kernel.run(
            op, moved_source, code, _moved(array_of(aside), axis, ndim), code, *arguments
        )
        target.copy_(aside)
    return target


def reduce_tensor(x, axis, t_value, t_row=None, mask=None, keepdims=False):
    """logsumexp of the tensor ``x`` along ``axis`` by the kernel."""
    code = _CODES[x.dtype]
    source = _readable(array_of(x))
    if mask is None and t_row is None and code != 3 and x.numel() < _SMALL:
        result = _kernels.fast_reduce(source, axis, t_value, None, None, keepdims, None)
        if result is not NotImplemented:
            return torch.from_numpy(np.asarray(result))
    ndim = x.ndim
    kept = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
    result = torch.empty(kept, dtype=x.dtype)
    _kernels._kernel.run(
        LOGSUMEXP,
        _moved(source, axis, ndim),
        code,
        None,
        code,
        _moved(mask, axis, ndim),
        _moved(t_row, axis, ndim),
        t_value,
        _moved(array_of(result), axis, ndim),
        threads(),
    )
    return result if keepdims else result.squeeze(axis)


def _common(x, axis, temperature, where, dtype):
    """The normalized axis of the common call, or None."""
    if (
        where is not None
        or dtype is not None
        or type(axis) is not int
        or type(temperature) not in (float, int)
        or not temperature >= 0
        or _forced[0]
        or _forward_ad._current_level >= 0
        or not _takes_tensor(x)
    ):
        return None
    ndim = x.ndim
    if not -ndim <= axis < ndim:
        return None
    return axis + ndim if axis < 0 else axis


_forced = _kernels._forced_generic


def _grad(x):
    return x.requires_grad and torch.is_grad_enabled()


def fast_normalize(op, x, axis, temperature, where, dtype, out):
    """The common call on a plain tensor, before any validation; else NotImplemented."""
    axis = _common(x, axis, temperature, where, dtype)
    if axis is None:
        return NotImplemented
    if _grad(x):
        if out is not None:
            return NotImplemented
        from . import _autograd

        return _autograd.apply(op, x, axis, float(temperature), None, None, False)
    if out is not None and not (
        type(out) is _Tensor
        and out.shape == x.shape
        and out.dtype is x.dtype
        and out.is_cpu
        and out.layout is torch.strided
        and not out.requires_grad
        and not _is_wrapped(out)
    ):
        return NotImplemented
    return normalize_tensor(op, x, axis, float(temperature), out=out)


def fast_reduce(x, axis, temperature, where, dtype, keepdims, out):
    """logsumexp's common call on a plain tensor (no ``out``), else NotImplemented."""
    if out is not None:
        return NotImplemented
    axis = _common(x, axis, temperature, where, dtype)
    if axis is None:
        return NotImplemented
    if _grad(x):
        from . import _autograd

        return _autograd.apply(LOGSUMEXP, x, axis, float(temperature), None, None, keepdims)
    return reduce_tensor(x, axis, float(temperature), keepdims=bool(keepdims))


class Plan:
    """How the kernel runs one validated call on a tensor (see :func:`plan`)."""

    __slots__ = ("x", "axis", "t_value", "t_tensor", "keep", "flatten", "grad")

    def __init__(self, x, axis, t_value, t_tensor, keep, flatten, grad):
        self.x, self.axis, self.t_value, self.t_tensor = x, axis, t_value, t_tensor
        self.keep, self.flatten, self.grad = keep, flatten, grad


def _row_temperature(call, x, axis):
    """The temperatures per row as a float64 tensor of x's shape with 1 along ``axis``
    (from the argument itself: the working dtype of 16-bit input is float32)."""
    given = call.temperature_given
    if isinstance(given, torch.Tensor):
        row = given.detach().to(device="cpu", dtype=torch.float64)
    else:
        with np.errstate(over="ignore", under="ignore"):
            row = torch.from_numpy(np.array(given, dtype=np.float64))
    kept = tuple(x.shape[:axis]) + (1,) + tuple(x.shape[axis + 1 :])
    return row.reshape(tuple(call.temperature.shape)).expand(kept)


def plan(op, call, options):
    """The TORCH entry's plan for a validated call, or None (the generic path takes it).

    Takes CPU tensors of float32, float64, float16 and bfloat16 (the result in that
    dtype), one axis (or every axis of a contiguous tensor, without a gradient, a mask
    or a temperature per row), a scalar or per-row temperature, ``where``, ``out=`` (a
    tensor), and, through ``torch.autograd``, tensors that need a gradient (one axis; not
    a temperature that needs one, nor ``out=``), torch.func's included."""
    x = call.source
    if _kernels._kernel is None or _kernels._forced_generic[0] or not isinstance(x, _Tensor):
        return None
    if op == LOGSUMEXP and (options.b is not None or options.return_sign):
        return None
    wrapped = _is_wrapped(x)
    if wrapped:  # torch.func: the autograd.Function unwraps it
        if x.dtype not in _CODES or x.layout is not torch.strided or x.ndim == 0:
            return None
        if x.numel() == 0 or x.ndim >= _kernels._kernel.MAX_NDIM:
            return None
    elif type(x) not in (_Tensor, torch.nn.Parameter) or not _takes_tensor(x):
        return None
    if call.plan.result != x.dtype:
        return None
    # Inside a level of forward AD, x may be a dual tensor: the Function carries it.
    grad = (
        wrapped or (x.requires_grad and torch.is_grad_enabled()) or _forward_ad._current_level >= 0
    )
    scalar_temperature = isinstance(call.temperature, float)
    keep = call.keep
    if keep is not None and (
        not isinstance(keep, _Tensor) or not keep.is_cpu or (_is_wrapped(keep) and not wrapped)
    ):
        return None
    if not scalar_temperature:
        given = call.temperature_given
        if isinstance(given, _Tensor) and (given.requires_grad or _is_wrapped(given)):
            return None  # a temperature that needs a gradient: the generic path
    out = options.out
    if out is not None:
        if grad:
            return None  # the generic path refuses it, with its message
        if op != LOGSUMEXP:
            check_tensor_out(out, x.shape, x.dtype)
    t_row = None if scalar_temperature else _row_temperature(call, x, call.axes[-1])
    if len(call.axes) != 1:
        if (
            len(call.axes) != x.ndim
            or grad
            or keep is not None
            or not scalar_temperature
            or not x.is_contiguous()
            or (out is not None and op != LOGSUMEXP and not out.is_contiguous())
        ):
            return None
        return Plan(x, x.ndim - 1, call.temperature, None, None, True, False)
    axis = call.axes[0]
    t_value = call.temperature if scalar_temperature else 1.0
    return Plan(x, axis, t_value, t_row, keep, False, grad)


def run(op, plan, call, options):
    """Run a :func:`plan` (writing ``options.out`` where given)."""
    x, out = plan.x, options.out
    if plan.flatten:
        flat = x.reshape(-1)
        if op == LOGSUMEXP:
            result = reduce_tensor(flat, 0, plan.t_value)
            result = result.reshape((1,) * x.ndim) if options.keepdims else result
            return _deliver(result, out)
        target = None if out is None else out.view(-1)
        result = normalize_tensor(op, flat, 0, plan.t_value, out=target)
        return out if out is not None else result.view(x.shape)
    if plan.grad:
        from . import _autograd

        return _autograd.apply(
            op, x, plan.axis, plan.t_value, plan.t_tensor, plan.keep, options.keepdims
        )
    t_row = None if plan.t_tensor is None else plan.t_tensor.numpy()
    mask = None if plan.keep is None else plan.keep.numpy()
    if op == LOGSUMEXP:
        result = reduce_tensor(x, plan.axis, plan.t_value, t_row, mask, options.keepdims)
        return _deliver(result, out)
    return normalize_tensor(op, x, plan.axis, plan.t_value, t_row, mask, out)


def _deliver(result, out):
    if out is None:
        return result
    check_tensor_out(out, result.shape, result.dtype)
    out.copy_(result)
    return out
