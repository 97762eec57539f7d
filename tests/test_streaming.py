"""LogSumExpState and softmax_file against references computed another way."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softmaxkit as smk
from softmaxkit import streaming

LONG = np.longdouble


def reference_logsumexp(x, axis=-1):
    """log(sum(exp(x))) in long double, shifted by the row max (finite rows only)."""
    x = np.asarray(x, dtype=LONG)
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top + np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)), axis)


def reference_softmax(x, axis=-1):
    x = np.asarray(x, dtype=LONG)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def ulps(computed, exact, dtype):
    computed = np.asarray(computed, dtype=LONG)
    exact = np.asarray(exact, dtype=LONG)
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(LONG)
    tiny = LONG(np.finfo(dtype).smallest_subnormal)
    return np.max(np.abs(computed - exact) / np.maximum(spacing, tiny))


def split(x, cuts, axis=-1):
    return np.split(x, sorted(set(cuts)), axis=axis)


def state_of(chunks, order=None, **options):
    state = smk.LogSumExpState(**options)
    for i in order if order is not None else range(len(chunks)):
        state.update(chunks[i])
    return state


# --------------------------------------------------------------------------------------
# LogSumExpState


rows = st.lists(
    st.floats(-700, 700, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
)


@settings(max_examples=30, deadline=None)
@given(rows, st.lists(st.integers(0, 40), max_size=8), st.randoms(use_true_random=False))
def test_any_chunking_and_order_gives_the_reference(values, cuts, random):
    x = np.array([values])
    chunks = split(x, [c for c in cuts if c <= x.shape[1]])
    order = list(range(len(chunks)))
    random.shuffle(order)
    state = state_of(chunks, order)
    exact = reference_logsumexp(x)
    error = abs(LONG(state.logsumexp()[0]) - exact[0])
    bound = 2 * np.spacing(abs(float(exact[0]))) + 2 * 2**-53 * np.max(np.abs(x))
    assert error <= bound
    probabilities = np.concatenate([state.normalize(c) for c in chunks], axis=-1)
    assert ulps(probabilities, reference_softmax(x), np.float64) <= 4


@settings(max_examples=25, deadline=None)
@given(rows, st.integers(1, 39), st.integers(1, 39))
def test_merge_is_associative_and_commutative(values, cut_a, cut_b):
    x = np.array([values])
    cuts = [min(cut_a, cut_b, x.shape[1]), min(max(cut_a, cut_b), x.shape[1])]
    a, b, c = np.split(x, cuts, axis=-1)
    sa, sb, sc = (smk.LogSumExpState().update(p) for p in (a, b, c))
    left = sa.merge(sb).merge(sc)
    right = sc.merge(sb.merge(sa))
    lse_left, lse_right = left.logsumexp()[0], right.logsumexp()[0]
    assert abs(lse_left - lse_right) <= 4 * np.spacing(abs(lse_left)) + 4 * 2**-53 * np.max(
        np.abs(x)
    )
    assert ulps(left.normalize(x), right.normalize(x), np.float64) <= 4


def test_log1p_form_survives_chunking():
    state = state_of([np.array([0.0]), np.array([-40.0])])
    assert float(state.logsumexp()) == 4.248354255291589e-18
    assert float(state.log_normalize(np.array([0.0]))[0]) == -4.248354255291589e-18


def test_long_float32_row_in_many_chunks():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 200_000)) * 30).astype(np.float32)
    chunks = split(x, list(range(7_919, 200_000, 7_919)))
    state = state_of(chunks)
    assert state.max.dtype == np.float64 and state.logsumexp().dtype == np.float32
    probabilities = np.concatenate([state.normalize(c) for c in chunks], axis=-1)
    assert probabilities.dtype == np.float32
    assert ulps(probabilities, reference_softmax(x), np.float32) <= 2
    lse = state.logsumexp()
    exact = reference_logsumexp(x)
    bound = 2 * np.spacing(np.abs(exact).astype(np.float32)) + 2 * 2**-24 * np.max(np.abs(x))
    assert np.all(np.abs(lse - exact) <= bound)


def test_axis_zero_and_several_axes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 3, 4))
    state = smk.LogSumExpState()
    for chunk in split(x, [2, 7], axis=0):
        state.update(chunk, axis=0)
    np.testing.assert_allclose(state.logsumexp(), reference_logsumexp(x, axis=0), rtol=1e-15)
    joint = smk.LogSumExpState()
    for chunk in split(x, [1], axis=1):
        joint.update(chunk, axis=(1, 2))
    exact = reference_logsumexp(x.reshape(10, 12), axis=-1)
    np.testing.assert_allclose(joint.logsumexp(), exact, rtol=1e-15)


INF, NAN = math.inf, math.nan


@pytest.mark.parametrize(
    "chunks, softmax, lse",
    [
        ([[-INF, -INF], [-INF]], [0, 0, 0], -INF),
        ([[-INF, 0.0], [], [-INF]], [0, 1, 0], 0.0),
        ([[1.0, INF], [INF, 5.0]], [0, 0.5, 0.5, 0], INF),
        ([[1.0, 2.0], [NAN]], [NAN, NAN, NAN], NAN),
        ([[], []], [], -INF),
        ([[1e308, -1e308], [1e308]], [0.5, 0, 0.5], 1e308 + math.log(2)),
    ],
)
def test_edges_as_in_the_core(chunks, softmax, lse):
    parts = [np.array(c, dtype=np.float64) for c in chunks]
    state = state_of(parts)
    assert np.array_equal(state.logsumexp(), np.float64(lse), equal_nan=True)
    got = np.concatenate([state.normalize(p) for p in parts])
    np.testing.assert_allclose(got, np.array(softmax, dtype=np.float64), rtol=1e-15)
    logs = np.concatenate([state.log_normalize(p) for p in parts])
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(logs, np.log(np.array(softmax)), rtol=1e-15)


def test_pos_inf_chunk_split_over_states():
    a = smk.LogSumExpState().update(np.array([INF, 3.0]))
    b = smk.LogSumExpState().update(np.array([INF, INF]))
    merged = a.merge(b)
    assert merged.normalize(np.array([INF, 3.0])).tolist() == [1 / 3, 0.0]
    np.testing.assert_allclose(merged.log_normalize(np.array([INF, INF])), -math.log(3))


@pytest.mark.parametrize("temperature", [0.0, 0.3, 2.5, math.inf])
def test_temperature(temperature):
    x = np.array([[1.0, 3.0, 2.0, 3.0, -1.0], [-5.0, -2.0, -2.5, -9.0, -2.0]])
    state = state_of(split(x, [1, 3]), temperature=temperature)
    if temperature == 0.0:
        expected = np.array([[0, 0.5, 0, 0.5, 0], [0, 0.5, 0, 0, 0.5]])
        expected_lse = np.array([INF, -INF])
    elif temperature == math.inf:
        expected = np.full_like(x, 0.2)
        expected_lse = np.full(2, math.log(5))
    else:
        # In long double (a long-double scalar does not promote a float64 array on NumPy 1.x).
        expected = reference_softmax(x.astype(LONG) / LONG(temperature))
        expected_lse = reference_logsumexp(x.astype(LONG) / LONG(temperature))
    got = np.concatenate([state.normalize(c) for c in split(x, [2])], axis=-1)
    np.testing.assert_allclose(got, expected.astype(np.float64), rtol=4e-16, atol=0)
    np.testing.assert_allclose(state.logsumexp(), expected_lse.astype(np.float64), rtol=4e-16)


def test_where_deletes_entries():
    x = np.array([[1.0, NAN, 2.0, 7.0]])
    keep = np.array([[True, False, True, False]])
    state = smk.LogSumExpState()
    state.update(x[:, :2], where=keep[:, :2]).update(x[:, 2:], where=keep[:, 2:])
    left = state.normalize(x[:, :2], where=keep[:, :2])
    right = state.normalize(x[:, 2:], where=keep[:, 2:])
    got = np.concatenate([left, right], axis=-1)
    expected = reference_softmax(np.array([[1.0, 2.0]]))[0]
    np.testing.assert_allclose(got[0], [expected[0], 0, expected[1], 0], rtol=1e-15)


def test_torch_chunks_stay_torch_and_match():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 100, dtype=torch.float32) * 20
    state = smk.LogSumExpState()
    for chunk in torch.split(x, 33, dim=-1):
        state.update(chunk)
    lse = state.logsumexp()
    assert isinstance(lse, torch.Tensor) and lse.dtype == torch.float32
    torch.testing.assert_close(lse, torch.logsumexp(x.double(), -1).float())
    p = torch.cat([state.normalize(c) for c in torch.split(x, 33, dim=-1)], dim=-1)
    torch.testing.assert_close(p, torch.softmax(x.double(), -1).float())


def test_errors():
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1.0"):
        smk.LogSumExpState(temperature=-1)
    state = smk.LogSumExpState()
    with pytest.raises(ValueError, match="no chunk yet"):
        state.logsumexp()
    state.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="does not have the rows"):
        state.update(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="different temperatures"):
        state.merge(smk.LogSumExpState(temperature=2.0).update(np.zeros((2, 3))))
    with pytest.raises(TypeError, match="other must be a LogSumExpState"):
        state.merge(3)


# --------------------------------------------------------------------------------------
# softmax_file


def _save(tmp_path, x, name="x.npy"):
    path = tmp_path / name
    np.save(path, x)
    return path


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize(
    "shape, axis, chunk_bytes",
    [
        ((50, 40), -1, 2**20),  # whole rows at a time
        ((50, 40), -1, 2**12),  # a few rows at a time
        ((50, 400), -1, 2**12),  # the axis is cut: two passes
        ((30, 7, 5), 0, 2**11),  # the axis first, cut
        ((6, 30, 5), 1, 2**11),  # a middle axis, cut
        ((1000,), 0, 2**11),  # one long row
    ],
)
def test_npy_matches_the_reference(tmp_path, shape, axis, chunk_bytes, kind):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    dst = tmp_path / "out.npy"
    smk.softmax_file(
        _save(tmp_path, x), dst, axis=axis, kind=kind, chunk_bytes=chunk_bytes, progress=False
    )
    got = np.load(dst)
    assert got.dtype == np.float32 and got.shape == x.shape
    expected = reference_softmax(x, axis=axis)
    if kind == "log_softmax":
        expected = np.log(expected)
    assert ulps(got, expected, np.float32) <= 2
    assert sorted(os.listdir(tmp_path)) == ["out.npy", "x.npy"]


def test_zarr_in_and_out(tmp_path):
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 300)) * 5
    source = zarr.open_array(
        str(tmp_path / "x.zarr"), mode="w", shape=x.shape, chunks=(7, 64), dtype=x.dtype
    )
    source[...] = x
    dst = tmp_path / "p.zarr"
    smk.softmax_file(
        tmp_path / "x.zarr", dst, axis=0, chunk_bytes=2**12, temperature=2.0, progress=False
    )
    got = zarr.open_array(str(dst), mode="r")[...]
    assert ulps(got, reference_softmax(x / LONG(2.0), axis=0), np.float64) <= 4
    # Overwriting an existing Zarr destination replaces it whole.
    smk.softmax_file(tmp_path / "x.zarr", dst, kind="log_softmax", progress=False)
    got = zarr.open_array(str(dst), mode="r")[...]
    assert ulps(got, np.log(reference_softmax(x)), np.float64) <= 4


def test_an_interrupted_run_leaves_the_destination_untouched(tmp_path, monkeypatch):
    x = np.random.default_rng(5).standard_normal((40, 300))
    src = _save(tmp_path, x)
    dst = tmp_path / "out.npy"
    np.save(dst, np.arange(3.0))
    calls = []

    def failing_normalize(self, chunk, *, where=None):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros_like(chunk)

    monkeypatch.setattr(streaming.LogSumExpState, "normalize", failing_normalize)
    with pytest.raises(KeyboardInterrupt):
        smk.softmax_file(src, dst, chunk_bytes=2**12, progress=False)
    assert np.load(dst).tolist() == [0.0, 1.0, 2.0]
    assert sorted(os.listdir(tmp_path)) == ["out.npy", "x.npy"]


@pytest.mark.parametrize("bar", ["tqdm", "rich"])
def test_progress_bar_and_edges(tmp_path, capsys, monkeypatch, bar):
    if bar == "tqdm":
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm absent: rich draws it
    x = np.array([[-INF, -INF, -INF], [1.0, INF, INF], [0.0, NAN, 1.0]])
    dst = tmp_path / "p.npy"
    smk.softmax_file(_save(tmp_path, x), dst, chunk_bytes=300, progress=True)
    captured = capsys.readouterr()
    # The bar goes to standard error, never into standard output.
    assert "softmax x.npy" in captured.err and captured.out == ""
    got = np.load(dst)
    assert got[0].tolist() == [0, 0, 0] and got[1].tolist() == [0, 0.5, 0.5]
    assert np.isnan(got[2]).all()


def test_file_errors(tmp_path):
    src = _save(tmp_path, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="kind must be"):
        smk.softmax_file(src, tmp_path / "o.npy", kind="sparsemax")
    with pytest.raises(ValueError, match="chunk_bytes must be > 0"):
        smk.softmax_file(src, tmp_path / "o.npy", chunk_bytes=0)
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        smk.softmax_file(src, tmp_path / "o.npy", axis=2)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        smk.softmax_file(src, tmp_path / "o.npy", temperature=-2.0)


_RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import softmaxkit as smk

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    # A first call on a tiny file loads the modules it needs; they are not data.
    np.save(sys.argv[2] + ".warm.npy", np.zeros((2, 3), np.float32))
    smk.softmax_file(sys.argv[2] + ".warm.npy", sys.argv[2] + ".warm.npy", progress=False)
    before = status("VmRSS")
    smk.softmax_file(sys.argv[1], sys.argv[2], chunk_bytes=int(sys.argv[3]), progress=False)
    print(json.dumps({"before": before, "peak": status("VmHWM")}))
    """
)


