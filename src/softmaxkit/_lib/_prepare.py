"""The argument handling every normalising function starts with."""

from __future__ import annotations

from ._dtypes import plan_dtypes
from ._namespace import array_namespace, as_array, is_numpy_namespace
from ._validation import broadcast_mask, check_temperature, normalize_axis

__all__ = ["Prepared", "prepare"]


class Prepared:
    """Validated inputs: namespace, scores in the working dtype, axes, options."""

    __slots__ = ("xp", "x", "axes", "temperature", "keep", "plan", "source")

    def __init__(self, xp, x, axes, temperature, keep, plan, source):
        self.xp = xp
        self.x = x
        self.axes = axes
        self.temperature = temperature
        self.keep = keep
        self.plan = plan
        self.source = source

    @property
    def is_empty(self) -> bool:
        """Whether ``x`` has no element: then there is nothing to reduce.

        (Some libraries refuse a maximum over zero-size blocks even along
        axes of non-zero length.)
        """
        return any(n == 0 for n in self.x.shape)

    def finish(self, result):
        """``result`` in the result dtype, as an array of the input's library."""
        xp = self.xp
        if self.plan.result != self.plan.work:
            result = _saturate(xp, result, self.plan.result)
        result = xp.astype(result, self.plan.result)
        if is_numpy_namespace(xp):
            import numpy as np

            return np.asarray(result)
        return result


# (largest finite value, maxexp, mantissa bits) of the 16-bit floats, which not every
# installation can ask NumPy about.
_HALF_LIMITS = {
    "float16": (65504.0, 16, 10),
    "bfloat16": (3.3895313892515355e38, 128, 7),
}


def _saturate(xp, values, narrow_dtype):
    """Map values that round to +-inf in ``narrow_dtype`` to +-inf before the cast.

    The cast itself would give the same values, with an overflow warning.
    """
    import math

    import numpy as np

    from ._dtypes import _name

    name = _name(narrow_dtype)
    if _name(values.dtype) == name:
        return values
    if name in _HALF_LIMITS:
        largest, maxexp, nmant = _HALF_LIMITS[name]
    else:
        try:
            info = np.finfo(np.dtype(name))
        except (TypeError, ValueError):
            import ml_dtypes

            info = ml_dtypes.finfo(name)
        largest, maxexp, nmant = float(info.max), int(info.maxexp), int(info.nmant)
    # Round to nearest: values at or beyond max + ulp(max) / 2 become infinite.
    threshold = largest + math.ldexp(1.0, maxexp - nmant - 2)
    inf = xp.asarray(math.inf, dtype=values.dtype)
    values = xp.where(values >= threshold, inf, values)
    return xp.where(values <= -threshold, -inf, values)


def prepare(x, axis, *, temperature=1.0, where=None, dtype=None, extra=()) -> Prepared:
    """Validate the common arguments and convert ``x`` to the working dtype.

    ``extra`` lists further array arguments (weights) that take part in choosing
    the namespace.
    """
    temperature_array = None if isinstance(temperature, (int, float)) else temperature
    xp = array_namespace(x, where, temperature_array, *extra)
    source = as_array(xp, x)
    plan = plan_dtypes(xp, source, dtype)
    axes = normalize_axis(axis, source.ndim)
    work = xp.astype(source, plan.work)
    validated_temperature = check_temperature(xp, temperature, work, axes, plan.work)
    keep = None if where is None else broadcast_mask(xp, where, work)
    return Prepared(xp, work, axes, validated_temperature, keep, plan, source)
