"""Which array library an array or a namespace belongs to: answered here alone.

Every module that treats a library specially (the compiled kernel takes NumPy, the
sampler draws random numbers per library, Dask arrays are reduced lazily) asks
:func:`library_of` instead of testing module names itself. No optional library is
imported to answer: the tests are ``array-api-compat``'s, on the type's module.
"""

from __future__ import annotations

import enum

import array_api_compat

__all__ = ["Library", "library_of", "library_of_namespace"]


class Library(enum.Enum):
    """The array libraries softmaxkit knows by name."""

    NUMPY = "numpy"
    TORCH = "torch"
    JAX = "jax"
    DASK = "dask"
    CUPY = "cupy"
    ARRAY_API_STRICT = "array_api_strict"
    TENSORFLOW = "tensorflow"
    OTHER = "other"

    @property
    def display_name(self) -> str:
        """The library's name as its users write it."""
        return _DISPLAY[self]


_DISPLAY = {
    Library.NUMPY: "NumPy",
    Library.TORCH: "PyTorch",
    Library.JAX: "JAX",
    Library.DASK: "Dask",
    Library.CUPY: "CuPy",
    Library.ARRAY_API_STRICT: "array_api_strict",
    Library.TENSORFLOW: "TensorFlow",
    Library.OTHER: "another array library",
}


def library_of_namespace(xp) -> Library:
    """The library of namespace ``xp`` (the TensorFlow adapter included)."""
    if getattr(xp, "is_tensorflow_adapter", False):
        return Library.TENSORFLOW
    for test, library in (
        (array_api_compat.is_numpy_namespace, Library.NUMPY),
        (array_api_compat.is_torch_namespace, Library.TORCH),
        (array_api_compat.is_jax_namespace, Library.JAX),
        (array_api_compat.is_dask_namespace, Library.DASK),
        (array_api_compat.is_cupy_namespace, Library.CUPY),
        (array_api_compat.is_array_api_strict_namespace, Library.ARRAY_API_STRICT),
    ):
        if test(xp):
            return library
    return Library.OTHER


def library_of(x) -> Library:
    """The library of array ``x`` (NumPy for Python numbers and sequences)."""
    from ._namespace import is_tensorflow

    if is_tensorflow(x):
        return Library.TENSORFLOW
    for test, library in (
        (array_api_compat.is_torch_array, Library.TORCH),
        (array_api_compat.is_jax_array, Library.JAX),
        (array_api_compat.is_dask_array, Library.DASK),
        (array_api_compat.is_cupy_array, Library.CUPY),
    ):
        if test(x):
            return library
    if type(x).__module__.startswith("array_api_strict"):
        return Library.ARRAY_API_STRICT
    if array_api_compat.is_numpy_array(x) or isinstance(x, (bool, int, float, list, tuple)):
        return Library.NUMPY
    return Library.OTHER
