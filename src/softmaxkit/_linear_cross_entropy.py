"""Cross-entropy of ``hidden @ weight.T`` without the ``N x V`` logits (the language-model head).

The logits are computed one block (rows x vocabulary entries) at a time. The
forward pass keeps, per row, the mergeable log-sum-exp state ``(max, sum - 1)``
of ``_lib/_online.py`` over the vocabulary blocks, the logit of the target and
(for label smoothing) the sum of the logits; the loss follows from these three
numbers. The gradient recomputes each block and forms ``softmax - target``
there, so memory stays at one block of logits plus the outputs, whatever ``V``.
Written once against the array namespace: NumPy and PyTorch run the same code;
PyTorch gets it as a ``torch.autograd.Function``.
"""

from __future__ import annotations

import numpy as np

from ._lib._autograd import differentiable
from ._lib._dtypes import plan_dtypes
from ._lib._library import Library, library_of
from ._lib._namespace import array_namespace, as_array, device_of, is_numpy_namespace
from ._lib._online import chunk_state, merge_states, state_logsumexp
from ._lib._typing import Array, ArrayLike, Int, Real, Reduction
from ._lib._validation import check_fraction, check_int, check_positive_int, check_reduction
from ._linear_cross_entropy_compiled import compiled_backend, run_compiled
from .losses import _check_linear_head, _check_options, _overflow_is_inf

__all__ = ["linear_cross_entropy"]

_DEFAULT_CHUNK = 4096
_BLOCK_ELEMENTS = 2**20


class _Options:
    __slots__ = (
        "ignore_index",
        "reduction",
        "label_smoothing",
        "z_loss",
        "softcap",
        "chunk_size",
        "chunk_given",
        "row_block",
    )

    def __init__(self, **values):
        for key, value in values.items():
            setattr(self, key, value)


def _blocks(n, step):
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def _logits(xp, hidden, weight, bias, work, softcap):
    """One block of logits in the working dtype (after the soft cap), and ``tanh``."""
    z = xp.matmul(hidden, xp.matrix_transpose(weight))
    if bias is not None:
        z = z + bias
    z = xp.astype(z, work)
    if softcap is None:
        return z, None
    squashed = xp.tanh(z / softcap)
    return softcap * squashed, squashed


def _target_hits(xp, target, start, stop, device):
    columns = xp.reshape(xp.arange(start, stop, dtype=target.dtype, device=device), (1, -1))
    return xp.reshape(target, (-1, 1)) == columns


def _block_state(xp, z):
    """``(max, sum - 1)`` of a block of logits over the vocabulary axis, keepdims.

    The logits are already in the working dtype (float64 for float32 input), so
    the plain ``exp(z - max)`` is accurate far beyond the float32 result; the
    compensated state of the core (several times slower) is used only for blocks
    holding a non-finite logit, where its edge rules are needed.
    """
    maximum = xp.max(z, axis=1, keepdims=True)
    if not bool(xp.all(xp.isfinite(maximum))):
        return chunk_state(xp, z, (1,))
    return maximum, xp.sum(xp.exp(z - maximum), axis=1, keepdims=True) - 1.0


def _target_logits(xp, hidden, weight, bias, target, work, options):
    """The logit of each row's target, from the target's row of ``weight`` alone."""
    safe = xp.where(target == options.ignore_index, xp.zeros_like(target), target)
    rows = xp.take(weight, safe, axis=0)
    z = xp.sum(xp.astype(hidden, work) * xp.astype(rows, work), axis=1)
    if bias is not None:
        z = z + xp.astype(xp.take(bias, safe, axis=0), work)
    if options.softcap is not None:
        z = options.softcap * xp.tanh(z / options.softcap)
    return z


def _row_statistics(xp, hidden, weight, bias, target, work, options):
    """Per row: logsumexp of the logits, the target's logit, and the sum of the logits."""
    n_rows, vocabulary = hidden.shape[0], weight.shape[0]
    device = device_of(xp, hidden)
    lse_parts, target_parts, sum_parts = [], [], []
    for r0, r1 in _blocks(n_rows, options.row_block):
        rows_hidden, rows_target = hidden[r0:r1, ...], target[r0:r1]
        maximum = sum_minus_one = None
        logit_sum = xp.zeros((r1 - r0,), dtype=work, device=device)
        for c0, c1 in _blocks(vocabulary, options.chunk_size):
            bias_block = None if bias is None else bias[c0:c1]
            z, _ = _logits(xp, rows_hidden, weight[c0:c1, ...], bias_block, work, options.softcap)
            block_max, block_sum = _block_state(xp, z)
            if maximum is None:
                maximum, sum_minus_one = block_max, block_sum
            else:
                maximum, sum_minus_one = merge_states(
                    xp,
                    xp.concat([maximum, block_max], axis=1),
                    xp.concat([sum_minus_one, block_sum], axis=1),
                    (1,),
                )
            if options.label_smoothing:
                logit_sum = logit_sum + xp.sum(z, axis=1)
        lse_parts.append(state_logsumexp(xp, maximum, sum_minus_one)[:, 0])
        target_parts.append(
            _target_logits(xp, rows_hidden, weight, bias, rows_target, work, options)
        )
        sum_parts.append(logit_sum)
    return xp.concat(lse_parts), xp.concat(target_parts), xp.concat(sum_parts)


