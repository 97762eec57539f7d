"""The type aliases of the public signatures, defined once.

softmaxkit takes the arrays of every array library (NumPy, PyTorch, JAX, CuPy, Dask,
``array_api_strict``, TensorFlow), Python numbers and nested lists, and returns an
array of the input's library. No static type describes "an array of any library", so
the array aliases are ``Any``: they name what the parameter means in the signature
and the documentation, and accept everything a type checker is shown. The narrower
aliases (``Axis``, ``Reduction``, ...) are what the functions accept; anything else is
a ``ValueError`` or ``TypeError`` at run time (a bool where an ``Int`` is expected is
refused at run time, although the type checkers take it for an int).

Nothing here imports an optional library at run time: the matplotlib names are
imported for the type checker only (``TYPE_CHECKING``) and are ``Any`` otherwise, so
that ``typing.get_type_hints`` resolves every public signature without matplotlib.
(softmaxkit.hf imports torch anyway, and annotates with ``torch.Tensor`` itself.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

__all__ = [
    "Array",
    "ArrayLike",
    "Axes",
    "Axis",
    "DTypeLike",
    "Figure",
    "FilterOrder",
    "Int",
    "Real",
    "Reduction",
    "Seed",
    "Temperature",
]

#: An input array: an array of any supported library, a Python number or a (nested)
#: list of numbers.
ArrayLike = Any

#: A result array, of the library (and device) of the input.
Array = Any

#: A dtype of the input's library (``numpy.float32``, ``torch.float64``, a dtype name,
#: ...).
DTypeLike = Any

#: An integer: a Python int or a NumPy integer scalar (a bool is refused at run time).
Int = int | np.integer[Any]

#: A real number: a Python float or int, or a NumPy floating or integer scalar.
Real = float | np.floating[Any] | np.integer[Any]

#: The axis, or axes jointly, a function works along; ``None`` is all axes.
Axis = Int | tuple[Int, ...] | None

#: A temperature: a number >= 0, or an array broadcastable to the input with length 1
#: along the normalized axes (one temperature per row).
Temperature = Real | ArrayLike

#: How a loss is reduced over the rows.
Reduction = Literal["mean", "sum", "none"]

#: The order of the steps of the sampling filters: a tuple or list of the names
#: "temperature", "top_k", "top_p", "min_p" and "typical_p" (a str is refused).
FilterOrder = tuple[str, ...] | list[str]

#: A random source: for NumPy a ``numpy.random.Generator``, an int seed or None; for
#: PyTorch a ``torch.Generator``, an int seed or None; for JAX a PRNG key.
Seed = Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
else:
    #: A matplotlib ``Axes`` (``Any`` at run time: matplotlib is optional).
    Axes = Any
    #: A matplotlib ``Figure`` (``Any`` at run time).
    Figure = Any
