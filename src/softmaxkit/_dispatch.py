"""The dispatch table: for each operation, its implementations in the order they are tried.

A public function of the core is one line into :func:`normalize` or :func:`reduce`:

1. the extension's fast entry runs the common call (a float ndarray, the last axis, a
   scalar temperature, no mask) without a Python frame, or declines it; a plain CPU
   tensor then gets the torch entry's fast entry (``softmaxkit.torch._bridge``);
2. :func:`~._lib._call.describe` validates every argument (every error is raised
   there, before any implementation is chosen);
3. the implementations of :data:`TABLE` are asked in order whether they take the call
   (each answers with a plan, or None), and the first that does runs it.

The compiled kernel takes NumPy input it can read, and CPU tensors of PyTorch (the
``torch`` entry, zero-copy, with a fast entry of its own for the common call), and JAX
arrays on the CPU as an XLA foreign function (the ``jax`` entry, ``_jax.py``); Dask
arrays are reduced lazily over the mergeable state; the generic array-API code takes
everything else and is the reference. The fast paths of other libraries join the
table as entries of their own. :data:`counts` says how often each ran (the kernel's
runs are counted by the extension, the others here).
"""

from __future__ import annotations

import collections.abc
import sys

import numpy as np

from . import _dask, _jax, _kernels
from ._kernels import LOG_SOFTMAX, LOGSUMEXP, SOFTMAX
from ._lib import _generic
from ._lib._call import describe
from ._lib._library import Library
from ._lib._validation import check_out_for

__all__ = ["TABLE", "counts", "normalize", "reduce", "deliver"]


class Options:
    """The options of one call that are not part of its description: ``out``, and
    logsumexp's ``b`` (a Python number; an array ``b`` is ``call.weights``),
    ``keepdims`` and ``return_sign``."""

    __slots__ = ("out", "b", "keepdims", "return_sign")

    def __init__(self, out=None, b=None, keepdims=False, return_sign=False):
        self.out, self.b, self.keepdims, self.return_sign = out, b, keepdims, return_sign


class Implementation:
    """One way to run an operation: ``plan(op, call, options)`` returns what ``run``
    needs (truthy) when it takes the call, else None; ``run(op, plan, call, options)``
    returns the result. ``writes_out``: ``run`` writes ``options.out`` itself."""

    __slots__ = ("name", "plan", "run", "writes_out")

    def __init__(self, name, plan, run, *, writes_out=False):
        self.name, self.plan, self.run, self.writes_out = name, plan, run, writes_out

    def __repr__(self):
        return f"Implementation({self.name!r})"


def _kernel_plan(op, call, options):
    if op == LOGSUMEXP and (options.b is not None or options.return_sign):
        return None
    return _kernels.plan(call)


def _kernel_run(op, plan, call, options):
    if op == LOGSUMEXP:
        return deliver(_kernels.reduce(plan, options.keepdims), options.out)
    return _kernels.normalize(op, plan, options.out)


def _dask_plan(op, call, options):
    if op == LOGSUMEXP and options.b is not None:
        return None
    return call if _dask.handles(call) else None


def _dask_run(op, call, _call, options):
    if op == LOGSUMEXP:
        return _dask.logsumexp(call, keepdims=options.keepdims, return_sign=options.return_sign)
    return _dask.log_softmax(call) if op == LOG_SOFTMAX else _dask.softmax(call)


_BRIDGE = []


def _torch_bridge():
    if not _BRIDGE:
        from .torch import _bridge  # torch is imported already: the input is a tensor

        _BRIDGE.append(_bridge)
    return _BRIDGE[0]


def _torch_plan(op, call, options):
    if call.library is not Library.TORCH:
        return None
    return _torch_bridge().plan(op, call, options)


def _torch_run(op, plan, call, options):
    return _torch_bridge().run(op, plan, call, options)


def _generic_run(op, call, _call, options):
    if op == LOGSUMEXP:
        result, sign = _generic.logsumexp(
            call, b=options.b, keepdims=options.keepdims, return_sign=options.return_sign
        )
        return (result, sign) if options.return_sign else result
    return _generic.normalize(call, log=op == LOG_SOFTMAX)


KERNEL = Implementation("kernel", _kernel_plan, _kernel_run, writes_out=True)
DASK = Implementation("dask", _dask_plan, _dask_run)
#: CPU tensors in the compiled kernel, zero-copy, with autograd (softmaxkit.torch._bridge).
TORCH = Implementation("torch", _torch_plan, _torch_run, writes_out=True)
#: JAX arrays: the kernel as an XLA foreign function on the CPU, closed-form gradients.
JAX = Implementation("jax", _jax.plan, _jax.run)
GENERIC = Implementation("generic", lambda op, call, options: call, _generic_run)

