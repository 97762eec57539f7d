"""Finding the array namespace of the inputs, and converting back to it.

Every public function calls :func:`array_namespace` on its inputs. NumPy arrays,
Python lists and scalars get NumPy's namespace; PyTorch, JAX, CuPy, Dask and
``array_api_strict`` arrays get the namespace ``array-api-compat`` gives them;
TensorFlow tensors, which have no array-API namespace, get the thin adapter of
``_tensorflow.py``. No optional library is imported here unless one of its
arrays has already arrived (the check is on the type's module name).

Plain NumPy arrays next to arrays of a library that takes NumPy operands itself
(PyTorch, JAX, Dask, TensorFlow) count as array-likes of that library, as
``jax.nn.softmax(x, where=numpy_mask)`` does: :func:`as_array` converts them, on
the device of the other input. CuPy and ``array_api_strict`` refuse such mixes
themselves, and so does softmaxkit.

Subclasses of ``ndarray`` are converted to plain ndarrays (``np.matrix`` has
other ``max`` and ``sum`` signatures; no subclass method is trusted), except
masked arrays, which are refused: converting would silently drop the mask.
"""

from __future__ import annotations

import functools
import sys

import array_api_compat
import numpy as np

from ._library import library_of_namespace

__all__ = [
    "array_namespace",
    "as_array",
    "device_of",
    "is_lazy",
    "is_numpy_namespace",
    "is_tensorflow",
    "refuse_masked",
    "require_library",
    "run_checked",
]


def is_tensorflow(x) -> bool:
    """Whether ``x`` is a TensorFlow tensor or variable (without importing TensorFlow)."""
    if "tensorflow" not in sys.modules:
        return False
    module = type(x).__module__
    return module.startswith(("tensorflow", "tf_keras", "keras"))


def _is_array_like_scalar(x) -> bool:
    return isinstance(x, (bool, int, float, complex, list, tuple, np.generic))


def _takes_numpy_operands(x) -> bool:
    """Whether ``x``'s library converts NumPy operands itself (see the module docstring)."""
    return (
        array_api_compat.is_torch_array(x)
        or array_api_compat.is_jax_array(x)
        or array_api_compat.is_dask_array(x)
    )


def refuse_masked(*arrays):
    """Raise a TypeError if any of ``arrays`` is a NumPy masked array.

    :func:`array_namespace` calls it on every input; the compiled path, which takes
    plain ndarray masks and temperatures before any namespace is found, calls it too.
    """
    for a in arrays:
        if isinstance(a, np.ma.MaskedArray):
            raise TypeError(
                "masked arrays (numpy.ma) are not supported: their mask would be ignored. "
                "Pass np.ma.getdata(x) and, where the function takes it, "
                "where=~np.ma.getmaskarray(x) to leave the masked entries out"
            )


def require_library(xp, supported, what):
    """The :class:`~._library.Library` of namespace ``xp`` if it is one of ``supported``.

    Parameters
    ----------
    xp : namespace
        The namespace of the inputs, from :func:`array_namespace`.
    supported : tuple of Library
        The libraries that ``what`` runs on.
    what : str
        The feature, for the message (``"sampling"``).

    Raises
    ------
    TypeError
        ``{what} supports NumPy, PyTorch and JAX arrays, got an array of {module}``.
    """
    library = library_of_namespace(xp)
    if library not in supported:
        names = [lib.display_name for lib in supported]
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        name = getattr(xp, "__name__", type(xp).__name__)
        raise TypeError(f"{what} supports {listed} arrays, got an array of {name}")
    return library


@functools.cache
def _numpy_namespace():
    return array_api_compat.array_namespace(np.empty(0))


def array_namespace(*arrays):
    """The namespace ``xp`` that computes on ``arrays`` (``None`` entries are ignored).

    Python scalars and sequences count as NumPy input; they never decide the namespace
    when an array of another library is present.
    """
    present = [a for a in arrays if a is not None and not _is_array_like_scalar(a)]
    if all(type(a) is np.ndarray for a in present):
        # Plain ndarrays (or none): NumPy, without array_api_compat's search (a tenth of
        # the Python time of a small cross_entropy call).
        return _numpy_namespace()
    refuse_masked(*present)
    if any(is_tensorflow(a) for a in present):
        from ._tensorflow import tensorflow_namespace

        return tensorflow_namespace()
    if any(_takes_numpy_operands(a) for a in present):
        present = [a for a in present if not isinstance(a, np.ndarray)]
    try:
        return array_api_compat.array_namespace(*present)
    except TypeError as error:
        names = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in present})
        raise TypeError(
            f"inputs must be arrays of one array library (or Python numbers/lists), "
            f"got {', '.join(names)}"
        ) from error


def as_array(xp, value, *, like=None, dtype=None):
    """``value`` as an array of namespace ``xp``, on the device of ``like``.

    A NumPy array given with arrays of another library (see :func:`array_namespace`)
    is converted to that library; an ndarray subclass becomes a plain ndarray.
    """
    if is_numpy_namespace(xp):
        if type(value) is np.ndarray and (dtype is None or value.dtype == dtype):
            return value
        return np.asarray(value, dtype=dtype)
    if (
        dtype is None
        and array_api_compat.is_array_api_obj(value)
        and not isinstance(value, np.ndarray)
        and not is_tensorflow(value)
    ):
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


def run_checked(xp, function, *arrays):
    """``function(*arrays)``, compiled with ``jax.jit`` where JAX's ``debug_nans`` or
    ``debug_infs`` check is on and the arrays are eager JAX arrays.

    Those checks raise on every eager operation whose output holds a NaN or an inf,
    the creation of the ``-inf`` and NaN constants of the edge rows included, which
    finite input never reaches. Compiled, only the result is checked, as for JAX's
    own functions (``jax.nn.softmax`` is jitted): finite input raises nothing, and a
    NaN or inf in the result still does. ``function`` takes arrays, None and Python
    floats (which stay constants of the compiled function).
    """
    if array_api_compat.is_jax_namespace(xp):
        import jax

        checked = jax.config.jax_debug_nans or jax.config.jax_debug_infs
        arrays_only = [a for a in arrays if a is not None and not isinstance(a, float)]
        if checked and not any(is_lazy(a) for a in arrays_only):
            constants = tuple(i for i, a in enumerate(arrays) if isinstance(a, float))
            return jax.jit(function, static_argnums=constants)(*arrays)
    return function(*arrays)
