"""The sparse mappings of a Dask array: the NumPy mapping on each block."""

from __future__ import annotations

import numpy as np


def _dask_map(function, x, axes, where, temperature, result_dtype, **options):
    """``function`` on NumPy blocks of Dask ``x``, the normalized axes in one chunk each."""
    import dask.array as da

    x = da.asarray(x)
    x = x.rechunk({a: -1 for a in axes})
    operands = [x]
    if where is not None:
        operands.append(da.broadcast_to(da.asarray(where), x.shape).rechunk(x.chunks))
    t_is_array = not isinstance(temperature, float)
    if t_is_array:
        operands.append(da.broadcast_to(da.asarray(temperature), x.shape).rechunk(x.chunks))
    row_index = tuple(slice(0, 1) if d in axes else slice(None) for d in range(x.ndim))

    def block(xb, *rest):
        rest = list(rest)
        wb = rest.pop(0) if where is not None else None
        tb = rest.pop(0)[row_index] if t_is_array else temperature
        return function(np.asarray(xb), axis=axes, where=wb, temperature=tb, **options)

    return da.map_blocks(block, *operands, dtype=result_dtype)