def _row_losses(xp, hidden, weight, bias, target, work, options):
    """The loss of every row (0 where ignored), ``logsumexp`` per row, and the valid mask."""
    lse, target_logit, logit_sum = _row_statistics(xp, hidden, weight, bias, target, work, options)
    vocabulary = weight.shape[0]
    smoothing = options.label_smoothing
    loss = (1.0 - smoothing) * (lse - target_logit)
    if smoothing:
        loss = loss + smoothing * (lse - logit_sum / vocabulary)
    if options.z_loss:
        loss = loss + options.z_loss * (lse * lse)
    valid = target != options.ignore_index
    return xp.where(valid, loss, xp.zeros_like(loss)), lse, valid


def _reduce(xp, row_loss, valid, reduction, work):
    if reduction == "none":
        return row_loss
    total = xp.sum(row_loss)
    if reduction == "sum":
        return total
    count = xp.sum(xp.astype(valid, work))
    # No valid row: the mean is 0 (PyTorch gives 0 / 0 = NaN).
    return total / xp.where(count == 0, xp.ones_like(count), count)


def _row_weights(xp, valid, reduction, cotangent, work):
    """d(reduced loss) / d(row loss), times the incoming cotangent."""
    weights = xp.astype(valid, work)
    if reduction == "mean":
        count = xp.sum(weights)
        weights = weights / xp.where(count == 0, xp.ones_like(count), count)
    return weights * cotangent


def _gradients(xp, hidden, weight, bias, target, lse, row_weights, work, options):
    """Gradients with respect to hidden, weight and bias, for per-row weights of the loss."""
    n_rows, features = hidden.shape
    vocabulary = weight.shape[0]
    device = device_of(xp, hidden)
    smoothing = options.label_smoothing
    row_blocks = _blocks(n_rows, options.row_block)
    # Gathered block by block, without item assignment (JAX arrays have none).
    grad_hidden_blocks = [
        xp.zeros((r1 - r0, features), dtype=work, device=device) for r0, r1 in row_blocks
    ]
    grad_weight_blocks, grad_bias_blocks = [], []
    lse_column = xp.reshape(lse, (-1, 1))
    scale = xp.reshape(row_weights, (-1, 1))
    if options.z_loss:
        scale_p = scale * (1.0 + 2.0 * options.z_loss * lse_column)
    else:
        scale_p = scale
    finite_lse = xp.where(xp.isfinite(lse_column), lse_column, xp.zeros_like(lse_column))
    for c0, c1 in _blocks(vocabulary, options.chunk_size):
        weight_block = weight[c0:c1, ...]
        grad_weight_block = xp.zeros((c1 - c0, features), dtype=work, device=device)
        grad_bias_block = xp.zeros((c1 - c0,), dtype=work, device=device)
        for i, (r0, r1) in enumerate(row_blocks):
            rows_hidden = hidden[r0:r1, ...]
            bias_block = None if bias is None else bias[c0:c1]
            z, squashed = _logits(xp, rows_hidden, weight_block, bias_block, work, options.softcap)
            probabilities = xp.exp(z - finite_lse[r0:r1, ...])
            hits = xp.astype(_target_hits(xp, target[r0:r1], c0, c1, device), work)
            g = probabilities * scale_p[r0:r1, ...] - scale[r0:r1, ...] * (
                (1.0 - smoothing) * hits + smoothing / vocabulary
            )
            g = xp.where(scale[r0:r1, ...] == 0, xp.zeros_like(g), g)
            if squashed is not None:
                g = g * (1.0 - squashed * squashed)
            g_in = xp.astype(g, hidden.dtype)
            grad_hidden_blocks[i] = grad_hidden_blocks[i] + xp.astype(
                xp.matmul(g_in, weight_block), work
            )
            grad_weight_block = grad_weight_block + xp.astype(
                xp.matmul(xp.matrix_transpose(g_in), rows_hidden), work
            )
            grad_bias_block = grad_bias_block + xp.sum(g, axis=0)
        grad_weight_blocks.append(xp.astype(grad_weight_block, weight.dtype))
        grad_bias_blocks.append(grad_bias_block)
    grad_bias = None
    if bias is not None:
        grad_bias = xp.astype(xp.concat(grad_bias_blocks), bias.dtype)
    grad_hidden = _joined(xp, grad_hidden_blocks, (n_rows, features), work, device)
    grad_weight = _joined(xp, grad_weight_blocks, tuple(weight.shape), weight.dtype, device)
    return xp.astype(grad_hidden, hidden.dtype), grad_weight, grad_bias


