"""A thin array-namespace adapter for TensorFlow.

TensorFlow has no array-API namespace, so the functions the generic algorithm uses
are mapped here onto ``tf`` operations. Everything stays a TensorFlow operation,
so gradients flow through ``tf.GradientTape`` and results stay on the tensor's
device. Only what softmaxkit calls is provided.
"""

from __future__ import annotations

import functools

__all__ = ["tensorflow_namespace", "NotOnTensorFlow"]


class NotOnTensorFlow(AttributeError, TypeError):
    """A function that needs an operation the TensorFlow adapter does not map.

    A TypeError for the caller (the tensor's library is not supported there), and an
    AttributeError for ``getattr(xp, name, default)``, which asks whether a namespace
    has an optional function.
    """


@functools.cache
def tensorflow_namespace():
    import tensorflow as tf

    class _Info:
        def default_dtypes(self, *, device=None):
            return {"real floating": tf.float32, "integral": tf.int64, "indexing": tf.int64}

        def dtypes(self, *, device=None, kind=None):
            return {"float16": tf.float16, "float32": tf.float32, "float64": tf.float64}

    def _axis(axis):
        return list(axis) if isinstance(axis, tuple) else axis

    class TensorFlowNamespace:
        """The subset of the array API that softmaxkit uses, on TensorFlow."""

        is_tensorflow_adapter = True
        __name__ = "softmaxkit._lib._tensorflow"
        float16 = tf.float16
        bfloat16 = tf.bfloat16
        float32 = tf.float32
        float64 = tf.float64
        int64 = tf.int64
        bool = tf.bool

        def __getattr__(self, name):
            raise NotOnTensorFlow(
                f"TensorFlow tensors are not supported by this function (it needs "
                f"{name!r}, which softmaxkit's TensorFlow adapter does not provide); "
                "softmax, log_softmax, logsumexp, the sigmoid family, kl_divergence, "
                "the softmax VJPs and calibration take them: convert with .numpy() "
                "for the others"
            )

        @staticmethod
        def __array_namespace_info__():
            return _Info()

        @staticmethod
        def device_of(x):
            return getattr(x, "device", "") or ""

        @staticmethod
        def asarray(value, dtype=None, device=None, copy=None):
            with tf.device(device or None):
                if isinstance(value, (tf.Tensor, tf.Variable)):
                    tensor = tf.convert_to_tensor(value)
                    return tensor if dtype is None else tf.cast(tensor, dtype)
                return tf.convert_to_tensor(value, dtype=dtype)

        @staticmethod
        def astype(x, dtype, copy=True):
            return tf.cast(x, dtype)

        @staticmethod
        def isdtype(dtype, kind):
            dtype = tf.as_dtype(dtype)
            if kind == "real floating":
                return dtype.is_floating
            if kind == "integral":
                return dtype.is_integer
            if kind == "complex floating":
                return dtype.is_complex
            if kind == "bool":
                return dtype == tf.bool
            return False

        @staticmethod
        def where(condition, x1, x2):
            return tf.where(condition, x1, x2)

        @staticmethod
        def max(x, axis=None, keepdims=False):
            return tf.reduce_max(x, axis=_axis(axis), keepdims=keepdims)

        @staticmethod
        def sum(x, axis=None, keepdims=False, dtype=None):
            return tf.reduce_sum(x, axis=_axis(axis), keepdims=keepdims)

        @staticmethod
        def any(x, axis=None, keepdims=False):
            return tf.reduce_any(x, axis=_axis(axis), keepdims=keepdims)

        @staticmethod
        def squeeze(x, axis):
            return tf.squeeze(x, axis=_axis(axis))

        @staticmethod
        def reshape(x, shape, copy=None):
            return tf.reshape(x, shape)

        @staticmethod
        def broadcast_to(x, shape):
            return tf.broadcast_to(x, shape)

        @staticmethod
        def zeros_like(x, dtype=None):
            return tf.zeros_like(x, dtype=dtype)

        @staticmethod
        def full(shape, fill_value, dtype=None, device=None):
            return tf.fill(shape, tf.constant(fill_value, dtype=dtype))

        @staticmethod
        def zeros(shape, dtype=None, device=None):
            return tf.zeros(shape, dtype=dtype)

        exp = staticmethod(tf.exp)
        log = staticmethod(tf.math.log)
        log1p = staticmethod(tf.math.log1p)
        abs = staticmethod(tf.abs)
        sign = staticmethod(tf.sign)
        isnan = staticmethod(tf.math.is_nan)
        isinf = staticmethod(tf.math.is_inf)
        isfinite = staticmethod(tf.math.is_finite)

    return TensorFlowNamespace()
