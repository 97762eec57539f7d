"""Finding the array namespace of the inputs, and converting back to it.

Every public function calls :func:`array_namespace` on its inputs. NumPy arrays,
Python lists and scalars get NumPy's namespace; PyTorch, JAX, CuPy, Dask and
``array_api_strict`` arrays get the namespace ``array-api-compat`` gives them;
TensorFlow tensors, which have no array-API namespace, get the thin adapter of
``_tensorflow.py``. No optional library is imported here unless one of its
arrays has already arrived (the check is on the type's module name).
"""

from __future__ import annotations

import sys

import array_api_compat
import numpy as np

__all__ = [
    "array_namespace",
    "as_array",
    "device_of",
    "is_lazy",
    "is_numpy_namespace",
    "is_tensorflow",
]


def is_tensorflow(x) -> bool:
    """Whether ``x`` is a TensorFlow tensor or variable (without importing TensorFlow)."""
    if "tensorflow" not in sys.modules:
        return False
    module = type(x).__module__
    return module.startswith(("tensorflow", "tf_keras", "keras"))


def _is_array_like_scalar(x) -> bool:
    return isinstance(x, (bool, int, float, complex, list, tuple, np.generic))


def array_namespace(*arrays):
    """The namespace ``xp`` that computes on ``arrays`` (``None`` entries are ignored).

    Python scalars and sequences count as NumPy input; they never decide the namespace
    when an array of another library is present.
    """
    present = [a for a in arrays if a is not None and not _is_array_like_scalar(a)]
    if any(is_tensorflow(a) for a in present):
        from ._tensorflow import tensorflow_namespace

        return tensorflow_namespace()
    if not present:
        return array_api_compat.array_namespace(np.empty(0))
    try:
        return array_api_compat.array_namespace(*present)
    except TypeError as error:
        names = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in present})
        raise TypeError(
            f"inputs must be arrays of one array library (or Python numbers/lists), "
            f"got {', '.join(names)}"
        ) from error


def as_array(xp, value, *, like=None, dtype=None):
    """``value`` as an array of namespace ``xp``, on the device of ``like``."""
    if is_numpy_namespace(xp):
        if isinstance(value, np.ndarray) and (dtype is None or value.dtype == dtype):
            return value
        return np.asarray(value, dtype=dtype)
    if dtype is None and array_api_compat.is_array_api_obj(value) and not is_tensorflow(value):
        return value
    if like is not None:
        return xp.asarray(value, dtype=dtype, device=device_of(xp, like))
    return xp.asarray(value, dtype=dtype)


def device_of(xp, x):
    """The device of ``x`` (the adapter's own for TensorFlow)."""
    if getattr(xp, "is_tensorflow_adapter", False):
        return xp.device_of(x)
    return array_api_compat.device(x)


def is_numpy_namespace(xp) -> bool:
    return array_api_compat.is_numpy_namespace(xp)


def is_lazy(x) -> bool:
    """Whether the values of ``x`` are unknown now (Dask, JAX under ``jit``)."""
    if is_tensorflow(x):
        return not hasattr(x, "numpy")
    if array_api_compat.is_dask_array(x):
        return True
    if array_api_compat.is_jax_array(x):
        import jax

        return isinstance(x, jax.core.Tracer)
    return array_api_compat.is_lazy_array(x)
