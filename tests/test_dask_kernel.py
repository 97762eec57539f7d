"""float32 Dask blocks through the compiled kernel: each block's state by one kernel
pass, each block's softmax by one kernel call with the per-row gain.

References: the suite's float64/longdouble reference (``test_kernels.reference``) and
the README's edge table, through the NumPy path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_kernels import assert_accurate

import softmaxkit as smk
from softmaxkit import _dispatch, _kernels

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

needs_kernel = pytest.mark.skipif(not _kernels.kernel_available(), reason="no compiled kernel")


@needs_kernel
@pytest.mark.parametrize("temperature", [1.0, 0.4, 3.0])
@pytest.mark.parametrize("chunks", [(16, 250), (7, 333), (64, 1000)])
def test_float32_blocks_within_the_ulp_bound(temperature, chunks):
    x = (np.random.default_rng(3).standard_normal((64, 1000)) * 12).astype(np.float32)
    lazy = da.from_array(x, chunks=chunks)
    before = _dispatch.counts["kernel"]
    with dask.config.set(scheduler="sync"):
        got = smk.softmax(lazy, temperature=temperature).compute()
    assert got.dtype == np.float32
    blocks = math.ceil(64 / chunks[0]) * math.ceil(1000 / chunks[1])
    assert _dispatch.counts["kernel"] - before >= 2 * blocks  # a state and a softmax each
    assert_accurate("softmax", got, x, np.float32, temperature=temperature)


@needs_kernel
def test_three_dimensional_blocks():
    x = (np.random.default_rng(4).standard_normal((4, 6, 900)) * 5).astype(np.float32)
    lazy = da.from_array(x, chunks=(2, 3, 200))
    got = smk.softmax(lazy).compute()
    assert_accurate("softmax", got, x, np.float32)


def test_edge_rows_in_float32_blocks_are_those_of_numpy():
    inf, nan = math.inf, math.nan
    x = np.zeros((6, 8), dtype=np.float32)
    x[0] = -inf
    x[1, [2, 5]] = inf
    x[2, 3] = nan
    x[3, 1:] = -inf
    x[4] = np.float32(3e38) * np.array([1, -1, 1, 0, 0.5, -0.5, 0.25, 1], dtype=np.float32)
    x[5] = np.arange(8)
    lazy = da.from_array(x, chunks=(2, 3))
    for temperature in (1.0, 0.5, 0.0, inf):
        got = smk.softmax(lazy, temperature=temperature).compute()
        np.testing.assert_array_equal(got[:5], smk.softmax(x[:5], temperature=temperature))
        if 0 < temperature < inf:  # the ordinary row: within the bound
            assert_accurate("softmax", got[5:], x[5:], np.float32, temperature=temperature)
        else:
            np.testing.assert_array_equal(got[5:], smk.softmax(x[5:], temperature=temperature))
