"""PyTorch CPU tensors in the compiled kernel (issue 16): zero-copy, the ulp bounds, the
edges, every dtype, any strides and axis, out=, threads, and what falls through."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from reference import longdouble_reference, mp_reference, ulp_error

import softmaxkit as smk
from softmaxkit import _dispatch, _kernels, _threads

torch = pytest.importorskip("torch")
if not _kernels.kernel_available():
    pytest.skip("the compiled kernel is not built", allow_module_level=True)

from softmaxkit.torch import _bridge  # noqa: E402

INF, NAN = float("inf"), float("nan")
FUNCTIONS = [smk.softmax, smk.log_softmax, smk.logsumexp]
TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def _rng(seed):
    return np.random.default_rng(seed)


def _layouts(array, dtype=None):
    """The same values as a contiguous tensor, a transposed view and a strided slice."""
    base = torch.from_numpy(np.ascontiguousarray(array))
    if dtype is not None:
        base = base.to(dtype)
    transposed = base.T.contiguous().T
    wide = torch.zeros(base.shape[0], 2 * base.shape[1], dtype=base.dtype)
    wide[:, ::2] = base
    return {"contiguous": base, "transposed": transposed, "strided": wide[:, ::2]}


@pytest.fixture
def kernel_inputs(monkeypatch):
    """The data pointers of the arrays handed to the kernel as its input."""
    seen = []
    monkeypatch.setattr(_bridge, "input_hook", lambda a: seen.append(a.__array_interface__))
    return seen


# ---- the kernel ran, on the tensor's own memory ----


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("size", [(3, 7), (40, 700)], ids=["small", "large"])
def test_the_kernel_reads_the_tensor_memory(kernel_inputs, dtype, layout, function, size):
    x = _layouts(_rng(1).standard_normal(size), getattr(torch, dtype))[layout]
    assert x.is_contiguous() == (layout == "contiguous")
    before = dict(_dispatch.counts)
    result = function(x, axis=0 if layout == "transposed" else -1)
    assert _dispatch.counts["kernel"] == before["kernel"] + 1, "the kernel did not run"
    assert _dispatch.counts["generic"] == before["generic"]
    (interface,) = kernel_inputs
    assert interface["data"][0] == x.data_ptr(), "the input was copied"
    strides = interface["strides"] or tuple(
        x.element_size() * s for s in torch.empty(x.shape).stride()
    )
    assert strides == tuple(x.element_size() * s for s in x.stride()), "the input was copied"
    assert isinstance(result, torch.Tensor) and result.dtype == x.dtype
    assert result.device == x.device


def test_the_table_has_the_torch_entry_before_the_generic_one():
    for implementations in _dispatch.TABLE.values():
        names = [i.name for i in implementations]
        assert names.index("torch") < names.index("generic")


@pytest.mark.parametrize("where", [None, "mask"])
def test_out_is_written_in_place(kernel_inputs, where):
    x = torch.from_numpy(_rng(2).standard_normal((5, 9)))
    mask = x > -1 if where else None
    expected = smk.softmax(x.numpy(), where=None if mask is None else mask.numpy())
    out = torch.empty_like(x)
    assert smk.softmax(x, where=mask, out=out) is out
    np.testing.assert_array_equal(out.numpy(), expected)
    y = x.clone()
    assert smk.softmax(y, where=mask, out=y) is y  # x itself as out
    np.testing.assert_array_equal(y.numpy(), expected)
    strided = torch.empty(9, 5, dtype=x.dtype).T
    assert smk.log_softmax(x, out=strided) is strided
    np.testing.assert_array_equal(strided.numpy(), smk.log_softmax(x.numpy()))
    lse_out = torch.empty(5, dtype=x.dtype)
    assert smk.logsumexp(x, out=lse_out) is lse_out
    np.testing.assert_array_equal(lse_out.numpy(), smk.logsumexp(x.numpy()))


def test_out_overlapping_the_input_is_computed_aside():
    base = torch.from_numpy(_rng(3).standard_normal(12))
    expected = smk.softmax(base[1:].numpy().copy())
    smk.softmax(base[1:], out=base[:-1])
    np.testing.assert_array_equal(base[:-1].numpy(), expected)


def test_bad_out_is_refused_with_its_name():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="out has shape"):
        smk.softmax(x, out=torch.empty(3, 2))
    with pytest.raises(TypeError, match="out has dtype"):
        smk.softmax(x, out=torch.empty(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="out must be a torch.Tensor"):
        smk.softmax(x, where=x > 0, out=np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="out has shape"):
        smk.logsumexp(x, out=torch.empty(3))
    with pytest.raises(TypeError, match="out="):
        smk.softmax(x.clone().requires_grad_(), out=torch.empty(2, 3))


# ---- the bounds against the exact reference ----


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_ulp_bounds_on_tensors(dtype, layout):
    bound = {np.float32: 2.0, np.float64: 4.0}[dtype]
    rng = _rng(4)
    rows = np.concatenate(
        [
            rng.standard_normal((6, 33)) * 3,
            rng.standard_normal((3, 33)) * 300,
            np.tile([0.0, -40.0] + [-1e3] * 31, (1, 1)),
            rng.uniform(-1e4, 1e4, (2, 33)),
        ]
    ).astype(dtype)
    p_exact, lp_exact, lse_exact = mp_reference(rows.astype(np.float64))
    unit = {np.float32: 2.0**-24, np.float64: 2.0**-53}[dtype]
    allowed = 2 * np.spacing(np.abs(lse_exact.astype(dtype))).astype(np.longdouble)
    allowed += 2 * unit * np.max(np.abs(rows), axis=-1)
    x = _layouts(rows)[layout]
    for tensor, axis, turn in ((x, -1, lambda a: a), (x.T, 0, lambda a: a.T)):
        p = turn(smk.softmax(tensor, axis=axis).numpy())
        lp = turn(smk.log_softmax(tensor, axis=axis).numpy())
        lse = smk.logsumexp(tensor, axis=axis).numpy()
        assert np.max(ulp_error(p, p_exact, dtype)) <= bound
        assert np.max(ulp_error(lp, lp_exact, dtype)) <= bound
        assert np.all(np.abs(lse.astype(np.longdouble) - lse_exact) <= allowed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_ulp_bounds_with_temperatures_long_rows(dtype):
    bound = {np.float32: 2.0, np.float64: 4.0}[dtype]
    rows = (_rng(5).standard_normal((4, 5000)) * 8).astype(dtype)
    temperature = np.array([[0.5], [1.0], [3.0], [0.1]])
    x = torch.from_numpy(rows)
    for t_argument in (0.25, torch.from_numpy(temperature)):
        t_values = 0.25 if isinstance(t_argument, float) else temperature
        scaled = rows.astype(np.longdouble) / np.asarray(t_values, np.longdouble)
        p_exact, lp_exact, _ = longdouble_reference(scaled)
        p = smk.softmax(x, temperature=t_argument).numpy()
        lp = smk.log_softmax(x, temperature=t_argument).numpy()
        assert np.max(ulp_error(p, p_exact, dtype)) <= bound
        assert np.max(ulp_error(lp, lp_exact, dtype)) <= bound


# ---- the edges: the NumPy path's results exactly ----

EDGE_ROWS = np.array(
    [
        [-INF, -INF, -INF, -INF],
        [INF, 1.0, INF, -INF],
        [NAN, 1.0, 2.0, 3.0],
        [0.0, -INF, 1.0, 1.0],
        [5.0, 5.0, -3.0, 1e-300],
        [1e308, -1e308, 0.0, 1.0],
    ]
)
EDGE_MASK = np.array(
    [
        [True, True, True, True],
        [False, False, False, False],
        [True, False, True, False],
        [True, True, False, True],
        [False, True, True, True],
        [True, True, True, False],
    ]
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("temperature", [1.0, 0.0, INF, 0.5, 2.5, "rows"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_edge_rows_equal_the_numpy_path(dtype, temperature, masked, function):
    with np.errstate(over="ignore"):
        rows = EDGE_ROWS.astype(dtype)
    if temperature == "rows":
        t_numpy = np.array([[1.0], [0.0], [INF], [0.5], [2.0], [1e-3]])
        t_torch = torch.from_numpy(t_numpy)
    else:
        t_numpy = t_torch = temperature
    where = EDGE_MASK if masked else None
    for x in (torch.from_numpy(rows), torch.from_numpy(rows.T.copy()).T):
        # the NumPy path on an array of the same layout (the kernel's column mode may
        # round differently from its row mode, within the bounds)
        expected = function(x.numpy(), temperature=t_numpy, where=where)
        result = function(
            x, temperature=t_torch, where=None if where is None else torch.from_numpy(where)
        )
        np.testing.assert_array_equal(result.numpy(), expected)
        assert result.dtype == x.dtype


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_edge_rows_of_the_16_bit_dtypes_equal_the_numpy_path(dtype):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    numpy_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    with np.errstate(over="ignore"):
        rows = EDGE_ROWS.astype(numpy_dtype)
    x = torch.from_numpy(rows.astype(np.float32)).to(getattr(torch, dtype))
    for function in FUNCTIONS:
        for where in (None, EDGE_MASK):
            mask = None if where is None else torch.from_numpy(where)
            expected = function(rows, where=where).astype(np.float32)
            result = function(x, where=mask).float().numpy()
            np.testing.assert_array_equal(result, expected)


# ---- 16-bit dtypes against torch's float32 computation ----


def _spacing_16(values, dtype):
    mantissa, smallest = {"float16": (10, 2.0**-24), "bfloat16": (7, 2.0**-133)}[dtype]
    magnitude = np.abs(values.astype(np.float64))
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.where(magnitude > 0, magnitude, 1.0)))
    return np.maximum(2.0 ** (exponent - mantissa), smallest)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("axis", [0, -1])
def test_16_bit_dtypes_within_one_ulp_of_float32(dtype, axis):
    x = torch.from_numpy(_rng(6).standard_normal((64, 300)).astype(np.float32) * 4)
    x = x.to(getattr(torch, dtype))
    wide = x.float()
    pairs = [
        (smk.softmax(x, axis=axis), torch.softmax(wide, axis)),
        (smk.log_softmax(x, axis=axis), torch.log_softmax(wide, axis)),
        (smk.logsumexp(x, axis=axis), torch.logsumexp(wide, axis)),
        (smk.softmax(x, axis=axis, temperature=0.7), torch.softmax(wide / 0.7, axis)),
    ]
    for ours, reference in pairs:
        assert ours.dtype == x.dtype
        reference = reference.double().numpy()
        error = np.abs(ours.double().numpy() - reference)
        # a float32 reference is itself within a few float32 ulp: 1 ulp of the 16-bit dtype
        # plus that margin
        allowed = _spacing_16(reference, dtype) + 8 * np.spacing(
            np.abs(reference.astype(np.float32))
        )
        assert np.all(error <= allowed)


# ---- shapes, axes, masks ----


@pytest.mark.parametrize("axis", [0, 1, 2, -1, (0, 1, 2), None])
def test_three_dimensions_and_every_axis(axis):
    array = _rng(7).standard_normal((4, 5, 6))
    x = torch.from_numpy(array).permute(2, 0, 1)  # non-contiguous
    reference = array.transpose(2, 0, 1)  # the same layout
    expected = [function(reference, axis=axis) for function in FUNCTIONS]
    before = _dispatch.counts["kernel"]
    for function, values in zip(FUNCTIONS, expected):
        result = function(x, axis=axis).numpy()
        if axis in ((0, 1, 2), None):  # every axis of a non-contiguous tensor: generic
            np.testing.assert_allclose(result, values, rtol=1e-15, atol=0)
        else:
            np.testing.assert_array_equal(result, values)
    if axis not in ((0, 1, 2), None):
        assert _dispatch.counts["kernel"] == before + 3


def test_every_axis_of_a_contiguous_tensor_and_keepdims():
    array = _rng(8).standard_normal((3, 4))
    x = torch.from_numpy(array)
    for function in (smk.softmax, smk.log_softmax):
        expected = function(array, axis=None)
        before = _dispatch.counts["kernel"]
        np.testing.assert_array_equal(function(x, axis=None).numpy(), expected)
        assert _dispatch.counts["kernel"] == before + 1
    for keepdims in (False, True):
        for axis in (None, 0, 1):
            expected = smk.logsumexp(array, axis=axis, keepdims=keepdims)
            before = _dispatch.counts["kernel"]
            result = smk.logsumexp(x, axis=axis, keepdims=keepdims)
            assert _dispatch.counts["kernel"] == before + 1
            assert tuple(result.shape) == expected.shape
            np.testing.assert_array_equal(result.numpy(), expected)


def test_a_broadcast_mask_and_a_numpy_mask():
    array = _rng(9).standard_normal((5, 6))
    keep = np.array([True, False, True, True, False, True])
    expected = smk.log_softmax(array, where=keep)
    x = torch.from_numpy(array)
    np.testing.assert_array_equal(
        smk.log_softmax(x, where=torch.from_numpy(keep)).numpy(), expected
    )
    np.testing.assert_array_equal(smk.log_softmax(x, where=keep).numpy(), expected)


# ---- what the torch entry does not take ----


@pytest.mark.filterwarnings("ignore:torch.asarray:UserWarning")
def test_what_falls_through_to_the_generic_path():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    cases = [
        lambda: smk.softmax(torch.tensor([[1, 2, 3]])),  # integers
        lambda: smk.softmax(x, dtype=torch.float64),  # a dtype= that changes it
        lambda: smk.logsumexp(x, b=torch.tensor([1.0, 2.0, 3.0])),
        lambda: smk.logsumexp(x, return_sign=True),
        lambda: smk.softmax(x, temperature=torch.tensor([[2.0]], requires_grad=True)),
    ]
    for case in cases:
        before = _dispatch.counts["generic"]
        case()
        assert _dispatch.counts["generic"] == before + 1


def test_float64_differences_beyond_the_range_with_a_temperature_above_one():
    largest = float(np.finfo(np.float64).max)
    x = torch.tensor([largest, -largest], dtype=torch.float64)
    with _kernels.generic_only():
        expected = smk.log_softmax(x.numpy(), temperature=2.5)
    np.testing.assert_array_equal(smk.log_softmax(x, temperature=2.5).numpy(), expected)


def test_forced_generic_is_respected():
    x = torch.tensor([1.0, 2.0])
    before = _dispatch.counts["kernel"]
    with _kernels.generic_only():
        smk.softmax(x)
        smk.logsumexp(x)
    assert _dispatch.counts["kernel"] == before


# ---- threads ----


def test_threads_follow_torch_unless_set(monkeypatch):
    previous = torch.get_num_threads()
    monkeypatch.setattr(_threads, "_explicit", [False])
    try:
        torch.set_num_threads(1)
        assert _bridge.threads() == 1
        with smk.num_threads(3):
            assert _bridge.threads() == 3
        assert _bridge.threads() == 1 and not _threads._explicit[0]
        smk.set_num_threads(smk.get_num_threads())
        assert _threads._explicit[0]
    finally:
        torch.set_num_threads(previous)


def test_importing_softmaxkit_does_not_import_torch():
    code = (
        "import sys, softmaxkit as smk; smk.softmax([1.0, 2.0]); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_misaligned_tensors_are_read_and_written_through_aligned_copies():
    values = _rng(10).standard_normal(10).astype(np.float32)
    storage = bytearray(4 * 10 + 1)
    x = torch.frombuffer(storage, dtype=torch.float32, count=10, offset=1)
    x.copy_(torch.from_numpy(values))
    if x.numpy().flags.aligned:
        pytest.skip("this platform aligns the view anyway")
    for function in FUNCTIONS:
        np.testing.assert_array_equal(function(x).numpy(), function(values))
    out_storage = bytearray(4 * 10 + 1)
    out = torch.frombuffer(out_storage, dtype=torch.float32, count=10, offset=1)
    assert smk.softmax(x, out=out) is out
    np.testing.assert_array_equal(out.numpy(), smk.softmax(values))
