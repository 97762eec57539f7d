"""Dask arrays: one reduction over the (max, sum) state, lazy, correct across chunks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import softmaxkit as smk

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
special = pytest.importorskip("scipy.special")

LONG = np.longdouble


def reference(kind, x, axis, temperature=1.0):
    x = np.asarray(x, dtype=LONG) / LONG(temperature)
    top = np.max(x, axis=axis, keepdims=True)
    shifted = x - top
    total = np.sum(np.exp(shifted), axis=axis, keepdims=True)
    if kind == "softmax":
        return np.exp(shifted) / total
    if kind == "log_softmax":
        return shifted - np.log(total)
    return np.squeeze(top + np.log(total), axis=axis)


def _no_compute(*args, **kwargs):
    raise AssertionError("the function computed eagerly")


FUNCTIONS = {"softmax": smk.softmax, "log_softmax": smk.log_softmax, "logsumexp": smk.logsumexp}


@pytest.mark.parametrize("kind", list(FUNCTIONS))
@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), None])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_numpy_chunked_along_every_axis(kind, axis, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((7, 9, 11)) * 20).astype(dtype)
    lazy = da.from_array(x, chunks=(3, 4, 5))
    with dask.config.set(scheduler=_no_compute):
        result = FUNCTIONS[kind](lazy, axis=axis)
    assert isinstance(result, da.Array)
    got = result.compute(scheduler="threads")
    assert got.dtype == dtype
    if kind != "logsumexp":
        assert result.chunks == lazy.chunks
    expected = reference(kind, x, axis if axis is not None else (0, 1, 2))
    eps = np.finfo(dtype).eps
    if kind == "logsumexp":
        np.testing.assert_allclose(got, expected.astype(np.float64), rtol=2 * eps, atol=0)
    else:
        # Below the normal range the bound is the subnormal spacing.
        atol = 4 * eps if kind == "log_softmax" else 2 * np.finfo(dtype).smallest_subnormal
        np.testing.assert_allclose(got, expected.astype(np.float64), rtol=4 * eps, atol=atol)


def _layer_names(array):
    return list(array.__dask_graph__().layers)


def test_one_reduction_and_no_rechunk():
    x = da.random.default_rng(1).standard_normal((40, 1000), chunks=(10, 100))
    result = smk.softmax(x)
    names = _layer_names(result)
    state_layers = [n for n in names if n.startswith("softmaxkit-logsumexp-state")]
    assert 1 <= len(state_layers) <= 3  # the block states and the tree of merges
    assert not any("rechunk" in n for n in names)
    assert not any(n.startswith(("max-", "sum-")) for n in names)
    np.testing.assert_allclose(result.compute().sum(axis=-1), 1.0, rtol=1e-15)


def test_edge_rows_across_chunks():
    inf, nan = math.inf, math.nan
    x = np.array(
        [
            [-inf, -inf, -inf, -inf, -inf, -inf],
            [1.0, 2.0, -inf, inf, 0.0, inf],
            [1.0, 2.0, 3.0, nan, 0.0, 1.0],
            [0.0, -40.0, -inf, -inf, -inf, -inf],
            [1e308, -1e308, 1e308, 0.0, 5.0, -5.0],
        ]
    )
    lazy = da.from_array(x, chunks=(2, 2))
    p = smk.softmax(lazy).compute()
    assert p[0].tolist() == [0.0] * 6
    assert p[1].tolist() == [0, 0, 0, 0.5, 0, 0.5]
    assert np.isnan(p[2]).all()
    log_p = smk.log_softmax(lazy).compute()
    assert log_p[3, 0] == -4.248354255291589e-18
    np.testing.assert_allclose(log_p[1, [3, 5]], -math.log(2))
    lse = smk.logsumexp(lazy).compute()
    assert lse[0] == -inf and lse[1] == inf and np.isnan(lse[2])
    assert lse[3] == 4.248354255291589e-18
    assert lse[4] == 1e308 + math.log(2)
    np.testing.assert_allclose(p[4], [0.5, 0, 0.5, 0, 0, 0])


@pytest.mark.parametrize("temperature", [0.0, 0.5, 3.0, math.inf])
def test_temperature_and_where(temperature):
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((6, 12)) * 4)
    keep = rng.random((6, 12)) < 0.7
    keep[0] = False
    lazy = da.from_array(x, chunks=(3, 5))
    lazy_keep = da.from_array(keep, chunks=(2, 4))
    got = smk.softmax(lazy, temperature=temperature, where=lazy_keep).compute()
    expected = smk.softmax(x, temperature=temperature, where=keep)  # the NumPy core
    # both within 4 ulp of the exact result (the NumPy side may take the compiled kernel)
    np.testing.assert_allclose(got, expected, rtol=8 * 2**-53, atol=0)
    lse = smk.logsumexp(lazy, temperature=temperature, where=lazy_keep).compute()
    np.testing.assert_allclose(
        lse, smk.logsumexp(x, temperature=temperature, where=keep), rtol=4e-16, atol=0
    )
    if 0 < temperature < math.inf:
        with np.errstate(divide="ignore"):
            masked = np.where(keep, x, -np.inf)
        np.testing.assert_allclose(
            got[1:],
            reference("softmax", masked[1:], -1, temperature).astype(np.float64),
            rtol=1e-15,
        )


def test_logsumexp_keepdims_and_sign():
    x = np.array([[1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf]])
    lazy = da.from_array(x, chunks=(1, 2))
    result, sign = smk.logsumexp(lazy, keepdims=True, return_sign=True)
    assert result.shape == (2, 1)
    np.testing.assert_allclose(result.compute()[:, 0], [special.logsumexp(x[0]), -np.inf])
    assert sign.compute()[:, 0].tolist() == [1.0, 0.0]


def test_local_cluster_with_two_worker_processes():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 4096)) * 10
    lazy = da.from_array(x, chunks=(16, 512))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert len(client.scheduler_info()["workers"]) == 2
        p, lse = dask.compute(smk.softmax(lazy, axis=-1), smk.logsumexp(lazy, axis=0))
    np.testing.assert_allclose(p, special.softmax(x, axis=-1), rtol=1e-14)
    np.testing.assert_allclose(lse, special.logsumexp(x, axis=0), rtol=1e-15)


def test_two_normalizations_in_one_graph_do_not_collide():
    """Regression: a fixed map_blocks name gave every call the same keys, so that
    ``softmax(a) - softmax(b)`` computed ``softmax(a) - softmax(a)``."""
    rng = np.random.default_rng(21)
    a, b = rng.standard_normal((2, 4, 6))
    lazy_a = da.from_array(a, chunks=(2, 3))
    lazy_b = da.from_array(b, chunks=(2, 3))
    for function in (smk.softmax, smk.log_softmax):
        got = (function(lazy_a) - function(lazy_b)).compute()
        np.testing.assert_allclose(got, function(a) - function(b), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", list(FUNCTIONS))
@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_bad_per_row_temperature_is_an_error_when_computed(kind, bad):
    """A negative per-row temperature as a Dask array gave [0, 0, nan] with a
    RuntimeWarning; it is now the ValueError NumPy input gets, raised when computed
    (the values are not known before), and no number comes out."""
    x = da.from_array(np.ones((3, 4)), chunks=(1, 2))
    temperature = da.from_array(np.array([[1.0], [2.0], [bad]]), chunks=1)
    with dask.config.set(scheduler=_no_compute):
        lazy = FUNCTIONS[kind](x, temperature=temperature)
    with pytest.raises(ValueError, match="temperature must be >= 0, got"):
        lazy.compute()
    with pytest.raises(ValueError, match="temperature must be >= 0, got"):
        FUNCTIONS[kind](np.ones((3, 4)), temperature=np.array([[1.0], [2.0], [bad]]))
    good = da.from_array(np.array([[1.0], [2.0], [0.0]]), chunks=1)
    np.testing.assert_allclose(
        FUNCTIONS[kind](x, temperature=good).compute(),
        FUNCTIONS[kind](np.ones((3, 4)), temperature=np.array([[1.0], [2.0], [0.0]])),
        rtol=1e-15,
    )


@pytest.mark.parametrize("temperature", [1e-300, 5e-324])
def test_tiny_temperatures_through_the_state(temperature):
    """The mergeable state divided the row maximum by the temperature directly:
    an overflow warning for LogSumExpState(temperature=1e-300), and in the Dask
    reduction, where the limit (+inf, and the greedy softmax) is what comes out."""
    import warnings

    x = np.array([[1e10, 0.0, -3.0], [-1e10, -5e10, -1e10]])
    lazy = da.from_array(x, chunks=(1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = smk.LogSumExpState(temperature=temperature).update(x[:, :2]).update(x[:, 2:])
        lse = state.logsumexp()
        p = np.concatenate([state.normalize(x[:, :2]), state.normalize(x[:, 2:])], axis=-1)
        lazy_lse = smk.logsumexp(lazy, temperature=temperature).compute()
        lazy_p = smk.softmax(lazy, temperature=temperature).compute()
        for dtype in (np.float32, np.float64):
            lazy_lp = smk.log_softmax(lazy.astype(dtype), temperature=temperature).compute()
            assert lazy_lp.dtype == dtype
            assert lazy_lp[0, 0] == 0.0 and np.all(np.isneginf(lazy_lp[0, 1:]))
    assert lse[0] == math.inf and lse[1] == -math.inf
    np.testing.assert_array_equal(lse, lazy_lse)
    # The limit: all the mass on the maxima, ties shared.
    np.testing.assert_array_equal(p, [[1.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    np.testing.assert_array_equal(lazy_p, p)