def _joined(xp, blocks, shape, dtype, device):
    """The blocks of rows as one array of ``shape`` (zeros when there is no block)."""
    if not blocks:
        return xp.zeros(shape, dtype=dtype, device=device)
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=0)


def _options(
    hidden_rows, vocabulary, ignore_index, reduction, label_smoothing, z_loss, softcap, chunk_size
):
    chunk_given = chunk_size is not None
    if chunk_size is None:
        chunk_size = min(max(vocabulary, 1), _DEFAULT_CHUNK)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    ignore_index = check_int("ignore_index", ignore_index)
    check_reduction(reduction)
    check_fraction("label_smoothing", label_smoothing, allow_zero=True)
    _check_options(z_loss, softcap)
    return _Options(
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        chunk_size=int(chunk_size),
        chunk_given=chunk_given,
        row_block=max(1, min(max(hidden_rows, 1), _BLOCK_ELEMENTS // int(chunk_size))),
    )


@_overflow_is_inf
def linear_cross_entropy(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike,
    /,
    *,
    bias: ArrayLike | None = None,
    ignore_index: Int = -100,
    reduction: Reduction = "mean",
    label_smoothing: Real = 0.0,
    z_loss: Real = 0.0,
    softcap: Real | None = None,
    chunk_size: Int | None = None,
    return_grad: bool = False,
) -> Array | tuple[Array, tuple[Array, Array]]:
    r"""Cross-entropy of the logits ``hidden @ weight.T + bias``, never materialising them.

    The result equals ``torch.nn.functional.cross_entropy(logits, target, ...)`` on
    the materialised ``N x V`` logits (with the extras below), while the memory
    held at once is one block of logits (``rows x chunk_size``) beside the inputs
    and the gradients.

    Parameters
    ----------
    hidden : array, shape (..., D)
        Hidden states (NumPy or PyTorch).
    weight : array, shape (V, D)
        The output embedding (one row per class).
    target : array of int, shape (...)
        Class index of every row, or ``ignore_index``.
    bias : array, shape (V,), optional
        Added to the logits.
    ignore_index : int, default -100
        Rows with this target take no part (loss 0, gradient 0, not counted in
        the mean).
    reduction : {"mean", "sum", "none"}, default "mean"
        As in PyTorch; the mean over no valid row is 0 (PyTorch gives NaN).
    label_smoothing : float in [0, 1], default 0
        As in PyTorch: ``(1 - e) * nll + e * mean over classes of -log p``.
    z_loss : float, default 0
        Adds ``z_loss * logsumexp(logits)**2`` per valid row (PaLM's auxiliary loss).
    softcap : float, optional
        Logits become ``softcap * tanh(logits / softcap)`` (Gemma 2) before the loss.
    chunk_size : int, optional
        Vocabulary entries per block of logits. By default, for NumPy and CPU
        PyTorch float32/float64 input, the whole vocabulary (chunks of 2**18 beyond
        2**20 classes) in blocks of about 2**22 logits and at most 1/16 of the rows;
        elsewhere ``min(V, 4096)`` in blocks of about 2**20 logits. A chunk smaller
        than ``V`` bounds the memory further, at the cost of recomputing the logits
        for the gradient.
    return_grad : bool, default False
        Also return ``(grad_hidden, grad_weight)`` (and ``grad_bias`` as a third
        entry when ``bias`` is given) of the returned loss; for
        ``reduction="none"``, of the sum of the rows' losses. For PyTorch tensors
        the gradient also flows through autograd.

    Returns
    -------
    loss : array
        A scalar (``"mean"``, ``"sum"``) or the loss of every row (``"none"``), in
        ``hidden``'s dtype.
    grads : tuple of arrays
        Only with ``return_grad=True``.

    Notes
    -----
    Matrix products run in the input dtype (as PyTorch does). For NumPy and CPU
    PyTorch float32/float64 input each block of logits goes through the compiled
    kernel in that dtype: the softmax (times the row's gradient factor) is written in
    place, and each row's maximum and log-normalizer come back in float64, from which
    the loss follows as a sum of non-negative terms. With the whole vocabulary in one
    block the gradient ``dlogits = softmax - onehot`` (times the weights of the
    reduction) is formed in the same buffer and the forward and backward take three
    matrix products; ``grad_hidden = dlogits @ weight`` and ``grad_weight +=
    dlogits.T @ hidden`` accumulate in the input dtype (float32 sums for float32, as
    on the materialised logits). Rows with a NaN or ``+inf`` logit (an overflowing
    product) or only ``-inf`` ones follow :func:`~softmaxkit.cross_entropy` on their
    own logits. Other inputs (CUDA, JAX, half precision) take a portable road in
    float64 with the core's compensated state across the vocabulary blocks.

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> hidden = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> weight = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    >>> target = np.array([0, 1, -100])
    >>> round(float(smk.linear_cross_entropy(hidden, weight, target, chunk_size=2)), 12)
    0.583114820062
    >>> loss, (grad_hidden, grad_weight) = smk.linear_cross_entropy(
    ...     hidden, weight, target, return_grad=True)
    >>> grad_weight.shape
    (3, 2)
    """
    xp = array_namespace(hidden, weight, target, bias)
    hidden, weight, target = (as_array(xp, a) for a in (hidden, weight, target))
    if bias is not None:
        bias = as_array(xp, bias)
    batch_shape = tuple(hidden.shape[:-1]) if hidden.ndim else ()
    options = _options(
        int(np.prod(batch_shape, dtype=np.int64)),
        int(weight.shape[0]) if weight.ndim == 2 else 0,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        chunk_size,
    )
    # Class indices of any integer dtype become the library's index dtype (PyTorch
    # indexes with int64 only; uint8 156 would equal -100 in a comparison there).
    target = _check_linear_head(xp, hidden, weight, bias, target, options.ignore_index)
    plan = plan_dtypes(xp, hidden, None)
    work = plan.work
    hidden_2d = xp.reshape(hidden, (-1, hidden.shape[-1]))
    target_1d = xp.reshape(target, (-1,))
    # Only a differing dtype is converted: a copy of weight would cost V x D.
    if weight.dtype != hidden.dtype:
        weight = xp.astype(weight, hidden.dtype)
    if bias is not None and bias.dtype != hidden.dtype:
        bias = xp.astype(bias, hidden.dtype)

    if weight.shape[0] > 0:
        backend = compiled_backend(hidden_2d, weight, bias)
        if backend is not None:
            result = run_compiled(backend, hidden_2d, weight, bias, target_1d, options, return_grad)
            if options.reduction == "none":
                result = (xp.reshape(result[0], batch_shape),) + result[1:]
            loss = result[0]
            if not return_grad:
                return loss
            grads = (xp.reshape(result[1], tuple(hidden.shape)), result[2])
            return loss, grads + (() if bias is None else (result[3],))

    if library_of(hidden) is Library.TORCH and not return_grad:
        # The loss in the forward pass; the backward pass recomputes the logits block by
        # block (torch would otherwise keep every block's graph: the N x V logits).
        def forward(hidden, weight, bias):
            row_loss, lse, valid = _row_losses(xp, hidden, weight, bias, target_1d, work, options)
            loss = xp.astype(_reduce(xp, row_loss, valid, options.reduction, work), plan.result)
            return loss, (hidden, weight, bias, lse, valid)

        def backward(saved, grad_loss):
            hidden, weight, bias, lse, valid = saved
            weights = _row_weights(xp, valid, options.reduction, xp.astype(grad_loss, work), work)
            return _gradients(xp, hidden, weight, bias, target_1d, lse, weights, work, options)

        loss = differentiable(forward, backward, hidden_2d, weight, bias)
        return xp.reshape(loss, batch_shape) if options.reduction == "none" else loss

    row_loss, lse, valid = _row_losses(xp, hidden_2d, weight, bias, target_1d, work, options)
    loss = xp.astype(_reduce(xp, row_loss, valid, options.reduction, work), plan.result)
    if options.reduction == "none":
        loss = xp.reshape(loss, batch_shape)
    if is_numpy_namespace(xp):
        loss = np.asarray(loss)
    if not return_grad:
        return loss
    ones = xp.ones((), dtype=work, device=device_of(xp, hidden))
    weights = _row_weights(xp, valid, options.reduction, ones, work)
    grad_hidden, grad_weight, grad_bias = _gradients(
        xp, hidden_2d, weight, bias, target_1d, lse, weights, work, options
    )
    grads = (xp.reshape(grad_hidden, tuple(hidden.shape)), grad_weight)
    if bias is not None:
        grads = grads + (grad_bias,)
    return loss, grads