#: For each operation, the implementations in the order they are asked.
TABLE = {
    SOFTMAX: [KERNEL, TORCH, JAX, DASK, GENERIC],
    LOG_SOFTMAX: [KERNEL, TORCH, JAX, DASK, GENERIC],
    LOGSUMEXP: [KERNEL, TORCH, JAX, DASK, GENERIC],
}


class _Counts(collections.abc.MutableMapping):
    """How often each implementation ran: "kernel" (every job of the extension,
    counted by it, the losses' and the sampler's included) and the others by name."""

    def __init__(self):
        self._counts = {"generic": 0, "torch": 0, "jax": 0, "dask": 0}

    def __getitem__(self, key):
        if key == "kernel":
            return _kernels.kernel_runs()
        return self._counts.get(key, 0)

    def __setitem__(self, key, value):
        if key == "kernel":
            raise KeyError("the kernel runs are counted by the extension")
        self._counts[key] = value

    def __delitem__(self, key):
        del self._counts[key]

    def __iter__(self):
        yield "kernel"
        yield from self._counts

    def __len__(self):
        return len(self._counts) + 1


#: How often each implementation ran, by name ("kernel", "dask", "torch", "generic";
#: the torch entry's calls are counted in "kernel" too, by the extension, and the
#: fast entry of tensors counts in "kernel" only).
counts = _Counts()


def deliver(result, out):
    """``result``, copied into ``out`` when one is given (the ``out=`` contract of the
    implementations that do not write it themselves: NumPy results only)."""
    if out is None:
        return result
    check_out_for(out, result)
    np.copyto(out, result)
    return out


def _run(op, call, options):
    for implementation in TABLE[op]:
        plan = implementation.plan(op, call, options)
        if plan is None:
            continue
        if implementation.name != "kernel":
            counts[implementation.name] += 1
        result = implementation.run(op, plan, call, options)
        if implementation.writes_out or options.out is None:
            return result
        if isinstance(result, tuple):  # logsumexp's (magnitude, sign)
            return (deliver(result[0], options.out),) + result[1:]
        return deliver(result, options.out)
    raise AssertionError("the generic implementation takes every call")


_TENSOR = [None]


def _is_tensor(x):
    """Whether ``x`` is exactly a ``torch.Tensor`` (without importing torch)."""
    tensor = _TENSOR[0]
    if tensor is None:
        torch = sys.modules.get("torch")
        if torch is None or not hasattr(torch, "Tensor"):
            return False
        tensor = _TENSOR[0] = torch.Tensor
    return type(x) is tensor


def normalize(op, x, axis, temperature, where, dtype, out):
    """softmax (op 0) or log_softmax (op 1): the fast entries, then the table."""
    result = _kernels.fast_normalize(op, x, axis, temperature, where, dtype, out)
    if result is not NotImplemented:
        return result
    if _is_tensor(x):
        bridge = _BRIDGE[0] if _BRIDGE else _torch_bridge()
        result = bridge.fast_normalize(op, x, axis, temperature, where, dtype, out)
        if result is not NotImplemented:
            return result
    call = describe(x, axis, temperature=temperature, where=where, dtype=dtype)
    return _run(op, call, Options(out=out))


def reduce(x, axis, b, keepdims, return_sign, temperature, where, dtype, out):
    """logsumexp: the fast entry (without ``b`` and ``return_sign``), then the table."""
    if b is None and not return_sign:
        result = _kernels.fast_reduce(x, axis, temperature, where, dtype, keepdims, out)
        if result is not NotImplemented:
            return result
        if _is_tensor(x):
            bridge = _BRIDGE[0] if _BRIDGE else _torch_bridge()
            result = bridge.fast_reduce(x, axis, temperature, where, dtype, keepdims, out)
            if result is not NotImplemented:
                return result
    weight_array = b is not None and not isinstance(b, (int, float))
    call = describe(
        x,
        axis,
        temperature=temperature,
        where=where,
        dtype=dtype,
        extra=(b,) if weight_array else (),
        weights=b if weight_array else None,
    )
    options = Options(out, None if b is None or weight_array else float(b), keepdims, return_sign)
    if weight_array:
        options.b = b
    return _run(LOGSUMEXP, call, options)
