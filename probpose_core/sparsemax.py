"""Sparsemax (Martins & Astudillo 2016): the Euclidean projection onto the probability simplex.

``sparsemax(z) = argmin_{p in simplex} ||p - z||^2 = max(z - tau, 0)`` where the threshold
``tau`` makes the result sum to 1. With ``z`` sorted descending and ``c_j`` its cumulative sums,
the support size is ``k* = max{j : 1 + j z_(j) > c_j}`` and ``tau = (c_(k*) - 1) / k*``.
The Jacobian is ``diag(s) - s s^T / |S|`` with ``s`` the support indicator, so the gradient
is ``s * (g - sum_S g / |S|)``.

Three variants with the same result:

- ``sparsemax``: exact, sorts only as far as the support needs (a data-dependent loop),
  analytic backward (``torch.autograd.Function``). For training and torch inference; not for
  tracing (the loop's bound would be frozen at the traced example).
- ``sparsemax_topk``: the same computation written for export: TopK(k) + CumSum over the ``k``
  largest entries. With ``k=None`` (the default) ``k`` is the whole map (H*W), so the result is
  the exact sparsemax for every support size; that is ONNX export's default (ONNX Runtime and
  TensorRT 10 accept TopK k <= 3840, i.e. maps up to 64x60). An explicit smaller ``k`` (e.g.
  128 for TensorRT 8.6 / JetPack 5, whose TopK takes k <= 1024) is exact (within float
  rounding) only while the support has fewer than ``k`` entries; beyond that it is the sparsemax
  of the ``k`` largest entries alone (all others set to 0): still non-negative and summing to 1,
  but more peaked than the exact result. Entries tied with the k-th largest value are kept as
  well and the result is renormalised to sum to 1. A support of ``k`` or more entries in the
  result is therefore the run-time sign of a possibly truncated map (``runtime.base.support_check``).
- ``sparsemax_bisect``: no sort at all; bisection on ``tau`` for ``n_iter`` steps followed by
  two exact support-based refinements (Michelot steps, each one a closed-form ``tau`` for the
  current support guess). It has no support bound: the bisection bracket shrinks to 2^-n_iter
  of the (shifted) value range [-1, 0], and the refinement makes the result exact unless
  an entry lies inside the final bracket, where the error is at most the bracket width.

- ``sparsemax_rows``: the same exact sparsemax in numpy over the rows of an ``(R, n)`` array, for
  the torch-free decode (:func:`codec.sharpen_maps`).

torch is imported only by the torch variants (the ONNX Runtime inference path imports this
module through the codec and never loads torch).

Both export variants are written with plain tensor ops (TopK / Relu / ReduceSum / CumSum /
Where), fixed shapes apart from batch, so ``torch.onnx.export(dynamo=False, opset_version=17)``
traces them; autograd through them gives the same support-based gradient as the exact one.
"""
from __future__ import annotations

import numpy as np

# First top-k tried by the exact sparsemax before widening (see _exact_forward).
_FIRST_K = 128
DEFAULT_BISECT_ITERS = 30


