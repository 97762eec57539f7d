"""Keras 3 adapter: a softmax layer with a temperature and softmaxkit's edge semantics.

Importing this module imports Keras (``import softmaxkit`` does not). The layer is
written with ``keras.ops`` only, so it runs on every Keras backend (TensorFlow, JAX,
PyTorch) inside compiled graphs and trains with the backend's autodiff.

Examples
--------
>>> import numpy as np
>>> import keras
>>> from softmaxkit.keras import Softmax
>>> layer = Softmax(temperature=2.0)
>>> np.round(keras.ops.convert_to_numpy(layer(np.array([[1.0, 3.0, 2.0]]))), 4)
array([[0.1863, 0.5065, 0.3072]], dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from ._lib._typing import Array, ArrayLike, Int, Real
from ._lib._validation import check_int, check_real

__all__ = ["Softmax"]

_LOW_PRECISION = ("float16", "bfloat16")


@keras.saving.register_keras_serializable(package="softmaxkit")
class Softmax(keras.layers.Layer):
    r"""Softmax along ``axis`` of ``inputs / temperature``, exact at the edges.

    As :func:`softmaxkit.softmax` on each backend's tensors: a row whose entries are
    all ``-inf`` (or all masked) gives zeros, not NaN; ``+inf`` entries share the
    mass; NaN makes its row NaN. float16 and bfloat16 inputs are computed in float32
    and returned in their own dtype.

    Parameters
    ----------
    axis : int, default -1
        The axis to normalize over.
    temperature : float, default 1.0
        ``inputs`` are divided by it; > 0 and finite. Fit one with
        :func:`softmaxkit.fit_temperature` on held-out logits to calibrate a model.
    **kwargs
        Passed to :class:`keras.layers.Layer` (``name``, ``dtype``, ...).

    Call arguments
    --------------
    inputs : tensor
        The logits.
    mask : boolean tensor, optional
        Of the rank of ``inputs`` (broadcastable to it): False entries take no part
        and get probability 0. A mask of lower rank (Keras' per-timestep mask from
        an ``Embedding(mask_zero=True)``) is not about the classes: it is passed on
        unchanged.

    Raises
    ------
    ValueError, TypeError
        For a temperature that is not > 0 and finite, or an axis that is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> import keras
    >>> from softmaxkit.keras import Softmax
    >>> layers = [keras.Input((4,)), keras.layers.Dense(3), Softmax(temperature=1.5)]
    >>> keras.Sequential(layers).output_shape
    (None, 3)
    >>> x = np.array([[0.0, float("-inf")], [float("-inf"), float("-inf")]])
    >>> keras.ops.convert_to_numpy(Softmax()(x))
    array([[1., 0.],
           [0., 0.]], dtype=float32)
    >>> Softmax(temperature=0.5).get_config()["temperature"]
    0.5
    """

    def __init__(self, axis: Int = -1, temperature: Real = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = check_int("axis", axis)
        self.temperature = check_real(
            "temperature", temperature, low=0, low_open=True, finite=True
        )
        self.supports_masking = True

    def call(self, inputs: ArrayLike, mask: ArrayLike | None = None) -> Array:
        x = ops.convert_to_tensor(inputs)
        dtype = keras.backend.standardize_dtype(x.dtype)
        if dtype not in ("float16", "bfloat16", "float32", "float64"):
            dtype = self.compute_dtype
            x = ops.cast(x, dtype)
        work = "float32" if dtype in _LOW_PRECISION else dtype
        x = ops.cast(x, work) / ops.cast(self.temperature, work)
        negative_infinity = ops.cast(-math.inf, work)
        if mask is not None and len(mask.shape) == len(x.shape):
            x = ops.where(ops.cast(mask, "bool"), x, negative_infinity)
        top = ops.max(x, axis=self.axis, keepdims=True)
        top_is_finite = ops.isfinite(top)
        shift = ops.where(top_is_finite, top, ops.zeros_like(top))
        exponentials = ops.exp(x - shift)
        # Rows with a +inf entry: the +inf entries share the mass (the limit); rows of
        # -inf only have shift 0 and exponentials 0, so they give zeros.
        at_infinity = ops.cast(x == ops.cast(math.inf, work), work)
        positive_top = ops.logical_and(ops.logical_not(top_is_finite), top > 0)
        exponentials = ops.where(positive_top, at_infinity, exponentials)
        total = ops.sum(exponentials, axis=self.axis, keepdims=True)
        total = ops.where(total == 0, ops.ones_like(total), total)  # NaN stays NaN
        return ops.cast(exponentials / total, dtype)

    def compute_mask(self, inputs: ArrayLike, mask: ArrayLike | None = None) -> ArrayLike | None:
        return mask

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "temperature": self.temperature}