def _peak_extra_rss(tmp_path, shape, budget):
    src = tmp_path / "big.npy"
    array = np.lib.format.open_memmap(src, mode="w+", dtype=np.float32, shape=shape)
    rng = np.random.default_rng(6)
    step = max(1, (64 * 2**20 // 4) // int(np.prod(shape[1:], dtype=np.int64)))
    for start in range(0, shape[0], step):
        stop = min(start + step, shape[0])
        array[start:stop] = rng.standard_normal((stop - start,) + shape[1:], dtype=np.float32)
        array.flush()
    del array
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(src), str(tmp_path / "p.npy"), str(budget)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    sizes = json.loads(out.stdout)
    result = np.load(tmp_path / "p.npy", mmap_mode="r")
    rows = result[:4] if result.ndim == 2 else None
    if rows is not None:
        np.testing.assert_allclose(np.sum(rows, axis=-1, dtype=np.float64), 1.0, rtol=1e-6)
    return sizes["peak"] - sizes["before"]


def test_memory_budget_small(tmp_path):
    budget = 16 * 2**20
    extra = _peak_extra_rss(tmp_path, (64, 2**18), budget)  # 64 MiB, rows of 1 MiB
    assert extra <= budget


@pytest.mark.slow
def test_memory_budget_2gb(tmp_path):
    budget = 256 * 2**20
    extra = _peak_extra_rss(tmp_path, (2**11, 2**18), budget)  # 2 GiB float32
    assert extra <= budget
