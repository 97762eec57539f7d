"""Shared fixtures: the backend matrix (``xp``, see matrix.py) and ``numpy_path``."""

from __future__ import annotations

import contextlib
import importlib

import pytest
from matrix import ArrayLibrary, Backend


def _selected(request, backend: Backend) -> None:
    """Skip or xfail ``backend`` as the test's markers say."""
    only = request.node.get_closest_marker("xp_backends")
    if only is not None and backend not in only.args:
        pytest.skip(f"{backend.value} is not among this test's backends")
    for marker in request.node.iter_markers("skip_xp_backend"):
        if backend in marker.args:
            pytest.skip(marker.kwargs.get("reason", f"not for {backend.value}"))
    for marker in request.node.iter_markers("xfail_xp_backend"):
        if backend in marker.args:
            request.applymarker(
                pytest.mark.xfail(reason=marker.kwargs.get("reason", ""), strict=True)
            )


@pytest.fixture(params=list(Backend), ids=lambda b: b.value)
def xp(request):
    """The backend matrix (see matrix.py): one run of the test per array library."""
    backend = Backend(request.param)  # a Backend, or its value (indirect parametrisation)
    _selected(request, backend)
    library = ArrayLibrary(backend)
    with library.running(request):
        yield library


#: The former name of the matrix, for tests not yet moved to ``xp``.
backend = xp


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
