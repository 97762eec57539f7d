"""The compiled road of ``linear_cross_entropy``: float32/float64 blocks through the kernel.

For NumPy arrays and CPU PyTorch tensors of float32 or float64. The rows are taken
in blocks; a block of logits (rows x vocabulary chunk) is one matrix product in the
input dtype (NumPy's BLAS, or ``torch.matmul``) into a reused buffer, and one run of
the kernel (:func:`softmaxkit._kernels.softmax_stats`) turns it in place into the
softmax times a per-row gain, and gives each row's ``(max, log-normalizer)`` in
float64. When the whole vocabulary fits one chunk (the default, up to about 2**22
logits per block) the gradient is formed in the same buffer, so the forward and the
backward take three matrix products, as on the materialised logits. Otherwise the
chunks' log-masses are merged in float64 and the gradient recomputes each chunk.

Rows that the kernel reports as not finite (a NaN logit, a ``+inf`` one, every logit
``-inf``) are computed again through :func:`softmaxkit.cross_entropy` on their
materialised row, which defines the edge semantics.
"""

from __future__ import annotations

import math

import numpy as np

from . import _kernels
from ._lib._autograd import differentiable
from ._lib._library import Library, library_of

# Logits per block (16 MiB of float32): the buffer stays in the last-level cache
# between the product that writes it, the kernel pass and the two products that read
# it; 128 rows of a 32000-entry vocabulary.
BLOCK_ENTRIES = 1 << 22
# Fewer rows make the products slow (grad_weight is read and written once per block).
_MIN_ROWS = 64
# A vocabulary beyond this is cut into chunks of _HUGE_CHUNK entries.
_LARGEST_WHOLE = 1 << 20
_HUGE_CHUNK = 1 << 18
_LARGEST_GAIN = 2.0**60  # see losses/_numpy_blocks.py: the kernel's limit on gains

# SciPy's BLAS with beta = 1 (grad_weight accumulated in place, no temporary), imported
# on first use (not with softmaxkit); None where SciPy is not installed.
_scipy_blas = False


def _blas():
    global _scipy_blas
    if _scipy_blas is False:
        try:
            from scipy.linalg import blas
        except ImportError:  # pragma: no cover - SciPy is optional
            blas = None
        _scipy_blas = blas
    return _scipy_blas


def compiled_backend(hidden, weight, bias):
    """``"numpy"``, ``"torch"`` or None: whether the compiled road takes these arrays."""
    if not _kernels.kernel_available() or _kernels._forced_generic[0]:
        return None  # no kernel, or switched off (softmax_stats would decline every block)
    arrays = [a for a in (hidden, weight, bias) if a is not None]
    if all(type(a) is np.ndarray for a in arrays):
        ok = hidden.dtype in (np.float32, np.float64)
        return "numpy" if ok and all(a.dtype == hidden.dtype for a in arrays) else None
    if library_of(hidden) is not Library.TORCH:
        return None  # JAX, CuPy, ...: the portable road (and torch is not imported)
    import torch

    if not all(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in arrays):
        return None
    if hidden.dtype not in (torch.float32, torch.float64):
        return None
    return "torch" if all(a.dtype == hidden.dtype for a in arrays) else None


class _Saved:
    """What the gradient needs per row: logsumexp, -log p_target, the chunks' log-masses."""

    __slots__ = ("lse", "nll", "log_mass", "edge")


