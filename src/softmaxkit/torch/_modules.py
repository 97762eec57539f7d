"""``torch.nn`` modules: drop-in replacements for ``nn.Softmax`` and ``nn.LogSoftmax``."""

from __future__ import annotations

import torch

from .._lib._validation import check_reduction, check_scalar_temperature
from ._functional import log_softmax, softmax

__all__ = ["Softmax", "LogSoftmax", "CrossEntropyLoss"]


class Softmax(torch.nn.Module):
    r"""Softmax along ``dim``, as ``torch.nn.Softmax``, with a temperature.

    Parameters
    ----------
    dim : int, default -1
        The dimension to normalize over (``torch.nn.Softmax`` has no default;
        here it is the last dimension).
    temperature : float, default 1.0
        ``x`` is divided by it (>= 0).

    Notes
    -----
    No parameters and no buffers: the ``state_dict`` is empty, ``.to()`` changes
    nothing. The forward takes an optional keep-mask, ``module(x, where=mask)``.

    Examples
    --------
    >>> import torch
    >>> import softmaxkit.torch as smt
    >>> layer = smt.Softmax(dim=1, temperature=2.0)
    >>> layer
    Softmax(dim=1, temperature=2.0)
    >>> layer(torch.tensor([[0.0, 2.0]]))
    tensor([[0.2689, 0.7311]])
    """

    __constants__ = ["dim", "temperature"]
    _function = staticmethod(softmax)

    def __init__(self, dim: int | None = -1, temperature: float = 1.0):
        super().__init__()
        self.dim = dim
        self.temperature = check_scalar_temperature(temperature)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("dim", -1)
        self.__dict__.setdefault("temperature", 1.0)

    def forward(self, input, where=None):  # noqa: A002 (torch.nn's name)
        return type(self)._function(input, self.dim, temperature=self.temperature, where=where)

    def extra_repr(self) -> str:
        text = f"dim={self.dim}"
        if self.temperature != 1.0:
            text += f", temperature={self.temperature}"
        return text


class LogSoftmax(Softmax):
    r"""Log-softmax along ``dim``, as ``torch.nn.LogSoftmax``, with a temperature.

    Parameters
    ----------
    dim : int, default -1
        The dimension to normalize over.
    temperature : float, default 1.0
        ``x`` is divided by it (>= 0).

    Examples
    --------
    >>> import torch
    >>> import softmaxkit.torch as smt
    >>> smt.LogSoftmax(dim=-1)
    LogSoftmax(dim=-1)
    >>> smt.LogSoftmax()(torch.tensor([0.0, 0.0]))
    tensor([-0.6931, -0.6931])
    """

    _function = staticmethod(log_softmax)


class CrossEntropyLoss(torch.nn.Module):
    r"""Cross-entropy loss, as ``torch.nn.CrossEntropyLoss``, by
    :func:`softmaxkit.cross_entropy`.

    Parameters
    ----------
    weight : torch.Tensor, optional
        One non-negative weight per class (a buffer of the module, as in PyTorch).
    ignore_index : int, default -100
        Class-index targets equal to it take no part.
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0
    z_loss : float, default 0.0
        Coefficient of the ``logsumexp(x) ** 2`` penalty.
    softcap : float, optional
        Logits are capped as ``softcap * tanh(x / softcap)`` first.

    Notes
    -----
    The classes are along dimension 1 (dimension 0 for 1-D input), as in PyTorch;
    targets are class indices or class probabilities. The forward and its gradient
    take :func:`softmaxkit.cross_entropy`'s path for tensors.

    Examples
    --------
    >>> import torch
    >>> import softmaxkit.torch as smt
    >>> loss = smt.CrossEntropyLoss(label_smoothing=0.1)
    >>> loss
    CrossEntropyLoss(ignore_index=-100, reduction=mean, label_smoothing=0.1)
    >>> round(loss(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])).item(), 6)
    0.336513
    """

    __constants__ = ["ignore_index", "reduction", "label_smoothing", "z_loss", "softcap"]

    def __init__(
        self,
        weight=None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ):
        super().__init__()
        check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, input, target):  # noqa: A002 (torch.nn's name)
        from ..losses import cross_entropy

        return cross_entropy(
            input,
            target,
            axis=1 if input.ndim >= 2 else 0,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )

    def extra_repr(self) -> str:
        text = f"ignore_index={self.ignore_index}, reduction={self.reduction}"
        if self.label_smoothing:
            text += f", label_smoothing={self.label_smoothing}"
        if self.z_loss:
            text += f", z_loss={self.z_loss}"
        if self.softcap is not None:
            text += f", softcap={self.softcap}"
        return text
