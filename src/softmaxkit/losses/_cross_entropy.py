"""The public class losses: :func:`cross_entropy` and :func:`nll_loss`."""

from __future__ import annotations

import copy
import sys
from typing import Literal, overload

import numpy as np

from .._lib._library import Library, library_of_namespace
from .._lib._namespace import is_numpy_namespace
from .._lib._typing import Array, ArrayLike, Int, Real, Reduction, Temperature
from . import _plain_index
from ._checks import _check_options, _overflow_is_inf
from ._class_loss import _block, _ClassLoss, _mean_scale
from ._numpy_blocks import _run_numpy_blocks
from ._plain_index import plain_options as _plain_options


def _compute(loss, *, z_loss, softcap, return_grad, normalize):
    """The loss, and with ``return_grad`` its gradient (class axis last; else None)."""
    xp = loss.xp
    denominator = loss.denominator() if loss.reduction == "mean" else None
    scale = _mean_scale(xp, loss, denominator) if return_grad else 1.0
    if not isinstance(scale, float) and is_numpy_namespace(xp):
        scale = float(scale)
    common = dict(z_loss=z_loss, softcap=softcap, want_grad=return_grad, normalize=normalize)
    if is_numpy_namespace(xp):
        row_loss, grad = _run_numpy_blocks(loss, scale, common)
    else:
        row_loss, grad = _block(
            loss, loss.values, loss.targets, loss.keep, loss.temperature, scale, out=None, **common
        )
    return loss.finish_loss(row_loss, denominator), grad


def _run(loss, *, z_loss, softcap, return_grad, normalize):
    options = dict(z_loss=z_loss, softcap=softcap, normalize=normalize)
    if normalize and library_of_namespace(loss.xp) is Library.TORCH:
        # CPU tensors take the NumPy road (softmaxkit.torch._cross_entropy).
        from ..torch import _cross_entropy as torch_path

        def run_generic(values):
            generic = copy.copy(loss)
            generic.values = values
            return _compute(generic, return_grad=False, **options)[0]

        result = torch_path.cross_entropy(
            loss,
            lambda twin, want_grad: _compute(twin, return_grad=want_grad, **options),
            run_generic,
            return_grad=return_grad,
        )
        if result is not NotImplemented:
            return result
    if normalize and not return_grad and library_of_namespace(loss.xp) is Library.JAX:
        # The closed-form gradient for jax.grad (._jax_grad).
        from ._jax_grad import cross_entropy as jax_path

        return jax_path(
            loss, lambda call, want_grad: _compute(call, return_grad=want_grad, **options)
        )
    result, grad = _compute(loss, return_grad=return_grad, **options)
    if not return_grad:
        return result
    xp = loss.xp
    grad = xp.moveaxis(xp.astype(grad, loss.plan.result, copy=False), -1, loss.axis)
    if is_numpy_namespace(xp):
        grad = np.asarray(grad)
    return result, grad


def _plain_call(logits, target, axis, ignore_index, reduction, smoothing, return_grad):
    """The plain call (``._plain_index``) on 2-D NumPy logits or CPU tensors, or
    NotImplemented for the general path."""
    if getattr(logits, "ndim", None) != 2 or axis not in (1, -1):
        return NotImplemented
    if type(logits) is np.ndarray:
        result = _plain_index.row_losses(
            logits, target, ignore_index, reduction, return_grad, smoothing
        )
        if result is NotImplemented or return_grad:
            return result
        return result[0]
    torch = sys.modules.get("torch")
    if torch is None or type(logits) is not torch.Tensor:
        return NotImplemented
    torch_path = sys.modules.get("softmaxkit.torch._cross_entropy")
    if torch_path is None:
        from ..torch import _cross_entropy as torch_path
    return torch_path.plain_cross_entropy(
        logits, target, ignore_index, reduction, smoothing, _plain_generic, return_grad=return_grad
    )


def _plain_generic(values, target, ignore_index, reduction, smoothing):
    """The plain call's loss by the general path, which torch differentiates."""
    loss = _ClassLoss(
        values, target, -1, weight=None, ignore_index=ignore_index, label_smoothing=smoothing,
        reduction=reduction, temperature=1.0, where=None, name="logits",
    )  # fmt: skip
    with np.errstate(over="ignore"):
        return _compute(loss, return_grad=False, z_loss=0.0, softcap=None, normalize=True)[0]


@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    label_smoothing: Real = 0.0,
    reduction: Reduction = "mean",
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    z_loss: Real = 0.0,
    softcap: Real | None = None,
    return_grad: Literal[False] = ...,
) -> Array: ...


