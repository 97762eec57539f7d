"""Closed-form gradients for PyTorch and JAX: one glue for every mapping that has one.

The sparse mappings and their losses, and ``linear_cross_entropy``, know their
gradients in closed form (or recompute what they need block by block): they must not
be differentiated through a sort, a bisection loop or a blocked loop. Each gives a
``forward`` that returns its result and what the gradient needs, and a ``backward``
that maps the upstream gradient to one gradient per input; :func:`differentiable`
wraps the pair as a ``torch.autograd.Function`` or a ``jax.custom_vjp`` where the
inputs are tensors that need a gradient, and just calls ``forward`` elsewhere.
"""

from __future__ import annotations

from ._library import Library, library_of

__all__ = ["differentiable"]


def differentiable(forward, backward, *inputs):
    """``forward(*inputs)[0]``, with gradients from ``backward`` in PyTorch and JAX.

    ``forward(*inputs) -> (result, saved)``, ``saved`` a tuple of arrays (or None);
    ``backward(saved, g) -> tuple`` of one gradient per input (None for an input
    that takes none, such as an absent bias). Only array inputs may be passed; options
    go in the closures.
    """
    present = [a for a in inputs if a is not None]
    library = library_of(present[0]) if present else Library.NUMPY
    if library is Library.TORCH:
        import torch

        if torch.is_grad_enabled() and any(getattr(a, "requires_grad", False) for a in present):
            return _torch_function().apply(forward, backward, *inputs)
    elif library is Library.JAX:
        return _jax_call(forward, backward, inputs)
    return forward(*inputs)[0]


def _jax_call(forward, backward, inputs):
    import jax

    @jax.custom_vjp
    def mapping(*args):
        return forward(*args)[0]

    def mapping_fwd(*args):
        return forward(*args)

    def mapping_bwd(saved, g):
        return tuple(backward(saved, g))

    mapping.defvjp(mapping_fwd, mapping_bwd)
    return mapping(*inputs)


_TORCH_FUNCTION = None


def _torch_function():
    global _TORCH_FUNCTION
    if _TORCH_FUNCTION is None:
        import torch

        class ClosedFormGradient(torch.autograd.Function):
            """``forward``'s result; the gradient from ``backward`` (see differentiable)."""

            @staticmethod
            def forward(ctx, forward_fn, backward_fn, *inputs):
                result, saved = forward_fn(*inputs)
                saved = tuple(saved) if isinstance(saved, (tuple, list)) else (saved,)
                ctx.backward_fn = backward_fn
                ctx.input_dtypes = [None if a is None else a.dtype for a in inputs]
                ctx.save_for_backward(*saved)
                return result

            @staticmethod
            def backward(ctx, g):
                saved = ctx.saved_tensors
                grads = ctx.backward_fn(saved if len(saved) != 1 else saved[0], g)
                grads = tuple(
                    None if grad is None or dtype is None else grad.to(dtype)
                    for grad, dtype in zip(grads, ctx.input_dtypes)
                )
                return (None, None, *grads)

        _TORCH_FUNCTION = ClosedFormGradient
    return _TORCH_FUNCTION
