"""cross_entropy of JAX arrays with its closed-form gradient (internal).

``jax.grad`` of the generic computation differentiates each of its steps (the
log-softmax, the gather of the targets, the weights, the reduction) and writes a
full-size cotangent for each. With :func:`jax.custom_vjp` the forward computes the
gradient with the loss, in the closed form that the NumPy path uses
(``coef_p * softmax - q``, see ``_rows._gradient``), and the backward is one product
with the upstream gradient: under ``jit``, XLA fuses it.

The float arrays of the call other than the logits (class weights, probability
targets, a temperature per row) are inputs of the custom function too: their
cotangents come from ``jax.vjp`` of the generic loss, computed only where asked for
(under ``jit``, XLA drops them when nothing uses them). Integer targets and masks are
not differentiable and are closed over.
"""

from __future__ import annotations

import copy

__all__ = ["cross_entropy"]


def _float_inputs(loss):
    """(name, array) of the call's float arrays besides the logits."""
    inputs = []
    if loss.weight is not None:
        inputs.append(("weight", loss.weight))
    if not loss.targets.is_index:
        inputs.append(("probabilities", loss.targets.array))
    if not isinstance(loss.temperature, float):
        inputs.append(("temperature", loss.temperature))
    return inputs


def _with(loss, values, names, arrays):
    """``loss`` with the logits ``values`` and the float arrays ``arrays``."""
    call = copy.copy(loss)
    call.values = values
    for name, array in zip(names, arrays, strict=True):
        if name == "weight":
            call.weight = array
        elif name == "probabilities":
            call.targets = copy.copy(loss.targets)
            call.targets.array = array
        else:
            call.temperature = array
    return call


def cross_entropy(loss, compute):
    """The loss of a validated call on JAX arrays, differentiable by ``jax.grad``.

    ``compute(call, want_grad)`` returns the loss of ``call`` and, with ``want_grad``,
    its gradient with respect to the logits (class axis last).
    """
    import jax

    names = [name for name, _ in _float_inputs(loss)]
    arrays = [array for _, array in _float_inputs(loss)]
    per_row = loss.reduction == "none"

    @jax.custom_vjp
    def loss_of(values, *others):
        return compute(_with(loss, values, names, others), False)[0]

    def forward(values, *others):
        result, grad = compute(_with(loss, values, names, others), True)
        return result, (values, others, grad)

    def backward(residuals, upstream):
        values, others, grad = residuals
        scale = upstream[..., None] if per_row else upstream
        dvalues = (scale * grad).astype(values.dtype)
        if not others:
            return (dvalues,)
        _, pullback = jax.vjp(lambda *o: compute(_with(loss, values, names, o), False)[0], *others)
        return (dvalues, *pullback(upstream))

    loss_of.defvjp(forward, backward)
    return loss_of(loss.values, *arrays)
