"""Shared fixtures: the array libraries every backend-agnostic test runs on."""

from __future__ import annotations

import contextlib
import importlib

import numpy as np
import pytest

BACKENDS = ["numpy", "numpy_readonly", "array_api_strict", "torch", "jax", "dask", "tensorflow"]


class Backend:
    """Converts NumPy test data to one array library and back."""

    def __init__(self, name):
        self.name = name
        module = {"numpy_readonly": "numpy"}.get(name, name)
        if name == "dask":
            module = "dask.array"
        self.module = pytest.importorskip(module)
        if name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)

    def asarray(self, values, dtype=None):
        array = np.asarray(values, dtype=dtype)
        if self.name == "numpy":
            return array
        if self.name == "numpy_readonly":
            array = array.copy()
            array.flags.writeable = False
            return array
        if self.name == "array_api_strict":
            return self.module.asarray(array)
        if self.name == "torch":
            return self.module.from_numpy(array.copy())
        if self.name == "jax":
            import jax.numpy as jnp

            return jnp.asarray(array)
        if self.name == "dask":
            chunks = tuple(max(1, (n + 1) // 2) for n in array.shape)
            return self.module.from_array(array, chunks=chunks)
        if self.name == "tensorflow":
            return self.module.constant(array)
        raise AssertionError(self.name)

    def to_numpy(self, array):
        if self.name == "dask":
            array = array.compute()
        if self.name == "torch":
            array = array.detach().cpu()
            if array.dtype == self.module.bfloat16:
                array = array.float()
            return array.numpy()
        if self.name == "tensorflow":
            return array.numpy()
        if self.name == "array_api_strict":
            return np.asarray(array._array)
        return np.asarray(array)

    def is_native(self, array) -> bool:
        """Whether ``array`` belongs to this backend's library."""
        if self.name.startswith("numpy"):
            return isinstance(array, np.ndarray)
        if self.name == "array_api_strict":
            return type(array).__module__.startswith("array_api_strict")
        if self.name == "torch":
            return isinstance(array, self.module.Tensor)
        if self.name == "jax":
            import jax

            return isinstance(array, jax.Array)
        if self.name == "dask":
            return isinstance(array, self.module.Array)
        if self.name == "tensorflow":
            return isinstance(array, self.module.Tensor)
        return False


@pytest.fixture(params=BACKENDS)
def backend(request):
    return Backend(request.param)


def _kernels():
    try:
        return importlib.import_module("softmaxkit._kernels")
    except ImportError:
        return None


@pytest.fixture(params=["kernel", "generic"])
def numpy_path(request):
    """Runs a NumPy test once through the compiled kernel and once through the generic path."""
    kernels = _kernels()
    available = kernels is not None and getattr(kernels, "kernel_available", lambda: False)()
    if request.param == "kernel":
        if not available:
            pytest.skip("the compiled kernel is not built")
        yield "kernel"
    else:
        if kernels is not None and hasattr(kernels, "generic_only"):
            with kernels.generic_only():
                yield "generic"
        else:
            with contextlib.nullcontext():
                yield "generic"
