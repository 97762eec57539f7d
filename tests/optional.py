"""Optional libraries of the tests: each is the module, or None where it is not
installed, with a marker that skips the tests needing it (and those alone: the NumPy
tests of the same file still run)."""

from __future__ import annotations

import importlib

import pytest

__all__ = ["torch", "requires_torch", "entmax", "requires_entmax"]


def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


torch = _optional("torch")
requires_torch = pytest.mark.skipif(torch is None, reason="needs torch")
entmax = _optional("entmax")  # the reference of the sparse maps (it needs torch)
requires_entmax = pytest.mark.skipif(entmax is None, reason="needs the entmax package")