@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    label_smoothing: Real = 0.0,
    reduction: Reduction = "mean",
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    z_loss: Real = 0.0,
    softcap: Real | None = None,
    return_grad: Literal[True],
) -> tuple[Array, Array]: ...


@overload
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    label_smoothing: Real = 0.0,
    reduction: Reduction = "mean",
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    z_loss: Real = 0.0,
    softcap: Real | None = None,
    return_grad: bool = ...,
) -> Array | tuple[Array, Array]: ...


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    label_smoothing: Real = 0.0,
    reduction: Reduction = "mean",
    temperature: Temperature = 1.0,
    where: ArrayLike | None = None,
    z_loss: Real = 0.0,
    softcap: Real | None = None,
    return_grad: bool = False,
) -> Array | tuple[Array, Array]:
    r"""Softmax cross-entropy of ``logits`` against class indices or class probabilities.

    The semantics of ``torch.nn.functional.cross_entropy`` for every combination it
    supports, with the class axis anywhere, and a number where PyTorch gives NaN
    (see Notes).

    Parameters
    ----------
    logits : array_like
        Unnormalized scores, of any supported array library (see
        :func:`~softmaxkit.softmax`).
    target : array_like
        Integer class indices, of the shape of ``logits`` without the class axis;
        or floating class probabilities, of the shape of ``logits``.
    axis : int, default -1
        The class axis (PyTorch's is 1: pass ``axis=1`` for its layouts).
    weight : array_like, optional
        One non-negative weight per class (a 1-D array).
    ignore_index : int, default -100
        Class-index targets equal to it take no part (neither in the loss nor in
        the divisor of the mean). Unused for probability targets.
    label_smoothing : float in [0, 1], default 0.0
        The target becomes ``(1 - label_smoothing) * target + label_smoothing / k``,
        where ``k`` is the number of classes that take part in the row.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the sum by the total weight of the targets that are not
        ignored (the number of rows for probability targets).
    temperature : float or array, default 1.0
        The logits are divided by it, as in :func:`~softmaxkit.softmax`.
    where : array of bool, optional
        Keep-mask broadcastable to ``logits``: False classes take no part.
    z_loss : float, default 0.0
        Adds ``z_loss * logsumexp(logits)**2`` per row (PaLM), times the row's target
        weight for class-index targets.
    softcap : float, optional
        Replaces the logits by ``softcap * tanh(logits / softcap)`` first (Gemma 2);
        ``-inf`` logits stay ``-inf``.
    return_grad : bool, default False
        Also return the gradient of the loss with respect to ``logits`` (of
        ``loss.sum()`` for ``reduction="none"``), computed with the loss in one pass.

    Returns
    -------
    loss : array
        A 0-d array for "mean" and "sum"; one loss per row for "none". In the
        library and floating dtype of ``logits``.
    dlogits : array
        Only with ``return_grad=True``: the gradient, of the shape of ``logits``.

    Raises
    ------
    ValueError
        For a class index out of range (and not ``ignore_index``), a target of the
        wrong shape, a weight that is negative or not one per class, a
        ``label_smoothing`` outside [0, 1], an unknown ``reduction``, a negative
        ``z_loss`` or a ``softcap`` that is not positive.
    TypeError
        For a target that is neither integer nor floating.

    Notes
    -----
    The per-row loss is ``-log_softmax(logits)[target]``, that is ``lse - x_target``
    with the core's accurate :func:`~softmaxkit.log_softmax`: a confident correct
    prediction gives a tiny positive loss, never 0 or a negative one. The gradient
    with respect to the scaled logits is ``sum(q) * softmax - q`` for the target
    distribution ``q`` (weights and smoothing folded in), plus
    ``2 z_loss lse softmax``, times the derivative of the softcap.

    Where PyTorch gives NaN or inf, softmaxkit gives a number:

    - a batch in which every target is ignored has mean loss 0 and gradient 0
      (PyTorch: NaN, pytorch#70348); so has an empty batch;
    - classes whose logit is ``-inf`` or that ``where`` masks out take no part:
      label smoothing spreads over the remaining classes only, and a probability
      target of 0 there adds 0 (PyTorch: inf or NaN);
    - a class-index target whose logit is ``-inf`` gives ``inf`` loss, with a finite
      gradient.

    ``temperature=0`` (the greedy limit) and ``inf`` (uniform) make the loss constant
    in the logits: the gradient is 0 there. Near 0 the loss and gradient approach that
    limit: both tend to 0 for a target at the row's unique maximum, and grow like
    ``(max - x_target) / T`` and ``1 / T`` otherwise, up to ``inf`` where that leaves
    the dtype's range (never NaN, never a warning).

    For NumPy arrays the rows are processed in blocks, so that no temporary of the
    size of the logits is made besides the gradient itself. With class-index targets,
    a scalar temperature, no ``where`` and no label smoothing with class weights, each
    block takes one pass of the compiled kernel over the logits (plus one for
    ``softcap``, one for label smoothing). CPU tensors of PyTorch take the same road,
    on views of their memory.

    See Also
    --------
    nll_loss, softmaxkit.log_softmax, binary_cross_entropy_with_logits

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 0.0]])
    >>> smk.cross_entropy(logits, np.array([0, 1]))
    array(0.16811713)
    >>> loss, dlogits = smk.cross_entropy(logits, np.array([0, -100]), return_grad=True)
    >>> loss
    array(0.2413113)
    >>> dlogits
    array([[-0.21440297,  0.17529039,  0.03911257],
           [ 0.        ,  0.        ,  0.        ]])
    >>> smk.cross_entropy([[0.0, float("-inf")]], [0], label_smoothing=0.5)
    array(0.)
    """
    if _plain_options(
        axis, weight, ignore_index, label_smoothing, reduction, temperature, where, z_loss, softcap
    ):
        # The kernel's entry raises no floating-point warning: no errstate needed.
        result = _plain_call(
            logits, target, axis, ignore_index, reduction, float(label_smoothing), bool(return_grad)
        )
        if result is not NotImplemented:
            return result
    return _general_cross_entropy(
        logits,
        target,
        axis,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        temperature=temperature,
        where=where,
        z_loss=z_loss,
        softcap=softcap,
        return_grad=return_grad,
    )


