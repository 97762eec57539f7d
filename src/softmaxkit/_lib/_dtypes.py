"""Dtype rules: which dtypes are accepted, and in which dtype the work is done.

- float16, bfloat16 (NumPy through ``ml_dtypes``, PyTorch, JAX) and the 8-bit floats
  are computed in float32 and returned in their own dtype.
- float32 is computed in float64 where the library and device have float64 (JAX
  without ``jax_enable_x64`` and some GPUs have not); the compensated algorithm
  keeps float32 within its bounds either way.
- integers and bools become the library's default floating dtype *before* any
  arithmetic, so that ``x - max(x)`` cannot wrap around.
- complex, object and string dtypes are a ``TypeError`` naming the dtype.
"""

from __future__ import annotations

import numpy as np

from ._library import Library, library_of_namespace
from ._namespace import device_of

__all__ = ["DtypePlan", "plan_dtypes"]


class DtypePlan:
    """The dtype a computation runs in, and the dtype its result is returned in."""

    __slots__ = ("work", "result")

    def __init__(self, work, result):
        self.work = work
        self.result = result


_NAMES: dict = {}


def _name(dtype) -> str:
    # NumPy's dtype.name is a Python property, slow per call: NumPy dtypes are cached.
    # Only they are: other libraries' dtypes may hash alike and compare with a warning.
    numpy_dtype = isinstance(dtype, np.dtype)
    if numpy_dtype:
        name = _NAMES.get(dtype)
        if name is not None:
            return name
    name = getattr(dtype, "name", None)
    if not isinstance(name, str):
        name = str(dtype).rsplit(".", 1)[-1]
    if numpy_dtype:
        _NAMES[dtype] = name
    return name


def _kind(xp, dtype) -> str:
    """One of 'real', 'half', 'integral', 'bool', 'complex', 'other'."""
    name = _name(dtype)
    if name == "bool":
        return "bool"
    if name in ("float16", "bfloat16", "half") or name.startswith("float8"):
        return "half"
    if library_of_namespace(xp) in (Library.NUMPY, Library.DASK):
        np_dtype = np.dtype(dtype)
        if np_dtype.kind == "f":
            return "real"
        if np_dtype.kind in "iu":
            return "integral"
        if np_dtype.kind == "c":
            return "complex"
        return "other"
    for kind, label in (
        ("real floating", "real"),
        ("integral", "integral"),
        ("complex floating", "complex"),
    ):
        try:
            if xp.isdtype(dtype, kind):
                return label
        except (TypeError, ValueError):
            continue
    return "other"


def _has_float64(xp, x) -> bool:
    """Whether float64 is available for arrays of ``x``'s library on ``x``'s device."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return True
    try:
        return "float64" in info().dtypes(device=device_of(xp, x), kind="real floating")
    except Exception:  # libraries whose info() does not take a device
        try:
            return "float64" in info().dtypes(kind="real floating")
        except Exception:
            return True


def _default_float(xp, x):
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes(device=device_of(xp, x))["real floating"]
        except Exception:
            return info().default_dtypes()["real floating"]
    return xp.float64


def _resolve_user_dtype(xp, dtype):
    """``dtype=`` as a dtype object of ``xp`` (NumPy also takes strings and types)."""
    if library_of_namespace(xp) in (Library.NUMPY, Library.DASK):
        try:
            return np.dtype(dtype)
        except TypeError as error:
            raise TypeError(f"dtype must be a floating dtype, got {dtype!r}") from error
    if isinstance(dtype, str):
        resolved = getattr(xp, dtype, None)
        if resolved is None:
            raise TypeError(f"dtype must be a floating dtype, got {dtype!r}")
        return resolved
    return dtype


def plan_dtypes(xp, x, dtype=None) -> DtypePlan:
    """Decide the working and result dtypes for ``x`` (and an optional ``dtype=``).

    Raises
    ------
    TypeError
        For complex, object, string and other non-real dtypes, in ``x`` or ``dtype``.
    """
    if dtype is not None:
        result = _resolve_user_dtype(xp, dtype)
        kind = _kind(xp, result)
        if kind not in ("real", "half"):
            raise TypeError(f"dtype must be a real floating dtype, got {_name(result)}")
        source_kind = _kind(xp, x.dtype)
        if source_kind in ("complex", "other"):
            raise TypeError(
                f"x must have a real numeric dtype, got {_name(x.dtype)} "
                "(complex, object and string arrays have no softmax)"
            )
    else:
        kind = _kind(xp, x.dtype)
        if kind in ("complex", "other"):
            raise TypeError(
                f"x must have a real numeric dtype, got {_name(x.dtype)} "
                "(complex, object and string arrays have no softmax)"
            )
        if kind in ("integral", "bool"):
            result = _default_float(xp, x)
            kind = _kind(xp, result)
        else:
            result = x.dtype
    if kind == "half":
        return DtypePlan(work=xp.float32, result=result)
    if _name(result) == "float32" and _has_float64(xp, x):
        return DtypePlan(work=xp.float64, result=result)
    return DtypePlan(work=result, result=result)
