"""The argument pipeline: one call's arguments, validated, described, not yet copied.

Every function that normalizes along axes (the core three, the losses, the sparse
mappings, the sampler, the streaming state) starts with :func:`describe`. It finds the
namespace and the library of the inputs, checks ``axis``, ``temperature``, ``where``,
``dtype`` (and logsumexp's weights), and decides the dtype plan: every argument error
is raised here, before any implementation is chosen. The result, a :class:`Call`,
holds the input as it came (``source``) and converts it to the working dtype only when
an implementation asks for ``call.x`` (the compiled kernel never does: it reads the
input in its own dtype). The dispatcher (``_dispatch.py``) hands the call to the first
implementation that takes it.
"""

from __future__ import annotations

from ._dtypes import _name, plan_dtypes
from ._library import library_of_namespace
from ._namespace import array_namespace, as_array, is_lazy, is_numpy_namespace
from ._validation import broadcast_mask, check_real_operand, check_temperature, normalize_axis

__all__ = ["Call", "describe"]


class Call:
    """One call's validated arguments.

    Attributes
    ----------
    xp, library
        The array namespace of the inputs and its :class:`~._library.Library`.
    source
        ``x`` as an array of ``xp``, in its own dtype (never copied here).
    axes
        The normalized axes, a sorted tuple.
    temperature
        A Python float, or an array of ``xp`` in the working dtype with length 1
        along the axes (one temperature per row); ``temperature_given`` is the
        argument as it came.
    keep
        The keep-mask broadcast to ``x``'s shape, or None.
    plan
        The :class:`~._dtypes.DtypePlan`: working and result dtypes.
    weights
        logsumexp's array ``b``, checked, not yet broadcast or cast (else None).
    """

    __slots__ = (
        "xp", "library", "source", "axes", "temperature", "temperature_given", "keep",
        "plan", "weights", "_work",
    )

    def __init__(
        self, xp, source, axes, temperature, keep, plan, weights=None, given=None, work=None
    ):
        self.xp = xp
        self.library = library_of_namespace(xp)
        self.source = source
        self.axes = axes
        self.temperature = temperature
        self.temperature_given = temperature if given is None else given
        self.keep = keep
        self.plan = plan
        self.weights = weights
        self._work = work

    @property
    def x(self):
        """The input in the working dtype (converted on first use)."""
        if self._work is None:
            self._work = self.xp.astype(self.source, self.plan.work)
        return self._work

    def use_as_work(self, array):
        """Take ``array`` (``source`` itself, or ``source`` already converted) as the
        working array, for a path that computes in another dtype than the plan's."""
        self._work = array

    @property
    def is_lazy(self) -> bool:
        """Whether the input's values are unknown now (Dask, JAX under ``jit``)."""
        return is_lazy(self.source)

    @property
    def is_empty(self) -> bool:
        """Whether ``x`` has no element: then there is nothing to reduce.

        (Some libraries refuse a maximum over zero-size blocks even along
        axes of non-zero length.)
        """
        return any(n == 0 for n in self.source.shape)

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

    from ._namespace import device_of

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
    inf = xp.asarray(math.inf, dtype=values.dtype, device=device_of(xp, values))
    values = xp.where(values >= threshold, inf, values)
    return xp.where(values <= -threshold, -inf, values)


def describe(
    x, axis, *, temperature=1.0, where=None, dtype=None, extra=(), weights=None
) -> Call:
    """Validate the common arguments of one call and describe it (nothing is copied).

    ``extra`` lists further array arguments that take part in choosing the
    namespace. ``weights`` (logsumexp's ``b``, an array) also takes part in the
    result dtype: without ``dtype=``, the result has the library's promoted dtype
    of ``x``'s floating dtype and the weights' (float32 ``x`` with float64 weights
    gives float64, as in SciPy).

    Raises
    ------
    TypeError, ValueError
        For every invalid argument, with its name (see ``_validation.py``).
    """
    temperature_array = None if isinstance(temperature, (int, float)) else temperature
    xp = array_namespace(x, where, temperature_array, *extra)
    source = as_array(xp, x)
    if weights is not None:
        weights = check_real_operand(xp, as_array(xp, weights, like=source), "b")
        if dtype is None:
            dtype = _promoted(xp, plan_dtypes(xp, source).result, weights.dtype)
    plan = plan_dtypes(xp, source, dtype)
    axes = normalize_axis(axis, source.ndim)
    validated_temperature = check_temperature(xp, temperature, source, axes, plan.work)
    keep = None if where is None else broadcast_mask(xp, where, source)
    return Call(xp, source, axes, validated_temperature, keep, plan, weights, temperature)


def _promoted(xp, x_dtype, weights_dtype):
    """The result dtype of floating ``x_dtype`` with ``weights_dtype``, by the library's
    own promotion; where it has none for the pair (integers with floats are left to
    the library by the array API, and ``array_api_strict`` refuses them), ``x_dtype``."""
    result_type = getattr(xp, "result_type", None)
    if result_type is None:  # the TensorFlow adapter: a wider floating dtype wins
        rank = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 3}
        wider = rank.get(_name(weights_dtype), 0) > rank.get(_name(x_dtype), 0)
        return weights_dtype if wider else x_dtype
    try:
        return result_type(x_dtype, weights_dtype)
    except (TypeError, ValueError):
        return x_dtype