def _threshold_rows(flat: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``tau (R, 1)`` and support sizes ``(R,)`` of Sparsemax over the ``m`` largest entries of
    each row of ``flat (R, n)``."""
    top = -np.partition(-flat, m - 1, axis=1)[:, :m] if m < flat.shape[1] else flat
    top = -np.sort(-top, axis=1)
    cumsum = np.cumsum(top, axis=1)
    support = np.count_nonzero(1.0 + np.arange(1, m + 1) * top > cumsum, axis=1)  # entries with z_j > tau_j
    return (np.take_along_axis(cumsum, (support - 1)[:, None], axis=1) - 1.0) / support[:, None], support


def sparsemax_rows(flat) -> np.ndarray:
    """Exact sparsemax of each row of ``flat (R, n)`` (numpy, float64).

    Sorts only the ``m`` largest entries of each row first, ``m`` = the widest count of positive
    entries (a sharpened Sparsemax map's support lies inside its own: trained maps hold ~100 of
    3072 pixels); a support that fills all ``m`` is redone over every entry, so the result is
    exact for any input."""
    flat = np.asarray(flat, dtype=np.float64)
    m = max(int(np.count_nonzero(flat > 0, axis=1).max()), 1)
    tau, support = _threshold_rows(flat, m)
    if m < flat.shape[1] and np.any(support == m):
        tau, _ = _threshold_rows(flat, flat.shape[1])
    return np.maximum(flat - tau, 0.0)


_EXACT = None  # the torch.autograd.Function of the exact sparsemax, made on first use


def _exact_function():
    global _EXACT
    if _EXACT is None:
        import torch

        class _SparsemaxFunction(torch.autograd.Function):
            forward = staticmethod(_exact_forward)
            backward = staticmethod(_exact_backward)

        _EXACT = _SparsemaxFunction
    return _EXACT


def _exact_forward(ctx, z):
    """Exact sparsemax over the last dimension (the forward of ``_SparsemaxFunction``)."""
    import torch

    z = z - z.amax(dim=-1, keepdim=True)  # shift for range; sparsemax is shift-invariant
    n, k = z.shape[-1], min(z.shape[-1], _FIRST_K)
    while True:
        # The support test 1 + j z_(j) > sum_{i<=j} z_(i) holds for j = 1..k* and fails after,
        # so the k largest values decide it whenever it fails somewhere among them. Try a
        # small top-k first (torch's CPU sort is ~20x slower than top-k on 64x48 maps) and
        # widen it only for rows whose support may be larger: exact for every input.
        if k < n:
            z_sorted = torch.topk(z, k, dim=-1).values
        else:
            z_sorted = torch.sort(z, dim=-1, descending=True).values
        cumsum = z_sorted.cumsum(dim=-1)
        j = torch.arange(1, k + 1, dtype=z.dtype, device=z.device)
        in_support = 1 + j * z_sorted > cumsum  # true for j = 1..k*, false after
        support = in_support.sum(dim=-1, keepdim=True)
        if k == n or bool((support < k).all()):
            break
        k = min(n, 8 * k)
    tau = (cumsum.gather(-1, support - 1) - 1) / support.to(z.dtype)
    p = torch.clamp(z - tau, min=0)
    ctx.save_for_backward(p)
    return p


def _exact_backward(ctx, grad):
    """The analytic backward: ``s * (g - sum_S g / |S|)``."""
    (p,) = ctx.saved_tensors
    s = (p > 0).to(grad.dtype)
    mean = (grad * s).sum(dim=-1, keepdim=True) / s.sum(dim=-1, keepdim=True)
    return s * (grad - mean)


def _over_last(fn, x: torch.Tensor, dim: int, *args) -> torch.Tensor:
    """Apply ``fn`` (working on the last dim) along ``dim``."""
    if dim in (-1, x.dim() - 1):
        return fn(x, *args)
    return fn(x.movedim(dim, -1), *args).movedim(-1, dim)


def sparsemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Exact sparsemax of ``x`` along ``dim`` (sort-based, analytic gradient)."""
    return _over_last(_exact_function().apply, x, dim)


def _topk_last(x: torch.Tensor, k: int | None) -> torch.Tensor:
    import torch

    n = int(x.shape[-1])  # a Python int: traced as a constant (TensorRT wants TopK's k constant)
    k = n if k is None else min(k, n)
    z = x - x.amax(dim=-1, keepdim=True)
    top, _ = torch.topk(z, k, dim=-1)  # sorted descending
    cumsum = top.cumsum(dim=-1)
    j = torch.arange(1, k + 1, dtype=z.dtype, device=z.device)
    in_support = 1 + j * top > cumsum
    support = in_support.sum(dim=-1, keepdim=True).to(z.dtype)
    # the support is a prefix of the sorted list: sum it with a mask instead of a Gather
    tau = (torch.where(in_support, top, 0).sum(dim=-1, keepdim=True) - 1) / support
    kth = top[..., k - 1:k]
    p = torch.where(z >= kth, torch.clamp(z - tau, min=0), 0)
    return p / p.sum(dim=-1, keepdim=True)


def sparsemax_topk(x: torch.Tensor, k: int | None = None, dim: int = -1) -> torch.Tensor:
    """Export-safe sparsemax: TopK(k) + CumSum instead of a data-dependent sort (module docstring).

    ``k=None``: all entries, equal to ``sparsemax`` within float rounding for every input.
    A smaller ``k`` is equal to it while the support has fewer than ``k`` entries; with a larger
    support it returns the sparsemax of the ``k`` largest entries (a valid distribution whose
    support is those ``k`` entries). ``k`` <= 1024 keeps TensorRT 8.6 happy.
    """
    return _over_last(_topk_last, x, dim, None if k is None else int(k))


def _bisect_last(x: torch.Tensor, n_iter: int) -> torch.Tensor:
    import torch

    z = x - x.amax(dim=-1, keepdim=True)  # max is 0, so tau lies in [-1, 0)
    with torch.no_grad():
        zd = z.detach()
        lo = torch.full_like(zd[..., :1], -1.0)  # mass(lo) >= 1
        hi = torch.zeros_like(lo)  # mass(hi) = 0 < 1
        for _ in range(n_iter):
            mid = (lo + hi) / 2
            big = torch.clamp(zd - mid, min=0).sum(dim=-1, keepdim=True) >= 1
            lo = torch.where(big, mid, lo)
            hi = torch.where(big, hi, mid)
    tau = lo
    for _ in range(2):  # Michelot steps: tau stays <= the true tau and reaches it once S is right
        s = (z > tau).detach()
        tau = (torch.where(s, z, 0).sum(dim=-1, keepdim=True) - 1) / s.sum(dim=-1, keepdim=True).to(z.dtype)
    return torch.clamp(z - tau, min=0)


def sparsemax_bisect(x: torch.Tensor, dim: int = -1, n_iter: int = DEFAULT_BISECT_ITERS) -> torch.Tensor:
    """Export-safe sparsemax by bisection on the threshold (no sort, no support bound)."""
    return _over_last(_bisect_last, x, dim, int(n_iter))


_METHODS = {"exact": sparsemax, "topk": sparsemax_topk, "bisect": sparsemax_bisect}


def sparsemax_maps(logits: torch.Tensor, temperature: float = 1.0, method: str = "exact",
                   topk: int | None = None) -> torch.Tensor:
    """Probability maps from logits: sparsemax over each map's pixels.

    logits: (N, K, H, W). Returns prob_maps (N, K, H, W), each map non-negative and summing
    to 1. ``method`` picks the variant: "exact" (default), "topk" or "bisect" (for export);
    ``topk`` is the top-k variant's ``k`` (None: all H*W pixels, exact).
    """
    if method not in _METHODS:
        raise ValueError(f"unknown sparsemax method {method!r}; choose from {sorted(_METHODS)}")
    if topk is not None and method != "topk":
        raise ValueError(f"topk={topk} applies to method 'topk' only, not {method!r}")
    n, k, h, w = logits.shape
    flat = logits.reshape(n, k, h * w) / temperature
    fn = _METHODS[method] if topk is None else (lambda z, dim: sparsemax_topk(z, topk, dim))
    return fn(flat, dim=-1).reshape(n, k, h, w)