class Head:
    """One call: the arrays (NumPy views), the matrix products, the block sizes."""

    def __init__(self, backend, hidden, weight, bias, target, options):
        self.backend, self.options = backend, options
        if backend == "torch":
            self.t_hidden = hidden.detach().contiguous()
            self.t_weight = weight.detach()
            hidden, weight = self.t_hidden.numpy(), self.t_weight.numpy()
            bias = None if bias is None else bias.detach().numpy()
            target = target.detach().numpy()
        self.hidden, self.weight, self.bias = hidden, weight, bias
        self.target = np.asarray(target, dtype=np.int64)
        self.dtype = hidden.dtype
        self.valid = self.target != options.ignore_index
        self.safe_target = np.where(self.valid, self.target, 0)
        n_rows, vocabulary = hidden.shape[0], weight.shape[0]
        self.n_rows, self.vocabulary = n_rows, vocabulary
        if options.chunk_given:
            chunk = options.chunk_size
        else:
            chunk = vocabulary if vocabulary <= _LARGEST_WHOLE else _HUGE_CHUNK
        self.chunk = max(1, min(chunk, vocabulary))
        # At most 1/16 of the rows per block (1/32 with the softcap's second buffer),
        # so that the buffers stay well under a tenth of the logits.
        rows_cap = math.ceil(n_rows / (32 if options.softcap is not None else 16))
        rows = max(BLOCK_ENTRIES // self.chunk, _MIN_ROWS)
        self.row_block = max(1, min(n_rows, rows_cap, rows))
        self.chunks = [
            (c, min(c + self.chunk, vocabulary)) for c in range(0, vocabulary, self.chunk)
        ]
        size = self.row_block * self.chunk
        self._flat = np.empty(size, dtype=self.dtype)
        self._tanh = np.empty(size, dtype=self.dtype) if options.softcap is not None else None
        if backend == "torch":
            import torch

            self._t_flat = torch.from_numpy(self._flat)
        self.grad_hidden = self.grad_weight = self.grad_bias = None

    def gradients(self, bias):
        """The gradients computed by :meth:`run` (None where not asked), as the input's
        library; grad_bias in the bias's dtype."""
        grad_hidden, grad_weight, grad_bias = self.grad_hidden, self.grad_weight, None
        if self.grad_bias is not None:
            grad_bias = self.grad_bias.astype(self.dtype)
        if self.backend == "torch":
            import torch

            grad_hidden = None if grad_hidden is None else self.t_grad_hidden
            grad_weight = None if grad_weight is None else self.t_grad_weight
            grad_bias = None if grad_bias is None else torch.from_numpy(grad_bias)
        return grad_hidden, grad_weight, grad_bias

    # ----------------------------------------------------------------------------------
    # matrix products

    def _logits(self, r0, r1, c0, c1):
        """The block of logits (after bias and softcap) in the buffer; and tanh or None."""
        shape = (r1 - r0, c1 - c0)
        z = self._flat[: shape[0] * shape[1]].reshape(shape)
        if self.backend == "torch":
            import torch

            out = self._t_flat[: shape[0] * shape[1]].view(shape)
            torch.matmul(self.t_hidden[r0:r1], self.t_weight[c0:c1].T, out=out)
        else:
            np.matmul(self.hidden[r0:r1], self.weight[c0:c1].T, out=z)
        if self.bias is not None:
            z += self.bias[c0:c1]
        tanh = None
        softcap = self.options.softcap
        if softcap is not None:
            tanh = self._tanh[: z.size].reshape(shape)
            np.divide(z, softcap, out=tanh)
            np.tanh(tanh, out=tanh)
            np.multiply(tanh, softcap, out=z)
        return z, tanh

    def _accumulate(self, g, r0, r1, c0, c1, first_chunk, wants):
        """grad_hidden[rows] (+)= g @ W[chunk]; grad_weight[chunk] += g.T @ hidden[rows]."""
        want_hidden, want_weight, want_bias = wants
        if self.backend == "torch":
            import torch

            tg = self._t_flat[: g.size].view(g.shape)
            if want_hidden:
                rows = self.t_grad_hidden[r0:r1]
                if first_chunk:
                    torch.matmul(tg, self.t_weight[c0:c1], out=rows)
                else:
                    rows.addmm_(tg, self.t_weight[c0:c1])
            if want_weight:
                self.t_grad_weight[c0:c1].addmm_(tg.T, self.t_hidden[r0:r1])
        else:
            if want_hidden:
                rows = self.grad_hidden[r0:r1]
                if first_chunk:
                    np.matmul(g, self.weight[c0:c1], out=rows)
                else:
                    rows += g @ self.weight[c0:c1]
            if want_weight:
                _add_product(self.grad_weight[c0:c1], g, self.hidden[r0:r1])
        if want_bias:
            self.grad_bias[c0:c1] += g.sum(axis=0, dtype=np.float64)

    def _allocate_gradients(self, wants):
        want_hidden, want_weight, want_bias = wants
        n, d, v = self.n_rows, self.hidden.shape[1], self.vocabulary
        if self.backend == "torch":
            import torch

            dtype = self.t_hidden.dtype
            if want_hidden:
                self.t_grad_hidden = torch.zeros((n, d), dtype=dtype)
                self.grad_hidden = self.t_grad_hidden.numpy()
            if want_weight:
                self.t_grad_weight = torch.zeros((v, d), dtype=dtype)
                self.grad_weight = self.t_grad_weight.numpy()
        else:
            if want_hidden:
                self.grad_hidden = np.zeros((n, d), dtype=self.dtype)
            if want_weight:
                self.grad_weight = np.zeros((v, d), dtype=self.dtype)
        if want_bias:
            self.grad_bias = np.zeros(v, dtype=np.float64)

    # ----------------------------------------------------------------------------------
    # the passes

    def run(self, scale=None, wants=(False, False, False), saved=None):
        """Row losses (float64, 0 where ignored) and :class:`_Saved`; gradients if asked.

        ``scale``: None (no gradient) or float64 per row, d(reduced loss)/d(row loss).
        With ``saved`` (from an earlier call) only the gradient is computed.
        """
        want_grad = scale is not None and any(wants)
        if want_grad:
            self._allocate_gradients(wants)
        row_loss = np.zeros(self.n_rows, dtype=np.float64)
        if saved is None:
            saved = _Saved()
            saved.lse = np.zeros(self.n_rows)
            saved.nll = np.zeros(self.n_rows)
            saved.log_mass = np.zeros((self.n_rows, len(self.chunks)))
            saved.edge = np.zeros(self.n_rows, dtype=bool)
            forward = True
        else:
            forward = False
        single = len(self.chunks) == 1
        for r0 in range(0, self.n_rows, self.row_block):
            r1 = min(r0 + self.row_block, self.n_rows)
            rows = slice(r0, r1)
            block_scale = None if not want_grad else np.where(self.valid[rows], scale[rows], 0.0)
            reuse = None
            if forward:
                reuse = self._statistics(r0, r1, saved, row_loss, block_scale if single else None)
            if want_grad:
                self._gradient(r0, r1, saved, block_scale, reuse, wants)
        edge_rows = np.flatnonzero(saved.edge)
        if edge_rows.size:
            self._edge_rows(edge_rows, row_loss, scale if want_grad else None, wants, forward)
        return row_loss, saved

    def _statistics(self, r0, r1, saved, row_loss, gain):
        """Pass 1 over the chunks of rows r0:r1; returns the block when it holds the
        whole vocabulary as ``gain * softmax`` (for the gradient), else None."""
        options = self.options
        rows = slice(r0, r1)
        n = r1 - r0
        target, valid = self.safe_target[rows], self.valid[rows]
        z_t = np.zeros(n)
        m_t = np.zeros(n)
        s_t = np.zeros(n)
        logit_sum = np.zeros(n) if options.label_smoothing else None
        log_mass = saved.log_mass[rows]
        bad = np.zeros(n, dtype=bool)
        use_gain = gain is not None and not options.z_loss and _gain_ok(gain)
        z = tanh = None
        for j, (c0, c1) in enumerate(self.chunks):
            z, tanh = self._logits(r0, r1, c0, c1)
            hit = np.flatnonzero((target >= c0) & (target < c1))
            z_t[hit] = z[hit, target[hit] - c0]
            if logit_sum is not None:
                logit_sum += z.sum(axis=1, dtype=np.float64)
            stats = _kernels.softmax_stats(z, z, gain=gain if use_gain else None)
            m, s = stats[:, 0], stats[:, 1]
            finite = ~np.isnan(s)
            empty = ~finite & (m == -math.inf)  # every logit of the chunk -inf
            bad |= ~finite & ~empty
            log_mass[:, j] = np.where(finite, m + np.where(finite, s, 0.0), -math.inf)
            m_t[hit], s_t[hit] = m[hit], s[hit]
        with np.errstate(invalid="ignore", over="ignore"):
            if len(self.chunks) == 1:
                lse = log_mass[:, 0].copy()
                above_target = np.zeros(n)
            else:
                top = np.max(log_mass, axis=1)
                safe_top = np.where(np.isfinite(top), top, 0.0)
                ratios = np.exp(log_mass - safe_top[:, None])
                top_index = np.argmax(log_mass, axis=1)
                ratios[np.arange(n), top_index] = 0.0
                others = np.log1p(ratios.sum(axis=1))
                lse = top + others
                target_mass = log_mass[np.arange(n), self._chunk_of(target)]
                above_target = (top - target_mass) + others
            bad |= lse == -math.inf
            # -log p_target = (m - z_t) + s within the target's chunk, plus the chunks above
            nll = (m_t - z_t) + s_t + above_target
            nll = np.where(np.isnan(nll) & ~bad, math.inf, nll)  # target chunk all -inf
            loss = (1.0 - options.label_smoothing) * nll
            if logit_sum is not None:
                loss += options.label_smoothing * (lse - logit_sum / self.vocabulary)
            if options.z_loss:
                loss += options.z_loss * (lse * lse)
        bad &= valid
        row_loss[rows] = np.where(valid & ~bad, loss, 0.0)
        saved.lse[rows], saved.nll[rows], saved.edge[rows] = lse, nll, bad
        if len(self.chunks) != 1 or gain is None:
            return None
        return z, tanh, use_gain

    def _chunk_of(self, target):
        return np.minimum(target // self.chunk, len(self.chunks) - 1)

    def _gradient(self, r0, r1, saved, scale, reuse, wants):
        """Pass 2: softmax - target (times the row factors) per chunk, and the products."""
        options = self.options
        rows = slice(r0, r1)
        target = self.safe_target[rows]
        lse, nll, edge = saved.lse[rows], saved.nll[rows], saved.edge[rows]
        scale = np.where(edge, 0.0, scale)
        with np.errstate(invalid="ignore", over="ignore"):
            finite_lse = np.where(np.isfinite(lse), lse, 0.0)
            scale_p = scale * (1.0 + 2.0 * options.z_loss * finite_lse)
            log_p = -nll
            p_t = np.exp(log_p)
            target_entry = scale * (np.expm1(log_p) + options.label_smoothing)
            if options.z_loss:
                target_entry += np.where(
                    scale_p == 0, 0.0, scale * (2.0 * options.z_loss) * finite_lse * p_t
                )
        target_entry = np.where(scale == 0, 0.0, target_entry)
        uniform = scale * (options.label_smoothing / self.vocabulary)
        for j, (c0, c1) in enumerate(self.chunks):
            if reuse is not None:
                z, tanh, gained = reuse
                if not gained:
                    z *= scale_p[:, None]
            else:
                z, tanh = self._logits(r0, r1, c0, c1)
                with np.errstate(invalid="ignore", under="ignore"):
                    gain = scale_p * np.exp(saved.log_mass[rows, j] - lse)
                gain = np.where(scale_p == 0, 0.0, gain)
                _kernels.softmax_stats(z, z, gain=gain)
            hit = np.flatnonzero((target >= c0) & (target < c1))
            z[hit, target[hit] - c0] = target_entry[hit]
            if options.label_smoothing:
                z -= uniform[:, None]
            if edge.any():
                z[edge] = 0.0
            if tanh is not None:
                np.multiply(tanh, tanh, out=tanh)
                np.subtract(1.0, tanh, out=tanh)
                z *= tanh
            self._accumulate(z, r0, r1, c0, c1, j == 0, wants)

    def _edge_rows(self, edge_rows, row_loss, scale, wants, forward):
        """Rows the kernel does not take: through cross_entropy on their own logits."""
        from .losses import cross_entropy

        options = self.options
        group = max(1, BLOCK_ENTRIES // max(self.vocabulary, 1))
        for start in range(0, edge_rows.size, group):
            rows = edge_rows[start : start + group]
            h = self.hidden[rows]
            z = h @ self.weight.T
            if self.bias is not None:
                z += self.bias
            loss, g = cross_entropy(
                z,
                self.target[rows],
                reduction="none",
                ignore_index=options.ignore_index,
                label_smoothing=options.label_smoothing,
                z_loss=options.z_loss,
                softcap=options.softcap,
                return_grad=True,
            )
            if forward:
                row_loss[rows] = loss
            if scale is None:
                continue
            g *= scale[rows][:, None].astype(g.dtype)
            want_hidden, want_weight, want_bias = wants
            if want_hidden:
                self.grad_hidden[rows] = g @ self.weight
            if want_weight:
                self.grad_weight += g.T @ h
            if want_bias:
                self.grad_bias += g.sum(axis=0, dtype=np.float64)


def _gain_ok(gain):
    return bool(np.all(np.abs(gain) <= _LARGEST_GAIN))


def _add_product(c, g, h):
    """``c += g.T @ h`` in place (BLAS with beta = 1 where SciPy is there)."""
    blas = _blas()
    if blas is not None and c.shape[0] > 0:
        gemm = blas.sgemm if c.dtype == np.float32 else blas.dgemm
        # Column-major views: c.T (D x C) += h.T (D x R) @ g (R x C).
        result = gemm(1.0, h.T, g.T, beta=1.0, c=c.T, trans_b=True, overwrite_c=True)
        if np.shares_memory(result, c):
            return
        np.copyto(c, result.T)  # the wrapper copied c (not expected for these views)
        return
    step = max(1, (1 << 20) // max(h.shape[1], 1))
    for start in range(0, c.shape[0], step):
        c[start : start + step] += g[:, start : start + step].T @ h


# --------------------------------------------------------------------------------------
# the call: NumPy, PyTorch without autograd, and PyTorch's autograd


def _row_scale(valid, reduction, cotangent):
    """d(reduced loss) / d(row loss) per row (float64), times the cotangent."""
    weights = valid.astype(np.float64)
    if reduction == "mean":
        weights /= max(float(weights.sum()), 1.0)  # no valid row: the mean is 0
    return weights * cotangent


def _reduced(row_loss, valid, reduction):
    if reduction == "none":
        return row_loss
    total = row_loss.sum()
    if reduction == "mean":
        total = total / max(float(valid.sum()), 1.0)
    return np.asarray(total)


def run_compiled(backend, hidden, weight, bias, target, options, return_grad):
    """``(loss, grad_hidden, grad_weight, grad_bias)`` (the gradients None unless asked)."""
    if backend == "torch" and not return_grad:
        return (_torch_autograd(hidden, weight, bias, target, options),)
    head = Head(backend, hidden, weight, bias, target, options)
    wants = (True, True, bias is not None) if return_grad else (False, False, False)
    scale = _row_scale(head.valid, options.reduction, 1.0) if return_grad else None
    row_loss, _ = head.run(scale, wants)
    loss = _reduced(row_loss, head.valid, options.reduction).astype(head.dtype)
    grads = head.gradients(bias) if return_grad else (None, None, None)
    if backend == "torch":
        import torch

        loss = torch.from_numpy(loss)
    return (loss, *grads)


def _torch_autograd(hidden, weight, bias, target, options):
    import torch

    enabled = torch.is_grad_enabled()
    wants = tuple(
        bool(enabled and a is not None and a.requires_grad) for a in (hidden, weight, bias)
    )
    if not any(wants):
        head = Head("torch", hidden, weight, bias, target, options)
        row_loss, _ = head.run()
        loss = _reduced(row_loss, head.valid, options.reduction).astype(head.dtype)
        return torch.from_numpy(loss)
    if options.reduction != "none":
        # A scalar loss: its gradient is computed with it (one pass, three products)
        # and scaled by the incoming gradient.
        def forward(hidden, weight, bias):
            head = Head("torch", hidden, weight, bias, target, options)
            scale = _row_scale(head.valid, options.reduction, 1.0)
            row_loss, _ = head.run(scale, wants)
            loss = _reduced(row_loss, head.valid, options.reduction).astype(head.dtype)
            return torch.from_numpy(loss), head.gradients(bias)

        def backward(saved, grad_loss):
            if bool(grad_loss == 1):
                return tuple(saved)
            return tuple(None if g is None else g * grad_loss for g in saved)

        return differentiable(forward, backward, hidden, weight, bias)

    # reduction="none": the gradient needs each row's cotangent; the backward
    # recomputes the logits from the forward's per-row statistics.
    def forward(hidden, weight, bias):
        head = Head("torch", hidden, weight, bias, target, options)
        row_loss, saved = head.run()
        loss = torch.from_numpy(row_loss.astype(head.dtype))
        arrays = (saved.lse, saved.nll, saved.log_mass, saved.edge)
        return loss, (hidden, weight, bias, *(torch.from_numpy(a) for a in arrays))

    def backward(saved_tensors, grad_loss):
        hidden, weight, bias, lse, nll, log_mass, edge = saved_tensors
        head = Head("torch", hidden, weight, bias, target, options)
        saved = _Saved()
        saved.lse, saved.nll = lse.numpy(), nll.numpy()
        saved.log_mass, saved.edge = log_mass.numpy(), edge.numpy()
        cotangent = grad_loss.detach().to(torch.float64).reshape(-1).numpy()
        head.run(_row_scale(head.valid, "none", cotangent), wants, saved=saved)
        return head.gradients(bias)

    return differentiable(forward, backward, hidden, weight, bias)
