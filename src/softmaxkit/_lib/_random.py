"""Random numbers and the few row operations the array API lacks, per array library.

Sampling is written once against ``xp``; what differs between libraries is where
random numbers come from (a NumPy ``Generator``, a ``torch.Generator`` on the
tensor's device, a JAX PRNG key) and how a partial selection or a batched
``searchsorted`` is spelled. Only NumPy, PyTorch and JAX are supported here.
"""

from __future__ import annotations

import numbers

import array_api_compat
import numpy as np

from ._library import Library
from ._namespace import require_library

__all__ = ["Randomness", "library_of", "top_m_indices", "searchsorted_right", "stop_gradient"]


_SUPPORTED = (Library.NUMPY, Library.TORCH, Library.JAX)


def library_of(xp) -> str:
    """'numpy', 'torch' or 'jax' (the library of namespace ``xp``, as
    :func:`._library.library_of_namespace` says); a TypeError for any other."""
    return require_library(xp, _SUPPORTED, "sampling").value


def _is_jax_key(rng) -> bool:
    import jax

    dtype = getattr(rng, "dtype", None)
    if dtype is None:
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    # A legacy key from jax.random.PRNGKey: uint32 of shape (2,).
    return isinstance(rng, jax.Array) and rng.dtype == np.uint32 and tuple(rng.shape) == (2,)


class Randomness:
    """The random source of one call, for the library of ``like``.

    ``rng`` is, for NumPy, a ``numpy.random.Generator``, an int seed or None; for
    PyTorch, a ``torch.Generator`` on the tensor's device, an int seed or None (the
    global generator); for JAX, a PRNG key (required: JAX has no global state).
    """

    def __init__(self, library, rng, like):
        self.library = library
        self.like = like
        if library == "numpy":
            if _looks_foreign(rng):
                raise TypeError(
                    "rng must be a numpy.random.Generator, an int seed or None for "
                    f"NumPy input, got {type(rng).__module__}.{type(rng).__name__}"
                )
            try:
                self.source = np.random.default_rng(rng)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    "rng must be a numpy.random.Generator, an int seed or None for "
                    f"NumPy input, got {rng!r}"
                ) from error
        elif library == "torch":
            import torch

            if rng is None or isinstance(rng, torch.Generator):
                if rng is not None and not _same_torch_device(rng.device, like.device):
                    device = str(like.device)
                    raise ValueError(
                        f"rng is a torch.Generator on {rng.device}, but the logits are on "
                        f"{device}: create it with torch.Generator(device={device!r})"
                    )
                self.source = rng
            elif isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
                self.source = torch.Generator(device=like.device).manual_seed(int(rng))
            else:
                raise TypeError(
                    "rng must be a torch.Generator, an int seed or None for PyTorch input, "
                    f"got {type(rng).__module__}.{type(rng).__name__}"
                )
        else:
            if rng is None or not _is_jax_key(rng):
                raise TypeError(
                    "rng must be a JAX PRNG key (for example jax.random.key(0)) for JAX "
                    f"input: JAX has no global random state, got {rng!r}"
                )
            self.source = rng

    def _jax_key(self):
        import jax

        self.source, key = jax.random.split(self.source)
        return key

    def uniform(self, shape, dtype):
        """Uniform numbers in [0, 1) of ``dtype``."""
        if self.library == "numpy":
            return self.source.random(shape, dtype=np.float64).astype(dtype, copy=False)
        if self.library == "torch":
            import torch

            return torch.rand(shape, generator=self.source, dtype=dtype, device=self.like.device)
        import jax

        return jax.random.uniform(self._jax_key(), shape, dtype=dtype)

    def gumbel(self, shape, dtype):
        """Standard Gumbel noise ``-log(E)``, ``E`` exponential with mean 1."""
        if self.library == "numpy":
            exponential = self.source.standard_exponential(shape)
            with np.errstate(divide="ignore"):
                return (-np.log(exponential)).astype(dtype, copy=False)
        if self.library == "torch":
            import torch

            # The same draws as torch.nn.functional.gumbel_softmax for the same seed.
            exponential = torch.empty(shape, dtype=dtype, device=self.like.device)
            return -exponential.exponential_(generator=self.source).log()
        import jax

        return jax.random.gumbel(self._jax_key(), shape, dtype=dtype)


def _looks_foreign(rng) -> bool:
    module = type(rng).__module__
    return module.startswith(("torch", "jax", "jaxlib"))


def _same_torch_device(a, b) -> bool:
    if a.type != b.type:
        return False
    return a.index is None or b.index is None or a.index == b.index


def top_m_indices(xp, library, values, m):
    """Indices of ``m`` largest entries of each row of the 2-D ``values``, in no order."""
    width = values.shape[1]
    if m >= width:
        row = xp.arange(width, device=array_api_compat.device(values))
        return xp.broadcast_to(row[None, :], tuple(values.shape))
    if library == "numpy":
        return np.argpartition(values, width - m, axis=1)[:, width - m :]
    if library == "torch":
        import torch

        return torch.topk(values, m, dim=1, sorted=False).indices
    import jax

    return jax.lax.top_k(values, m)[1]


def searchsorted_right(xp, library, cdf, u):
    """For each row ``r``, the number of entries of ``cdf[r]`` that are ``<= u[r, j]``.

    ``cdf`` is non-decreasing along its rows, of shape (rows, m); ``u`` is (rows, k).
    """
    rows, width = cdf.shape
    draws = u.shape[1]
    if library == "torch":
        import torch

        return torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True)
    if library == "jax":
        import jax
        import jax.numpy as jnp

        return jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"))(cdf, u)
    if width * draws <= 4096 or rows * width * draws <= 1 << 22:
        # A comparison count beats a Python loop over rows while the product is small.
        counts = np.empty((rows, draws), dtype=np.int64)
        chunk = max(1, (1 << 22) // max(1, width * draws))
        for start in range(0, rows, chunk):
            block = cdf[start : start + chunk, None, :] <= u[start : start + chunk, :, None]
            counts[start : start + chunk] = np.count_nonzero(block, axis=2)
        return counts
    return np.stack([np.searchsorted(cdf[r], u[r], side="right") for r in range(rows)])


def stop_gradient(library, x):
    """``x`` with no gradient flowing back through it."""
    if library == "torch":
        return x.detach()
    if library == "jax":
        import jax

        return jax.lax.stop_gradient(x)
    return x
