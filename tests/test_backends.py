"""Same library and device out as in; autograd through PyTorch, JAX and TensorFlow."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import softmaxkit as smk

FUNCTIONS = [smk.softmax, smk.log_softmax, smk.logsumexp]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_same_library_and_dtype(backend, function):
    x = backend.asarray(np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=np.float32))
    result = function(x)
    assert backend.is_native(result)
    assert "float32" in str(result.dtype)
    expected = function(np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]))
    np.testing.assert_allclose(backend.to_numpy(result), expected, rtol=2e-7)


def test_lists_and_scalars_give_numpy():
    assert isinstance(smk.softmax([1, 2, 3]), np.ndarray)
    assert smk.softmax([1, 2, 3]).dtype == np.float64
    assert float(smk.logsumexp(3)) == 3.0


def test_integers_are_converted_before_arithmetic(backend):
    x = backend.asarray(np.array([-100, 100], dtype=np.int8))
    p = backend.to_numpy(smk.softmax(x))
    # exp(-200) / (1 + exp(-200)) in the library's default float (0 in float32), no
    # wrap-around of -100 - 100 in int8.
    with np.errstate(under="ignore"):
        expected = np.array([math.exp(-200), 1.0]).astype(p.dtype)
    np.testing.assert_allclose(p, expected, rtol=1e-6)
    bools = backend.asarray(np.array([True, False]))
    np.testing.assert_allclose(
        backend.to_numpy(smk.softmax(bools)), [math.e / (1 + math.e), 1 / (1 + math.e)], rtol=1e-6
    )


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
def test_half_precision(library, dtype_name):
    n = 128256
    if library == "numpy":
        if dtype_name == "bfloat16":
            ml_dtypes = pytest.importorskip("ml_dtypes")
            x = np.zeros(n, dtype=ml_dtypes.bfloat16)
        else:
            x = np.zeros(n, dtype=np.float16)
        to_float = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    elif library == "torch":
        torch = pytest.importorskip("torch")
        x = torch.zeros(n, dtype=getattr(torch, dtype_name))
        to_float = lambda a: a.double().numpy()  # noqa: E731
    else:
        jnp = pytest.importorskip("jax.numpy")
        x = jnp.zeros(n, dtype=getattr(jnp, dtype_name))
        to_float = lambda a: np.asarray(a.astype(jnp.float32), dtype=np.float64)  # noqa: E731
    p = smk.softmax(x)
    lp = smk.log_softmax(x)
    assert str(p.dtype).endswith(dtype_name) and str(lp.dtype).endswith(dtype_name)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    half = np.float16 if dtype_name == "float16" else ml_dtypes.bfloat16
    # Correctly rounded: 1/128256 is subnormal in float16 (SciPy and JAX give 0 there).
    np.testing.assert_array_equal(to_float(p), float(np.asarray(1 / n).astype(half)))
    np.testing.assert_array_equal(to_float(lp), float(np.asarray(-math.log(n)).astype(half)))


def test_dtype_argument():
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    assert smk.softmax(x, dtype=np.float64).dtype == np.float64
    assert smk.softmax(x, dtype="float64").dtype == np.float64
    assert smk.logsumexp(np.array([1, 2]), dtype=np.float32).dtype == np.float32
    torch = pytest.importorskip("torch")
    assert smk.softmax(torch.tensor([1.0, 2.0]), dtype=torch.float64).dtype == torch.float64


def test_dask_stays_lazy():
    da = pytest.importorskip("dask.array")
    import dask

    x = da.random.default_rng(0).standard_normal((6, 8), chunks=(3, 4))

    def refuse(*args, **kwargs):
        raise AssertionError("computed eagerly")

    with dask.config.set(scheduler=refuse):
        p = smk.softmax(x, axis=0, where=x > -1.0, temperature=0.5)
        lp = smk.log_softmax(x, axis=(0, 1))
        lse = smk.logsumexp(x, axis=-1)
    assert isinstance(p, da.Array) and isinstance(lp, da.Array) and isinstance(lse, da.Array)
    xn = x.compute()
    expected = np.where(xn > -1, np.exp(xn / 0.5), 0)
    np.testing.assert_allclose(p.compute(), expected / expected.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(lse.compute(), np.log(np.exp(xn).sum(axis=-1)), rtol=1e-13)


def _torch_grad(function, x, weights, reference):
    ours = x.clone().requires_grad_(True)
    theirs = x.clone().requires_grad_(True)
    (function(ours) * weights).sum().backward()
    (reference(theirs) * weights).sum().backward()
    return ours.grad, theirs.grad


def test_torch_autograd_matches_torch():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1.0, 3.0, 2.0, 2.0], [0.0, -1.0, 5.0, 5.0]], dtype=torch.float64)
    weights = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64)
    pairs = [
        (smk.softmax, lambda t: torch.softmax(t, -1)),
        (smk.log_softmax, lambda t: torch.log_softmax(t, -1)),
        (lambda t: smk.softmax(t, temperature=0.7), lambda t: torch.softmax(t / 0.7, -1)),
    ]
    for ours, theirs in pairs:
        got, expected = _torch_grad(ours, x, weights, theirs)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    ours = x.clone().requires_grad_(True)
    theirs = x.clone().requires_grad_(True)
    smk.logsumexp(ours).sum().backward()
    torch.logsumexp(theirs, -1).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-12, atol=1e-14)


def test_torch_gradient_is_finite_at_edges():
    torch = pytest.importorskip("torch")
    inf = math.inf
    x = torch.tensor([[-inf, -inf, -inf], [0.0, -inf, 1.0], [inf, 1.0, 2.0]], requires_grad=True)
    keep = torch.tensor([[True, True, True], [True, True, True], [True, True, False]])
    for function in FUNCTIONS:
        x.grad = None
        out = function(x, where=keep)
        torch.where(torch.isfinite(out), out, 0.0).sum().backward()
        assert torch.all(torch.isfinite(x.grad)), function.__name__
    x.grad = None
    smk.softmax(x, where=torch.zeros(3, 3, dtype=torch.bool)).sum().backward()
    assert torch.all(x.grad == 0)


def test_jax_autograd_matches_jax():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x = jnp.array([[1.0, 3.0, 2.0, 2.0], [0.0, -1.0, 5.0, 5.0]])
    weights = jnp.array([0.3, -1.0, 2.0, 0.5])
    for ours, theirs in (
        (smk.softmax, jax.nn.softmax),
        (smk.log_softmax, jax.nn.log_softmax),
    ):
        got = jax.grad(lambda t, f=ours: jnp.sum(f(t) * weights))(x)
        expected = jax.grad(lambda t, f=theirs: jnp.sum(f(t) * weights))(x)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    got = jax.grad(lambda t: jnp.sum(smk.logsumexp(t)))(x)
    expected = jax.grad(lambda t: jnp.sum(jax.nn.logsumexp(t, axis=-1)))(x)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # Under jit, and at an all -inf row, the gradient is finite.
    edge = jnp.array([[-jnp.inf, -jnp.inf], [0.0, 1.0]])
    grad = jax.jit(jax.grad(lambda t: jnp.sum(smk.softmax(t) * jnp.array([1.0, 2.0]))))(edge)
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_tensorflow_autograd_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    x = tf.Variable([[1.0, 3.0, 2.0, 2.0], [0.0, -1.0, 5.0, 5.0]], dtype=tf.float64)
    weights = tf.constant([0.3, -1.0, 2.0, 0.5], dtype=tf.float64)
    for ours, theirs in ((smk.softmax, tf.nn.softmax), (smk.log_softmax, tf.nn.log_softmax)):
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(ours(x) * weights)
        got = tape.gradient(value, x)
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(theirs(x) * weights)
        expected = tape.gradient(value, x)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12, atol=1e-14)
    edge = tf.Variable([[-math.inf, -math.inf], [0.0, 1.0]], dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(smk.softmax(edge) * tf.constant([1.0, 2.0], dtype=tf.float64))
    assert np.all(np.isfinite(tape.gradient(value, edge).numpy()))


def test_torch_cuda_stays_on_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = torch.randn(4, 1000, device="cuda", dtype=torch.float32)
    for function in FUNCTIONS:
        assert function(x).device == x.device
    np.testing.assert_allclose(
        smk.softmax(x).cpu().numpy(), torch.softmax(x.double(), -1).cpu().numpy(), rtol=3e-7
    )


def test_import_touches_no_optional_library():
    code = (
        "import sys, softmaxkit; "
        "heavy = {'torch', 'jax', 'tensorflow', 'dask', 'matplotlib', 'scipy', 'cupy', "
        "'ml_dtypes', 'rich', 'tqdm', 'zarr', 'mpmath'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"


def test_torch_cuda_edges_and_autograd():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    inf = math.inf
    x = torch.tensor(
        [[-inf, -inf, -inf], [inf, 0.0, inf], [700.0, -5e-14, 1.0]],
        dtype=torch.float64,
        device="cuda",
        requires_grad=True,
    )
    p = smk.softmax(x)
    assert p.device == x.device
    expected = [[0, 0, 0], [0.5, 0, 0.5]]
    np.testing.assert_array_equal(p[:2].detach().cpu().numpy(), expected)
    (p * torch.arange(3.0, device="cuda", dtype=torch.float64)).sum().backward()
    assert torch.all(torch.isfinite(x.grad))
    half = torch.zeros(128256, dtype=torch.float16, device="cuda")
    assert smk.softmax(half).dtype == torch.float16
    assert float(smk.log_softmax(half)[0]) == pytest.approx(-math.log(128256), rel=2**-10)


def test_cupy_same_library_and_device():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA device")
    except Exception:
        pytest.skip("no CUDA device")
    x = cupy.asarray([[1.0, 3.0, 2.0], [-math.inf, -math.inf, -math.inf]])
    for function in FUNCTIONS:
        result = function(x)
        assert isinstance(result, cupy.ndarray)
    np.testing.assert_allclose(
        cupy.asnumpy(smk.softmax(x)),
        [[0.09003057317038046, 0.6652409557748219, 0.24472847105479764], [0, 0, 0]],
        rtol=1e-15,
    )


def test_jax_on_its_default_device():
    jnp = pytest.importorskip("jax.numpy")

    x = jnp.asarray([[1.0, 3.0, 2.0], [-jnp.inf, -jnp.inf, -jnp.inf]], dtype=jnp.float32)
    p = smk.softmax(x)
    assert p.devices() == x.devices()
    np.testing.assert_allclose(
        np.asarray(p), [[0.09003057, 0.66524096, 0.24472847], [0, 0, 0]], rtol=3e-7
    )
