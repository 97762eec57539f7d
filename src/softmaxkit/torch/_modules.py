"""``torch.nn`` modules: drop-in replacements for ``nn.Softmax`` and ``nn.LogSoftmax``."""

from __future__ import annotations

import math

import torch

from ._functional import log_softmax, softmax

__all__ = ["Softmax", "LogSoftmax"]


def _check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a real number, got {temperature!r}")
    temperature = float(temperature)
    if not temperature >= 0 or math.isnan(temperature):
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    return temperature


class Softmax(torch.nn.Module):
    r"""Softmax along ``dim``, as ``torch.nn.Softmax``, with a temperature.

    Parameters
    ----------
    dim : int, default -1
        The dimension to normalise over (``torch.nn.Softmax`` has no default;
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
        self.temperature = _check_temperature(temperature)

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
        The dimension to normalise over.
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
