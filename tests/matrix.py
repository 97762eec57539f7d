"""The backend test matrix: every array library a behaviour test runs on.

``conftest.py`` turns :class:`Backend` into the ``xp`` fixture: a test that takes
``xp`` runs once per backend, and gets an :class:`ArrayLibrary` that converts NumPy
test data to the backend's arrays (``xp.asarray``) and back (``xp.to_numpy``). A
backend whose library is not installed is skipped for that test alone, never the
NumPy ones. Markers narrow the matrix:

- ``@pytest.mark.xp_backends(Backend.NUMPY, Backend.TORCH)``: only these;
- ``@pytest.mark.skip_xp_backend(Backend.DASK, reason="...")``: all but this one;
- ``@pytest.mark.xfail_xp_backend(Backend.TENSORFLOW, reason="...")``: expected to fail;
- ``@pytest.mark.allow_dask_compute``: the function may compute a Dask array (by
  default a Dask test fails if anything computes before ``xp.to_numpy``: softmaxkit
  is lazy on Dask).

:func:`assert_close` checks the library, the dtype and the device of a result as well
as its values.
"""

from __future__ import annotations

import contextlib
import enum
import importlib

import numpy as np
import pytest

__all__ = ["Backend", "ArrayLibrary", "assert_close"]


class Backend(enum.Enum):
    """The backends of the matrix."""

    NUMPY = "numpy"  # through the compiled kernel where it takes the call
    NUMPY_GENERIC = "numpy_generic"  # the kernel switched off: the generic path
    NUMPY_READONLY = "numpy_readonly"  # read-only input arrays
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    JAX = "jax"
    DASK = "dask"  # lazily: nothing may compute before to_numpy
    TENSORFLOW = "tensorflow"

    @property
    def module_name(self) -> str:
        return {
            Backend.NUMPY_GENERIC: "numpy",
            Backend.NUMPY_READONLY: "numpy",
            Backend.DASK: "dask.array",
        }.get(self, self.value)

    @property
    def is_numpy(self) -> bool:
        return self in (Backend.NUMPY, Backend.NUMPY_GENERIC, Backend.NUMPY_READONLY)


def _forbidden_scheduler(dsk, keys, **kwargs):
    raise AssertionError(
        "a Dask array was computed inside the function under test (softmaxkit must stay "
        "lazy on Dask); mark the test allow_dask_compute if that is intended"
    )


class ArrayLibrary:
    """What the ``xp`` fixture gives a test: one backend's array conversions."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.name = backend.value
        self.module = pytest.importorskip(backend.module_name)
        if backend is Backend.JAX:
            import jax

            jax.config.update("jax_enable_x64", True)

    def __repr__(self):
        return f"ArrayLibrary({self.backend})"

    @property
    def namespace(self):
        """The array-API namespace softmaxkit computes with for this backend."""
        from softmaxkit._lib._namespace import array_namespace

        return array_namespace(self.asarray(np.zeros(1)))

    def asarray(self, values, dtype=None):
        """NumPy test data as an array of this backend."""
        array = np.asarray(values, dtype=dtype)
        backend = self.backend
        if backend in (Backend.NUMPY, Backend.NUMPY_GENERIC):
            return array
        if backend is Backend.NUMPY_READONLY:
            array = array.copy()
            array.flags.writeable = False
            return array
        if backend is Backend.ARRAY_API_STRICT:
            return self.module.asarray(array)
        if backend is Backend.TORCH:
            return self.module.from_numpy(array.copy())
        if backend is Backend.JAX:
            import jax.numpy as jnp

            return jnp.asarray(array)
        if backend is Backend.DASK:
            chunks = tuple(max(1, (n + 1) // 2) for n in array.shape)
            return self.module.from_array(array, chunks=chunks)
        if backend is Backend.TENSORFLOW:
            return self.module.constant(array)
        raise AssertionError(backend)

    def to_numpy(self, array):
        """An array of this backend as a NumPy array (computing a Dask array)."""
        if self.backend is Backend.DASK:
            import dask

            with dask.config.set(scheduler="sync"):
                array = array.compute()
        if self.backend is Backend.TORCH:
            array = array.detach().cpu()
            if array.dtype == self.module.bfloat16:
                array = array.float()
            return array.numpy()
        if self.backend is Backend.TENSORFLOW:
            return array.numpy()
        if self.backend is Backend.ARRAY_API_STRICT:
            return np.asarray(array._array)
        return np.asarray(array)

    def is_native(self, array) -> bool:
        """Whether ``array`` belongs to this backend's library."""
        backend = self.backend
        if backend.is_numpy:
            return isinstance(array, np.ndarray)
        if backend is Backend.ARRAY_API_STRICT:
            return type(array).__module__.startswith("array_api_strict")
        if backend is Backend.TORCH:
            return isinstance(array, self.module.Tensor)
        if backend is Backend.JAX:
            import jax

            return isinstance(array, jax.Array)
        if backend is Backend.DASK:
            return isinstance(array, self.module.Array)
        if backend is Backend.TENSORFLOW:
            return isinstance(array, self.module.Tensor)
        return False

    def device_of(self, array):
        """The device of ``array`` (None for NumPy and Dask)."""
        backend = self.backend
        if backend.is_numpy or backend is Backend.DASK:
            return None
        if backend is Backend.TENSORFLOW:
            return array.device
        import array_api_compat

        return array_api_compat.device(array)

    @contextlib.contextmanager
    def running(self, request):
        """The context a test of this backend runs in (the generic path forced for
        NUMPY_GENERIC, computing forbidden for DASK)."""
        with contextlib.ExitStack() as stack:
            if self.backend is Backend.NUMPY_GENERIC:
                kernels = importlib.import_module("softmaxkit._kernels")
                stack.enter_context(kernels.generic_only())
            if self.backend is Backend.DASK and not request.node.get_closest_marker(
                "allow_dask_compute"
            ):
                import dask

                stack.enter_context(dask.config.set(scheduler=_forbidden_scheduler))
            yield


def _dtype_name(dtype) -> str:
    name = getattr(dtype, "name", None)
    return name if isinstance(name, str) else str(dtype).rsplit(".", 1)[-1]


def assert_close(actual, expected, xp: ArrayLibrary, *, rtol=0.0, atol=0.0, dtype=None,
                 like=None, equal_nan=True):
    """Assert ``actual`` is an array of ``xp``'s library, of ``dtype`` (a name, or that of
    ``expected`` when it is an array of known dtype), on the device of ``like`` (when
    given), with values close to ``expected`` (NumPy data)."""
    assert xp.is_native(actual), f"{type(actual)} is not an array of {xp.backend.value}"
    if dtype is not None:
        assert _dtype_name(actual.dtype) == _dtype_name(dtype), (actual.dtype, dtype)
    if like is not None:
        assert xp.device_of(actual) == xp.device_of(like), (xp.device_of(actual), like)
    np.testing.assert_allclose(
        xp.to_numpy(actual).astype(np.float64) if _dtype_name(actual.dtype) == "bfloat16"
        else xp.to_numpy(actual),
        expected, rtol=rtol, atol=atol, equal_nan=equal_nan,
    )