@_overflow_is_inf
def _general_cross_entropy(logits, target, axis, *, z_loss, softcap, return_grad, **options):
    """cross_entropy by the validated call, which defines the semantics."""
    _check_options(z_loss, softcap)
    loss = _ClassLoss(logits, target, axis, name="logits", **options)
    return _run(
        loss,
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        return_grad=bool(return_grad),
        normalize=True,
    )


@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    label_smoothing: Real = 0.0,
    reduction: Reduction = "mean",
    return_grad: Literal[False] = ...,
) -> Array: ...


@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    label_smoothing: Real = 0.0,
    reduction: Reduction = "mean",
    return_grad: Literal[True],
) -> tuple[Array, Array]: ...


@overload
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    label_smoothing: Real = 0.0,
    reduction: Reduction = "mean",
    return_grad: bool = ...,
) -> Array | tuple[Array, Array]: ...


@_overflow_is_inf
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    /,
    *,
    axis: Int = -1,
    weight: ArrayLike | None = None,
    ignore_index: Int = -100,
    label_smoothing: Real = 0.0,
    reduction: Reduction = "mean",
    return_grad: bool = False,
) -> Array | tuple[Array, Array]:
    r"""Negative log-likelihood of ``target`` under log-probabilities ``log_probs``.

    ``cross_entropy(x, t)`` is ``nll_loss(log_softmax(x), t)``; the options mean the
    same (``torch.nn.functional.nll_loss`` has ``weight``, ``ignore_index`` and
    ``reduction``).

    Parameters
    ----------
    log_probs : array_like
        Log-probabilities, of any supported array library.
    target : array_like
        Integer class indices (the shape of ``log_probs`` without the class axis) or
        floating class probabilities (the shape of ``log_probs``).
    axis : int, default -1
        The class axis.
    weight, ignore_index, label_smoothing, reduction
        As in :func:`cross_entropy`; classes with log-probability ``-inf`` take no
        part in label smoothing.
    return_grad : bool, default False
        Also return the gradient with respect to ``log_probs`` (of ``loss.sum()`` for
        ``reduction="none"``): minus the target distribution, weighted and scaled.

    Returns
    -------
    loss : array
        A 0-d array for "mean" and "sum", one loss per row for "none".
    dlog_probs : array
        Only with ``return_grad=True``.

    Raises
    ------
    ValueError, TypeError
        As in :func:`cross_entropy`.

    See Also
    --------
    cross_entropy

    Examples
    --------
    >>> import numpy as np
    >>> import softmaxkit as smk
    >>> log_probs = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    >>> smk.nll_loss(log_probs, np.array([0, 1]), reduction="none")
    array([0.69314718, 0.22314355])
    """
    loss = _ClassLoss(
        log_probs,
        target,
        axis,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        temperature=1.0,
        where=None,
        name="log_probs",
    )
    return _run(loss, z_loss=0.0, softcap=None, return_grad=bool(return_grad), normalize=False)
