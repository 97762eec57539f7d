"""The NumPy road of the class losses: blocks of rows, so that no temporary has the
size of the logits, and the kernel's fused block for the common cross-entropy call."""

from __future__ import annotations

import math

import numpy as np

from .. import _kernels
from ._checks import _Targets
from ._class_loss import _block
from ._rows import _index_row_weight, _nonzero_times, _scale_rows, _times
from ._softcap import _softcapped_lazily, _SoftcapWorkspace

# Rows per block of the NumPy path: about 2**20 entries, so that the temporaries of a
# block stay a few tens of MB while each call is long enough to amortise its overhead.
_BLOCK_ENTRIES = 1 << 20
_FAST_BLOCK_ENTRIES = 1 << 24


def _run_numpy_blocks(loss, scale, common):
    """The NumPy path: blocks of rows, so that no temporary has the size of the logits."""
    values = loss.values
    batch_shape = tuple(values.shape[:-1])
    n_classes = values.shape[-1]
    n_rows = math.prod(batch_shape)
    flat = values.reshape(n_rows, n_classes)
    keep = None if loss.keep is None else np.broadcast_to(loss.keep, values.shape)
    if keep is not None and all(stride == 0 for stride in keep.strides[:-1]):
        # One mask for every row (the usual per-class mask): no copy of the logits' size.
        keep = keep[(0,) * (keep.ndim - 1)]
        keep_rows = False
    else:
        keep = None if keep is None else keep.reshape(n_rows, n_classes)
        keep_rows = keep is not None
    temperature = loss.temperature
    if not isinstance(temperature, float):
        temperature = np.broadcast_to(temperature, batch_shape + (1,)).reshape(n_rows, 1)
    if loss.targets.is_index:
        target = loss.targets.array.reshape(n_rows)
    else:
        target = loss.targets.array.reshape(n_rows, n_classes)
    row_loss = np.empty(n_rows, dtype=loss.plan.work)
    grad = None
    if common["want_grad"]:
        grad = np.empty((n_rows, n_classes), dtype=loss.plan.result)
    step = max(1, _BLOCK_ENTRIES // max(n_classes, 1))
    fast = _fast_path_applies(loss, temperature, n_classes, common)
    if fast and common["softcap"] is None:
        # The fused kernel writes the gradient itself (or, for the loss alone, nothing
        # but two values per row), with temporaries of one value per row: larger
        # blocks, fewer calls (each starts its threads).
        step = max(1, _FAST_BLOCK_ENTRIES // max(n_classes, 1))
    workspace = None
    if common["softcap"] is not None and loss.plan.result == np.float32 and n_rows:
        workspace = _SoftcapWorkspace((min(step, n_rows), n_classes))
    for start in range(0, n_rows, step):
        rows = slice(start, min(start + step, n_rows))
        block_targets = _Targets(target[rows], loss.targets.is_index)
        block_out = None if grad is None else grad[rows]
        if fast:
            block_loss = _fast_block(
                loss,
                flat[rows],
                target[rows],
                temperature,
                scale,
                out=block_out,
                z_loss=common["z_loss"],
                softcap=common["softcap"],
                want_grad=grad is not None,
                workspace=workspace,
            )
            if block_loss is not NotImplemented:
                row_loss[rows] = block_loss
                continue
            fast = False  # the kernel does not take these rows: the general path for all
        block_loss, _ = _block(
            loss,
            flat[rows],
            block_targets,
            keep[rows] if keep_rows else keep,
            temperature if isinstance(temperature, float) else temperature[rows],
            scale,
            out=block_out,
            workspace=workspace,
            **common,
        )
        row_loss[rows] = block_loss
    row_loss = row_loss.reshape(batch_shape)
    if grad is not None:
        grad = grad.reshape(batch_shape + (n_classes,))
    return row_loss, grad


def _fast_path_applies(loss, temperature, n_classes, common):
    """Whether the rows can take :func:`_fast_block`: the common cross-entropy call.

    Class indices, a positive finite scalar temperature, no mask, no label smoothing
    with class weights, float32 or float64 logits (or integer ones, which become
    float64). Everything else (and every row the kernel reports as not finite) takes
    the general path, which defines the semantics.
    """
    return (
        common["normalize"]
        and loss.targets.is_index
        and loss.keep is None
        and (loss.smoothing == 0.0 or loss.weight is None)
        and isinstance(temperature, float)
        and 0.0 < temperature < math.inf
        and n_classes > 0
        and loss.plan.result in (np.float32, np.float64)
        and (loss.values.dtype == loss.plan.result or loss.values.dtype.kind in "biu")
    )


# The largest row gain of the fast path: the float32 kernel writes NaN where its gain
# exceeds about 2**64, and below this bound no entry of the gradient (at most the gain)
# overflows. Gains that large come from temperatures far below 2**-60: the general
# path, which keeps 0 * inf out, computes those blocks.
_LARGEST_FAST_GAIN = 2.0**60


def _fast_gain(gain):
    return bool(np.all(np.abs(gain) <= _LARGEST_FAST_GAIN))


def _smoothing_terms(values, maxima, temperature, smoothing):
    """Each row's ``smoothing * mean(max - x_c) / T`` in float64 (``inf`` for a row with
    an entry -inf, where fewer classes take part: the general path computes those).

    A row spread wider than the largest float has gaps ``max - x_c`` that overflow where
    the term need not (``smoothing`` and the mean make it smaller): its term is
    ``mean(max/2 - x_c/2) * (2 smoothing / T)``, each part a float.
    """
    n_classes = values.shape[1]
    terms = _summed_gaps(values, maxima) * (smoothing / (n_classes * temperature))
    wide = np.isinf(terms) & np.isfinite(maxima)
    if wide.any():
        rows = np.flatnonzero(wide)
        block = values[rows].astype(np.float64)
        finite = np.isfinite(block).all(axis=1)
        rows, block = rows[finite], block[finite]
        halves = ((0.5 * maxima[rows, None] - 0.5 * block) / n_classes).sum(axis=1)
        terms[rows] = halves * (2.0 * smoothing / temperature)
    return terms


def _summed_gaps(values, maxima):
    """Each row's ``sum(max - x_c)`` in float64 (``inf`` for a row with an entry -inf).

    For float32 logits, ``k * max - sum(x)`` with the sum in float64: one pass, off by
    at most about ``log2(k)`` float64 ulps of ``k * (|max| + gaps)``. Rows where that
    bound is not below ``2**-30`` of the gaps (logits large and close together) are
    summed entry by entry, as float64 logits always are (terms of one sign).
    """
    n_classes = values.shape[1]
    if values.dtype == np.float32:
        with np.errstate(over="ignore", invalid="ignore"):
            gaps = n_classes * maxima - values.sum(axis=1, dtype=np.float64)
            bound = (math.log2(n_classes) + 2) * 2.0**-53 * n_classes * (np.abs(maxima) + gaps)
            loose = np.isfinite(gaps) & ~(bound <= 2.0**-30 * gaps)
        if not loose.any():
            return gaps
        rows = np.flatnonzero(loose)
        gaps[rows] = np.subtract(maxima[rows, None], values[rows], dtype=np.float64).sum(axis=1)
        return gaps
    gaps = np.empty(values.shape[0])
    step = max(1, _BLOCK_ENTRIES // n_classes)  # temporaries of a few MB
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, values.shape[0], step):
            rows = slice(start, start + step)
            gaps[rows] = np.subtract(maxima[rows, None], values[rows]).sum(axis=1)
    return gaps


def _fast_block(
    loss, values, target, temperature, scale, *, out, z_loss, softcap, want_grad, workspace
):
    """Row losses of a block of rows, the gradient into ``out``: softmax minus one-hot.

    One kernel run (:func:`softmaxkit._kernels.softmax_stats`) writes the softmax times
    each row's gain into ``out`` (for the loss alone, ``out`` None, it writes nothing)
    and returns each row's maximum ``m`` and log-normalizer
    ``s = log(sum(exp((x - m) / T)))``. The loss ``(m - x_t) / T + s`` is then exact to a
    few units in the last place, a sum of two non-negative terms (no cancellation: a
    confident correct prediction has a tiny positive loss). The gradient
    ``gain * softmax - row_factor * w_t * onehot`` needs one scatter of one entry per
    row (the target's entry is ``gain * expm1(log p_t)``, without cancellation). Label
    smoothing ``eps`` (without class weights) adds ``eps / k`` times the row's sum of
    ``-log p_c = (m - x_c) / T + s``, the gaps ``m - x_c`` summed in float64 (terms of
    one sign: no cancellation), and takes ``eps / k`` off every entry of the gradient.
    Rows the kernel reports as not finite (NaN, +inf, every entry -inf), and with
    smoothing rows with an entry -inf (fewer classes take part), are computed again
    by :func:`_block`. Returns NotImplemented without the kernel, and for gains beyond
    ``_LARGEST_FAST_GAIN`` (a temperature near 0).
    """
    work = loss.plan.work
    # loss.xp, not numpy itself: NumPy before 2.0 has no device argument.
    row_weight, safe_target = _index_row_weight(
        loss.xp, target, loss.weight, loss.ignore_index, work, values
    )
    source = values
    if values.dtype != loss.plan.result:
        # Integer logits: the default float first, as in the general path.
        values = values.astype(loss.plan.result)
    row_factor = loss.row_factor(scale, temperature)
    if want_grad and not math.isfinite(row_factor):
        return NotImplemented
    # With z_loss the gain depends on the normalizer: the rows are scaled after the run.
    gain = row_factor * row_weight if want_grad and z_loss == 0.0 else None
    if gain is not None and not _fast_gain(gain):
        return NotImplemented
    capped_derivative = None
    if softcap is not None:
        values, capped_derivative = _softcapped_lazily(
            loss.xp, values, softcap, loss.plan, workspace, want_derivative=want_grad
        )
    stats = _kernels.softmax_stats(values, out, temperature=temperature, gain=gain)
    if stats is NotImplemented:
        return NotImplemented
    n_rows = values.shape[0]
    rows = np.arange(n_rows)
    maxima, log_normalizer = stats[:, 0], stats[:, 1]
    active = row_weight > 0
    smoothing = loss.smoothing
    with np.errstate(over="ignore", invalid="ignore"):
        # Overflow to inf is the honest loss; 0 * inf of inactive rows is replaced below.
        target_logit = values[rows, safe_target].astype(work)
        shifted = maxima - target_logit
        if temperature != 1.0:
            shifted /= temperature
        if temperature > 1.0:
            # m - x_t overflowed where (m - x_t) / T need not: the halves do not overflow.
            over = np.isinf(shifted) & np.isfinite(target_logit)
            if over.any():
                shifted[over] = (0.5 * maxima[over] - 0.5 * target_logit[over]) / (
                    0.5 * temperature
                )
        row_loss = row_weight * (shifted + log_normalizer)
        if smoothing > 0.0:
            # Without class weights the row weight is 1 where the target takes part.
            n_classes = values.shape[1]
            share = smoothing / n_classes
            spread = _smoothing_terms(values, maxima, temperature, smoothing)
            # (1 - eps) * inf is inf, but 0 (eps = 1) where the target term overflowed.
            row_loss = _times(np, 1.0 - smoothing, row_loss)
            row_loss += spread + smoothing * log_normalizer
        if z_loss > 0.0:
            lse = maxima / temperature + log_normalizer
            square = np.square(lse)
            row_loss += z_loss * (row_weight * square)
    row_loss = np.where(active, row_loss, 0.0)
    if want_grad:
        # The target's entry coef_p * p_t - w_t, with p_t - 1 = expm1(log p_t): exact for
        # a confident correct prediction, where p_t * gain - gain would leave the
        # rounding error of the gain.
        log_target = -(shifted + log_normalizer)
        # Ignored rows and rows of weight 0 keep +0 (w * expm1 would be -0).
        target_entry = np.where(active, row_weight * np.expm1(log_target), 0.0)
        if z_loss > 0.0:
            finite_lse = np.where(np.isfinite(lse), lse, 0.0)
            extra = (2.0 * z_loss) * (row_weight * finite_lse)
            # A row factor that underflowed to 0 times an extra that overflowed is 0.
            gain = _times(np, np.float64(row_factor), row_weight + extra)
            if not _fast_gain(gain):
                return NotImplemented
            _scale_rows(out, gain)
            target_entry += _nonzero_times(np, np.exp(log_target), extra)
        if smoothing > 0.0:
            # q = (1 - eps) onehot + eps / k: eps / k off every entry, eps back at the target.
            out -= (np.float64(row_factor) * np.where(active, share, 0.0))[:, None]
            target_entry += np.where(active, smoothing - share, 0.0)
        out[rows, safe_target] = _times(np, np.float64(row_factor), target_entry)
        if capped_derivative is not None:
            capped_derivative.scale(out)
    edge = np.isnan(log_normalizer)
    if smoothing > 0.0:
        edge |= ~np.isfinite(spread)
    if edge.any():
        edge_rows = np.flatnonzero(edge)
        edge_out = None if not want_grad else np.empty_like(out[edge_rows])
        edge_loss, _ = _block(
            loss,
            source[edge_rows],
            _Targets(target[edge_rows], True),
            None,
            temperature,
            scale,
            z_loss=z_loss,
            softcap=softcap,
            want_grad=want_grad,
            out=edge_out,
            normalize=True,
        )
        row_loss[edge_rows] = edge_loss
        if want_grad:
            out[edge_rows] = edge_out
    return row_loss
