import io
import itertools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from probpose_core.sparsemax import sparsemax, sparsemax_bisect, sparsemax_maps, sparsemax_topk


def brute_force_projection(z: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the simplex by trying every support (small n only).

    For a support S the closest point of the simplex face is p_S = z_S - tau_S with
    tau_S = (sum z_S - 1) / |S|; the projection is the nearest feasible candidate.
    """
    best, best_dist = None, np.inf
    n = len(z)
    for r in range(1, n + 1):
        for support in itertools.combinations(range(n), r):
            idx = list(support)
            tau = (z[idx].sum() - 1) / r
            p = np.zeros(n)
            p[idx] = z[idx] - tau
            if (p < -1e-12).any():
                continue
            dist = ((p - z) ** 2).sum()
            if dist < best_dist:
                best, best_dist = p, dist
    return best


def test_hand_cases():
    t = torch.tensor
    torch.testing.assert_close(sparsemax(t([0.0, 0.0])), t([0.5, 0.5]))
    torch.testing.assert_close(sparsemax(t([2.0, 0.0, -1.0])), t([1.0, 0.0, 0.0]))
    torch.testing.assert_close(sparsemax(t([0.5, 0.3, 0.1])), t([1.6, 1.0, 0.4]) / 3)
    torch.testing.assert_close(sparsemax(t([0.5, 0.3, -0.5])), t([0.6, 0.4, 0.0]))
    torch.testing.assert_close(sparsemax(t([0.1, 0.2, 0.3, 0.4])), t([0.1, 0.2, 0.3, 0.4]) - 0.0)
    torch.testing.assert_close(sparsemax(t([1.0, 1.0, 1.0])), t([1.0, 1.0, 1.0]) / 3)
    # shift invariance and the -inf mask
    torch.testing.assert_close(sparsemax(t([100.5, 100.3, 99.5])), t([0.6, 0.4, 0.0]))
    torch.testing.assert_close(sparsemax(t([0.5, 0.3, float("-inf")])), t([0.6, 0.4, 0.0]))


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, st.integers(1, 7), elements=st.floats(-3, 3)))
def test_is_the_euclidean_projection_onto_the_simplex(z):
    expected = brute_force_projection(z)
    for fn in (sparsemax, sparsemax_topk, sparsemax_bisect):
        got = fn(torch.from_numpy(z)).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-9, err_msg=fn.__name__)


def test_projection_beats_random_simplex_points(rng):
    z = rng.normal(size=(50, 40)) * 2
    p = sparsemax(torch.from_numpy(z)).numpy()
    q = rng.dirichlet(np.full(40, 0.3), size=(50, 200))  # (50, 200, 40) points of the simplex
    d_p = ((p - z) ** 2).sum(-1)
    d_q = ((q - z[:, None]) ** 2).sum(-1)
    assert (d_p[:, None] <= d_q + 1e-12).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sums_to_one_and_non_negative_along_any_dim(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, generator=g, dtype=dtype) * 4
    for dim in (0, 1, -1):
        for fn in (sparsemax, sparsemax_topk, sparsemax_bisect):
            p = fn(x, dim=dim)
            assert p.shape == x.shape and (p >= 0).all()
            torch.testing.assert_close(p.sum(dim), torch.ones_like(p.sum(dim)))
        torch.testing.assert_close(sparsemax(x, dim=dim), sparsemax(x.movedim(dim, -1)).movedim(-1, dim))


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(4, 9, generator=g, dtype=torch.float64) * 2).requires_grad_()
    assert torch.autograd.gradcheck(sparsemax, (x,))
    assert torch.autograd.gradcheck(lambda t: sparsemax(t, dim=0), (x,))


def test_export_variants_have_the_exact_gradient():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 300, generator=g, dtype=torch.float64) * 3
    w = torch.randn(6, 300, generator=g, dtype=torch.float64)
    grads = []
    for fn in (sparsemax, lambda t: sparsemax_topk(t, k=64), sparsemax_bisect):
        xi = x.clone().requires_grad_()
        (fn(xi) * w).sum().backward()
        grads.append(xi.grad)
    assert (sparsemax(x) > 0).sum(-1).max() < 64
    torch.testing.assert_close(grads[1], grads[0])
    torch.testing.assert_close(grads[2], grads[0])


def _maps(n, temperature_spread, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 17, 64, 48, generator=g) * temperature_spread


def test_topk_and_bisect_equal_exact_within_the_support_bound():
    logits = _maps(2, 3.0, 3)
    exact = sparsemax_maps(logits, temperature=0.5)
    support = (exact > 0).flatten(2).sum(-1)
    assert 1 < support.max() < 128
    torch.testing.assert_close(sparsemax_maps(logits, 0.5, "topk"), exact, atol=1e-6, rtol=0)
    torch.testing.assert_close(sparsemax_maps(logits, 0.5, "bisect"), exact, atol=1e-6, rtol=0)
    torch.testing.assert_close(exact.sum((2, 3)), torch.ones(2, 17))


def test_topk_beyond_its_bound_is_the_sparsemax_of_the_top_k():
    x = torch.randn(5, 3072, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 0.05
    k = 32
    exact = sparsemax(x)
    assert ((exact > 0).sum(-1) > k).all()  # flat maps: support far beyond k
    got = sparsemax_topk(x, k=k)
    torch.testing.assert_close(got.sum(-1), torch.ones(5, dtype=x.dtype))
    assert (got >= 0).all() and ((got > 0).sum(-1) <= k).all()
    assert (got - exact).abs().max() > 1e-3  # differs from exact ...
    top_val, top_idx = x.topk(k, dim=-1)  # ... and equals sparsemax over the k largest alone
    expected = torch.zeros_like(x).scatter(-1, top_idx, sparsemax(top_val))
    torch.testing.assert_close(got, expected)
    # ties at the k-th value (uniform input): kept and renormalised -> still the exact answer
    torch.testing.assert_close(sparsemax_topk(torch.zeros(2, 500), k=k), torch.full((2, 500), 1 / 500))


def test_bisect_has_no_support_bound():
    x = torch.randn(5, 3072, generator=torch.Generator().manual_seed(5)) * 5e-4
    exact = sparsemax(x)
    assert ((exact > 0).sum(-1) > 1000).all()
    torch.testing.assert_close(sparsemax_bisect(x), exact, atol=1e-6, rtol=0)


def test_sparsemax_maps_checks_method():
    with pytest.raises(ValueError, match="unknown sparsemax method"):
        sparsemax_maps(torch.zeros(1, 1, 2, 2), method="nope")


class _Head(torch.nn.Module):
    def __init__(self, method, topk=None):
        super().__init__()
        self.method, self.topk = method, topk

    def forward(self, logits):
        return sparsemax_maps(logits, temperature=0.5, method=self.method, topk=self.topk)


@pytest.mark.parametrize("method", ["topk", "bisect"])
def test_export_variants_trace_without_sort_and_generalise_over_batch(method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_Head(method), _maps(2, 3.0, 6))
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::sort" not in kinds and "aten::argsort" not in kinds
    other = _maps(3, 3.0, 7)  # a different batch through the traced graph
    torch.testing.assert_close(traced(other), sparsemax_maps(other, 0.5), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method, topk, expected_k", [
    ("topk", None, 64 * 48),  # the default: every pixel (TensorRT 10 takes k <= 3840)
    ("topk", 128, 128),  # the explicit small-k variant (TensorRT 8.6: k <= 1024)
    ("bisect", None, None),  # no TopK at all
])
def test_onnx_export_opset17(method, topk, expected_k):
    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Head(method, topk), _maps(2, 3.0, 8), buf, dynamo=False, opset_version=17,
                          input_names=["logits"], output_names=["prob_maps"],
                          dynamic_axes={"logits": {0: "batch"}, "prob_maps": {0: "batch"}})
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"Loop", "If", "NonZero", "Unique"}
    ks = []
    for node in model.graph.node:
        if node.op_type == "TopK":  # the k input must be a constant
            k_init = [i for i in model.graph.initializer if i.name == node.input[1]]
            k_const = [n for n in model.graph.node if n.op_type == "Constant" and node.input[1] in n.output]
            values = [onnx.numpy_helper.to_array(i) for i in k_init] + [
                onnx.numpy_helper.to_array(n.attribute[0].t) for n in k_const]
            assert values
            ks.append(int(np.max(values)))
    assert ks == ([] if expected_k is None else [expected_k])


def _simplex_projection_numpy(z: np.ndarray) -> np.ndarray:
    """Duchi et al.'s sort-based simplex projection (rows), an independent reference."""
    u = -np.sort(-z, axis=-1)
    css = np.cumsum(u, axis=-1) - 1
    ind = np.arange(1, z.shape[-1] + 1)
    rho = (u - css / ind > 0).sum(axis=-1, keepdims=True)
    theta = np.take_along_axis(css, rho - 1, axis=-1) / rho
    return np.maximum(z - theta, 0)


@pytest.mark.parametrize("scale", [1e-5, 1e-3, 0.02, 1.0, 50.0])
def test_exact_is_exact_for_any_support_size(scale):
    # supports from 1 pixel up to the whole 64x48 map: the top-k fast path must widen as needed,
    # and the export variant's default (TopK over all pixels) is exact as well
    z = np.random.default_rng(3).standard_normal((40, 64 * 48)) * scale
    expected = _simplex_projection_numpy(z)
    np.testing.assert_allclose(sparsemax(torch.from_numpy(z)).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(sparsemax_topk(torch.from_numpy(z)).numpy(), expected, atol=1e-12)
    z32 = torch.from_numpy(z.astype(np.float32))
    torch.testing.assert_close(sparsemax_topk(z32), sparsemax(z32), atol=1e-6, rtol=0)
    assert np.allclose(expected.sum(-1), 1)
