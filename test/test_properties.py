# Owner(s): ["module: nn"]
r"""Property-based tests: orthogonal() and the maps never return a non-orthogonal
block silently.

For any shape (empty, 1 x 1, tall, wide, batched), number of blocks, map, dtype,
trivialization and device (cpu, and meta for shapes only), either every block
comes out orthogonal (orthonormal columns or rows) to a tolerance of its dtype,
or the call raises a TypeError, ValueError or NotImplementedError that says
why. The number of examples is bounded, so that the suite runs in CI in well
under two minutes.
"""

import warnings

import torch
from hypothesis import given, HealthCheck, settings, strategies as st
from torch import nn
from torch.testing._internal.common_utils import run_tests, TestCase

import torch_ortho_patch as tp
from _block_checks import block_orthogonality_error


MAPS = ("matrix_exp", "cayley", "householder")
DTYPES = (torch.float32, torch.float64, torch.complex64, torch.bfloat16)
CLEAR_ERRORS = (TypeError, ValueError, NotImplementedError)
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def cases(draw):
    # Hypothesis leans towards the first element of each list: the common
    # cases come first, the degenerate ones (0, empty) last.
    blocks = draw(st.sampled_from([3, None, 1, 2]))
    k = 1 if blocks is None else blocks
    n = draw(st.sampled_from([3, 1, 2, 4, 5, 0]))
    m = draw(st.sampled_from([3, 2, 1, 4, 5, 0]))
    batch = draw(st.sampled_from([(), (2,), (1, 2), (), (0,)]))
    # Mostly shapes that blocks divides, sometimes one it does not.
    rows = n * k + draw(st.sampled_from([0, 0, 0, 1]))
    return {
        "shape": (*batch, rows, m),
        "blocks": blocks,
        "map": draw(st.sampled_from(MAPS + (None,))),
        "dtype": draw(st.sampled_from(DTYPES)),
        "trivialization": draw(st.booleans()),
        "scale": draw(st.sampled_from([1.0, 1e-3, 10.0, 0.0])),
        "rank_one": draw(st.booleans()),
    }


def tolerance(dtype, n):
    real = torch.empty(0, dtype=dtype).real.dtype
    if real == torch.bfloat16:
        return 5e-2
    return 100 * max(n, 1) * torch.finfo(real).eps


def weight_for(case):
    X = case["scale"] * torch.randn(case["shape"], dtype=torch.float64)
    if case["rank_one"] and X.numel():
        X = X[..., :1, :1].expand_as(X).clone()
    return X.to(case["dtype"])


def check(test, Q, blocks):
    if Q.numel() == 0:
        return
    wide = torch.complex128 if Q.is_complex() else torch.float64
    err = block_orthogonality_error(Q.detach().to(wide), blocks)
    n = max(Q.shape[-2:])
    test.assertLessEqual(err, tolerance(Q.dtype, n), f"not orthogonal: {err}")


class TestOrthogonalProperties(TestCase):
    @SETTINGS
    @given(cases())
    def test_orthogonal_or_clear_error(self, case):
        module = nn.Module()
        module.weight = nn.Parameter(weight_for(case))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                tp.orthogonal(
                    module,
                    "weight",
                    case["map"],
                    use_trivialization=case["trivialization"],
                    blocks=case["blocks"],
                )
                Q = module.weight
            except CLEAR_ERRORS:
                return
        self.assertEqual(Q.shape, torch.Size(case["shape"]))
        self.assertEqual(Q.dtype, case["dtype"])
        check(self, Q, case["blocks"])
        # A training step keeps it so.
        if Q.numel():
            Q.real.sum().backward()
            with torch.no_grad():
                original = module.parametrizations.weight.original
                original.sub_(0.1 * original.grad)
            check(self, module.weight, case["blocks"])

    @SETTINGS
    @given(cases())
    def test_maps_orthogonal_or_clear_error(self, case):
        X = weight_for(case).requires_grad_()
        try:
            Q = tp.orthogonal_map(X, case["map"] or "matrix_exp", blocks=case["blocks"])
        except CLEAR_ERRORS:
            return
        self.assertEqual(Q.shape, X.shape)
        check(self, Q, case["blocks"])

    @settings(max_examples=20, deadline=None, derandomize=True)
    @given(cases())
    def test_meta_shapes(self, case):
        # On the meta device only shapes exist: the result has the weight's
        # shape and dtype, or the call fails as clearly as on CPU.
        module = nn.Module()
        module.weight = nn.Parameter(weight_for(case))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                tp.orthogonal(
                    module, "weight", case["map"],
                    use_trivialization=case["trivialization"], blocks=case["blocks"],
                )
            except CLEAR_ERRORS:
                return
        module = module.to("meta")
        Q = module.weight
        self.assertEqual(Q.device.type, "meta")
        self.assertEqual(Q.shape, torch.Size(case["shape"]))


if __name__ == "__main__":
    run_tests()
