"""Helpers of ``bench_softmax.py``: ONNX Runtime as a peer, softmaxkit's other
instruction sets in worker processes, and the ulp error of each result.

``SOFTMAXKIT_SIMD`` is read when the extension is imported, so each other variant of
the kernels (``avx2`` beside ``avx512``, ...) runs in a worker process of its own, which
times the calls of each row of the table when the main process asks (right after the
main process has timed the row), on the same input (rebuilt from the same seed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
THREADS = 2


def make_input(dtype, shape):
    """The benchmark's input for (dtype, shape): ``standard_normal * 4``, its own seed."""
    seed = int(np.prod(shape)) % 100_003 + 7 * len(shape) + int(np.dtype(dtype) == np.float64)
    return (np.random.default_rng(seed).standard_normal(shape) * 4).astype(dtype)


# ---- ONNX Runtime ----


def onnxruntime_version():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def onnxruntime_call(op, x, axis):
    """A function running op on x with ONNX Runtime (CPU, THREADS intra-op threads):
    the ``Softmax`` / ``LogSoftmax`` / ``ReduceLogSumExp`` operators of opset 13; None
    where ONNX Runtime is not installed."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    elem = TensorProto.FLOAT if x.dtype == np.float32 else TensorProto.DOUBLE
    if op == "logsumexp":
        node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[axis], keepdims=0)
    else:
        name = {"softmax": "Softmax", "log_softmax": "LogSoftmax"}[op]
        node = helper.make_node(name, ["x"], ["y"], axis=axis)
    graph = helper.make_graph(
        [node],
        "peer",
        [helper.make_tensor_value_info("x", elem, None)],
        [helper.make_tensor_value_info("y", elem, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = {"x": x}
    return lambda: session.run(None, feed)[0]


# ---- the ulp error of a result ----


def reference(op, x, axis):
    """The exact result rounded to long double (x86: 64-bit significand), with the
    log-normalizer as log1p((count - 1) + rest): log(total) would lose the relative
    precision of a normalizer near 0 (a row dominated by its maximum)."""
    xl = x.astype(np.longdouble)
    top = xl.max(axis=axis, keepdims=True)
    shifted = xl - top
    at_top = shifted == 0
    count = at_top.sum(axis=axis, keepdims=True).astype(np.longdouble)
    rest = np.where(at_top, 0, np.exp(shifted)).sum(axis=axis, keepdims=True)
    log_total = np.log1p((count - 1) + rest)
    if op == "softmax":
        return np.exp(shifted - log_total)
    if op == "log_softmax":
        return shifted - log_total
    return np.squeeze(top + log_total, axis)


def max_ulp(computed, exact, dtype, floor=None):
    """max |computed - exact| in units of the last place of exact in dtype (or of floor,
    where that is larger: logsumexp's unit is that of max(|result|, |max x|), the mixed
    bound's, since max x + log(sum) may cancel)."""
    computed = np.asarray(computed).astype(np.longdouble)
    magnitude = np.abs(exact)
    if floor is not None:
        magnitude = np.maximum(magnitude, np.abs(floor))
    spacing = np.spacing(magnitude.astype(dtype)).astype(np.longdouble)
    spacing = np.maximum(spacing, np.finfo(dtype).smallest_subnormal)
    return float(np.max(np.abs(computed - exact) / spacing))


# ---- the other instruction sets, in worker processes ----


class Variant:
    """A worker process importing softmaxkit with SOFTMAXKIT_SIMD=name."""

    def __init__(self, name):
        env = dict(os.environ, SOFTMAXKIT_SIMD=name)
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.simd = json.loads(self.process.stdout.readline())["simd"]

    def time(self, op, dtype, shape, axis, budget):
        """(allocating, out=) median times of softmaxkit's op on the row's input."""
        request = {"op": op, "dtype": np.dtype(dtype).name, "shape": list(shape),
                   "axis": axis, "budget": budget}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return answer["alloc"], answer["out"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def other_variants():
    """Workers for the SIMD variants of this build, other than the one in use, that this
    CPU runs (a worker whose request fell back to another variant is dropped)."""
    from softmaxkit import _kernels

    if not _kernels.kernel_available():
        return []
    workers = []
    for name in _kernels._kernel.simd_built():
        if name in (_kernels.simd(), "baseline"):
            continue  # the portable build is timed by compare_kernel_builds.py
        worker = Variant(name)
        if worker.simd == name:
            workers.append(worker)
        else:
            worker.close()
    return workers


def _worker():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import softmaxkit as smk
        from softmaxkit import _kernels

    print(json.dumps({"simd": _kernels.simd()}), flush=True)
    inputs = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["dtype"], tuple(request["shape"]))
        if key not in inputs:
            inputs.clear()
            inputs[key] = make_input(np.dtype(request["dtype"]), key[1])
        alloc, with_out = _time_row(smk, inputs[key], request)
        print(json.dumps({"alloc": alloc, "out": with_out}), flush=True)


def _time_row(smk, x, request):
    from bench_softmax import median_time

    fn, axis, budget = getattr(smk, request["op"]), request["axis"], request["budget"]
    out = fn(x, axis=axis)
    alloc, _ = median_time(lambda: fn(x, axis=axis), x.size, budget)
    with_out, _ = median_time(lambda: fn(x, axis=axis, out=out), x.size, budget)
    return alloc, with_out


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    sys.path.insert(0, HERE)
    _worker()
