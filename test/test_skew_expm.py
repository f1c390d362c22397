# Owner(s): ["module: nn"]
#
# Tests for the skew matrix exponential behind matrix_exp_map
# (torch_ortho_patch._skew_expm.skew_matrix_exp): its value is torch.matrix_exp's,
# bit for bit, in every mode, and its gradient is at least as accurate.
# See Note [Backward of the skew matrix exponential].

import io
from unittest import mock

import torch
import torch.autograd.forward_ad as fwAD
from torch.autograd import gradcheck, gradgradcheck
from torch.testing._internal.common_device_type import (
    dtypes,
    instantiate_device_type_tests,
)
from torch.testing._internal.common_utils import parametrize, run_tests, TestCase

import torch_ortho_patch._skew_expm as P
from torch_ortho_patch._skew_expm import skew_matrix_exp


ALL_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
DOUBLE_DTYPES = (torch.float64, torch.complex128)
SHAPES = ((0, 0), (1, 1), (2, 2), (5, 5), (2, 3, 4, 4), (0, 3, 3), (3, 32, 32))
SMALL_SHAPES = ((1, 1), (2, 2), (5, 5), (2, 3, 4, 4))
SPECIAL = ("zero", "repeated", "repeated_with_zero_block", "batched_mixed")


def _skew(X):
    return X - X.mH


def _eigh_exp(A):
    # skew_matrix_exp, except that float64 and complex128, for which it keeps
    # torch.matrix_exp's backward (Note [Dtypes of the eigh backward]), take the
    # eigh backward too, so that the tests check its formulas in double
    # precision.
    if A.dtype in P._EIGH_DTYPES:
        return skew_matrix_exp(A)
    return P._SkewMatrixExpWithJvp.apply(A)


def _skew_matrix_exp_of(X):
    # gradcheck perturbs its input in every direction, and the eigh backward
    # needs a skew input, so check it through A = X - X^H.
    return _eigh_exp(_skew(X))


def _random_skew(shape, dtype, device, norm=None, rank=None, seed=0):
    # Without norm, X / sqrt(n) keeps ||A||_2 around 3 for every n. With it,
    # ||A||_2 = norm exactly. rank=2 gives u v^T - v u^T.
    g = torch.Generator().manual_seed(seed)
    n = max(shape[-1], 1)
    if rank is None:
        A = _skew(torch.randn(shape, generator=g, dtype=torch.float64) / n**0.5)
    else:
        u, v = torch.randn(2, *shape[:-1], 1, generator=g, dtype=torch.float64)
        A = _skew(u @ v.mT)
    if norm is not None:
        A = norm * A / torch.linalg.matrix_norm(A, ord=2, keepdim=True)
    return A.to(device=device, dtype=dtype)


def _special_skew(name, dtype, device):
    # Skew matrices with repeated eigenvalues, where the divided differences
    # take their limits.
    J = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=dtype, device=device)
    Z = torch.zeros(2, 2, dtype=dtype, device=device)
    if name == "zero":
        return torch.zeros(3, 3, dtype=dtype, device=device)
    if name == "repeated":
        return torch.block_diag(J, J)
    if name == "repeated_with_zero_block":
        return torch.block_diag(2 * J, Z, 2 * J)
    if name == "batched_mixed":
        return torch.stack([torch.block_diag(J, Z), torch.zeros(4, 4, dtype=dtype, device=device)])
    raise AssertionError(f"unknown special matrix {name}")


def _grad(f, A, G):
    A = A.detach().requires_grad_()
    return torch.autograd.grad(f(A), A, G)[0]


def _counting(name):
    return mock.patch.object(P, name, side_effect=getattr(P, name))


class TestSkewMatrixExp(TestCase):
    def _grad_atol(self, A, G):
        # The vjp G -> L(A^H, G) has operator norm at most 1, so an error of
        # n eps relative to ||G||_2 is what rounding leaves.
        n = max(A.size(-1), 1)
        scale = torch.linalg.matrix_norm(G, ord=2).max().item() if G.numel() else 1.0
        return 10 * n * torch.finfo(A.dtype).eps * max(scale, 1.0)

    @dtypes(*ALL_DTYPES)
    @parametrize("shape", SHAPES, name_fn=lambda s: "x".join(map(str, s)))
    def test_value_is_matrix_exp_in_every_mode(self, device, dtype, shape):
        A = _random_skew(shape, dtype, device)
        expected = torch.matrix_exp(A)
        leaf = A.clone().requires_grad_()
        with torch.no_grad():
            no_grad = skew_matrix_exp(leaf)
        for name, Q in [
            ("requires grad", skew_matrix_exp(leaf)),
            ("no_grad", no_grad),
            ("frozen", skew_matrix_exp(A)),
            ("vmap", torch.func.vmap(skew_matrix_exp)(A.unsqueeze(0))[0]),
        ]:
            self.assertEqual(Q, expected, atol=0, rtol=0, msg=name)

    @dtypes(*ALL_DTYPES)
    @parametrize("shape", SHAPES, name_fn=lambda s: "x".join(map(str, s)))
    def test_grad_matches_matrix_exp(self, device, dtype, shape):
        A = _random_skew(shape, dtype, device)
        G = torch.randn_like(A)
        self.assertEqual(
            _grad(_eigh_exp, A, G),
            _grad(torch.matrix_exp, A, G),
            atol=self._grad_atol(A, G),
            rtol=0,
        )

    @dtypes(*ALL_DTYPES)
    @parametrize("name", SPECIAL)
    def test_repeated_eigenvalues(self, device, dtype, name):
        A = _special_skew(name, dtype, device)
        G = torch.randn_like(A)
        self.assertEqual(_eigh_exp(A.requires_grad_()), torch.matrix_exp(A), atol=0, rtol=0)
        self.assertEqual(
            _grad(_eigh_exp, A, G),
            _grad(torch.matrix_exp, A, G),
            atol=self._grad_atol(A, G),
            rtol=0,
        )

    @dtypes(torch.float32, torch.complex64)
    @parametrize("rank", [None, 2])
    @parametrize("n", [8, 33])
    def test_grad_accuracy_at_large_norms(self, device, dtype, rank, n):
        # Against a double precision reference, the gradient is at least as
        # accurate as torch.matrix_exp's own, up to ||A||_2 = 1000, where an eigh
        # of A^T A in single precision would have lost all accuracy.
        double = torch.complex128 if dtype.is_complex else torch.float64
        for norm in (0.1, 1.0, 10.0, 100.0, 1000.0):
            A = _random_skew((3, n, n), dtype, device, norm=norm, rank=rank)
            G = torch.randn_like(A)
            reference = _grad(torch.matrix_exp, A.to(double), G.to(double))

            def error(f):
                return ((_grad(f, A, G).to(double) - reference).norm() / reference.norm()).item()

            ours, theirs = error(skew_matrix_exp), error(torch.matrix_exp)
            self.assertLessEqual(ours, max(theirs, 4 * torch.finfo(dtype).eps), msg=f"norm {norm}")

    @dtypes(*DOUBLE_DTYPES)
    @parametrize("shape", SMALL_SHAPES, name_fn=lambda s: "x".join(map(str, s)))
    def test_gradcheck(self, device, dtype, shape):
        X = torch.randn(shape, dtype=dtype, device=device, requires_grad=True)
        self.assertTrue(gradcheck(_skew_matrix_exp_of, (X,), check_forward_ad=True, check_batched_grad=True))
        self.assertTrue(gradgradcheck(_skew_matrix_exp_of, (X,), check_fwd_over_rev=True, fast_mode=True))

    @dtypes(*DOUBLE_DTYPES)
    @parametrize("name", SPECIAL)
    def test_gradcheck_repeated_eigenvalues(self, device, dtype, name):
        # X = A / 2 gives X - X^H = A exactly
        X = (_special_skew(name, dtype, device) / 2).requires_grad_()
        self.assertTrue(gradcheck(_skew_matrix_exp_of, (X,), check_forward_ad=True))
        self.assertTrue(gradgradcheck(_skew_matrix_exp_of, (X,)))

    @dtypes(torch.float64)
    def test_higher_derivatives_are_matrix_exp(self, device, dtype):
        # A backward that is itself differentiated is torch.matrix_exp's formula.
        X = torch.randn(2, 4, 4, dtype=dtype, device=device, requires_grad=True)
        W = torch.randn_like(X)

        def loss(f):
            return lambda X: (f(_skew(X)) * W).sum()

        func = torch.func
        expected = func.jacrev(func.jacrev(loss(torch.matrix_exp)))(X)
        for name, jac in [
            ("reverse over reverse", lambda f: func.jacrev(func.jacrev(f))),
            ("forward over reverse", lambda f: func.jacfwd(func.jacrev(f))),
            ("reverse over forward", lambda f: func.jacrev(func.jacfwd(f))),
        ]:
            self.assertEqual(jac(loss(skew_matrix_exp))(X), expected, msg=name)
        G = torch.randn_like(X)
        results = []
        for f in (skew_matrix_exp, torch.matrix_exp):
            (g,) = torch.autograd.grad(f(_skew(X)), X, G, create_graph=True)
            results.append(torch.autograd.grad(g.pow(2).sum(), X)[0])
        self.assertEqual(results[0], results[1])

    @dtypes(*ALL_DTYPES)
    def test_which_backward(self, device, dtype):
        # The first-order backward takes the eigh formula on the devices of
        # Note [Devices for the eigh backward] for the dtypes of
        # Note [Dtypes of the eigh backward], and torch.matrix_exp's elsewhere
        # and under create_graph; forward AD is torch.matrix_exp's.
        A = _random_skew((2, 5, 5), dtype, device).requires_grad_()
        G = torch.randn_like(A)
        name = "_backward_split" if dtype == torch.float32 else "_backward_eig"
        eigh = int(
            device.split(":")[0] in P._EIGH_DEVICES and dtype in (torch.float32, torch.complex64)
        )
        with _counting(name) as eig, _counting("_matrix_exp_frechet") as block:
            (grad,) = torch.autograd.grad(skew_matrix_exp(A), A, G)
        self.assertEqual((eig.call_count, block.call_count), (eigh, 0))
        if not eigh:
            self.assertEqual(grad, _grad(torch.matrix_exp, A, G), atol=0, rtol=0)
        with _counting(name) as eig, _counting("_matrix_exp_frechet") as block:
            torch.autograd.grad(skew_matrix_exp(A), A, G, create_graph=True)
        self.assertEqual((eig.call_count, block.call_count), (0, eigh))
        with fwAD.dual_level():
            tangent = fwAD.unpack_dual(skew_matrix_exp(fwAD.make_dual(A.detach(), G))).tangent
        self.assertEqual(tangent, torch.func.jvp(torch.matrix_exp, (A.detach(),), (G,))[1], atol=0, rtol=0)

    @dtypes(torch.float32)
    def test_compile(self, device, dtype):
        W = torch.randn(2, 6, 6, dtype=dtype, device=device)

        def f(X):
            return (skew_matrix_exp(_skew(X)) * W).sum()

        X = torch.randn(2, 6, 6, dtype=dtype, device=device, requires_grad=True)
        for backend in ("aot_eager", "inductor"):
            torch._dynamo.reset()
            compiled = torch.compile(lambda X: skew_matrix_exp(_skew(X)), backend=backend, fullgraph=True)
            self.assertEqual(compiled(X), torch.matrix_exp(_skew(X)), atol=0, rtol=0, msg=backend)
        torch._dynamo.reset()
        compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
        self.assertEqual(torch.autograd.grad(compiled(X), X), torch.autograd.grad(f(X), X))
        torch._dynamo.reset()

    @dtypes(torch.float32)
    def test_trace_and_export(self, device, dtype):
        X = torch.randn(2, 5, 5, dtype=dtype, device=device, requires_grad=True)
        # Default grad mode and an input that requires grad, as in training.
        expected = torch.matrix_exp(_skew(X))
        traced = torch.jit.trace(_Exp(), (X,))
        self.assertEqual(traced(X), expected, atol=0, rtol=0)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        self.assertEqual(torch.jit.load(buffer)(X), expected, atol=0, rtol=0)
        exported = torch.export.export(_Exp(), (X,))
        ops = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
        self.assertIn("aten.matrix_exp.default", ops)
        self.assertFalse(any("eigh" in op for op in ops), msg=str(ops))
        self.assertEqual(exported.module()(X), expected, atol=0, rtol=0)

    @dtypes(torch.float32)
    def test_autocast(self, device, dtype):
        # The backward keeps the precisions it chose inside an autocast region.
        A = _random_skew((3, 16, 16), dtype, device)
        G = torch.randn_like(A)
        expected = _grad(skew_matrix_exp, A, G)
        leaf = A.clone().requires_grad_()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            Q = skew_matrix_exp(leaf)
            (grad,) = torch.autograd.grad(Q, leaf, G)
        self.assertEqual(Q, torch.matrix_exp(A), atol=0, rtol=0)
        self.assertEqual(grad.dtype, dtype)
        self.assertEqual(grad, expected, atol=self._grad_atol(A, G), rtol=0)

    @dtypes(*ALL_DTYPES)
    def test_non_finite_input_gives_nan(self, device, dtype):
        # As torch.matrix_exp does, confined to the matrix of the batch that has
        # it, for NaN, inf and an exponential that overflows; eigh alone would raise.
        A = _random_skew((4, 4, 4), dtype, device)
        A[0, 1, 0], A[0, 0, 1] = float("nan"), float("nan")
        A[1, 2, 0], A[1, 0, 2] = float("inf"), -float("inf")
        A[2] *= 1e18 if dtype in (torch.float32, torch.complex64) else 1e200
        A.requires_grad_()
        Q = _eigh_exp(A)
        (grad,) = torch.autograd.grad(Q, A, torch.ones_like(Q))
        self.assertTrue(Q[:3].isnan().any((-2, -1)).all())
        self.assertTrue(grad[:3].isnan().all())
        self.assertEqual(Q, torch.matrix_exp(A.detach()), atol=0, rtol=0, equal_nan=True)
        self.assertTrue(grad[3].isfinite().all())


class _Exp(torch.nn.Module):
    def forward(self, X):
        return skew_matrix_exp(_skew(X))


class TestDividedDifferences(TestCase):
    # The divided differences of the real eigh backward, against mpmath.
    def test_against_mpmath(self):
        import mpmath

        mpmath.mp.dps = 40
        fixed = [0.0, 0.0, 1e-6, 1e-3, 0.0999, 0.1, 0.1001, 0.5, 1.0, 1.0 + 1e-5,
                 3.14159, 4.4934, 4.4935, 10.0, 10.000001, 100.0, 100.0001, 1000.0, 1000.00001]
        g = torch.Generator().manual_seed(0)
        sigma = torch.cat([torch.tensor(fixed, dtype=torch.float64),
                           12 * torch.rand(16, generator=g, dtype=torch.float64)])
        F_C, F_Sn = P._divided_differences(sigma)

        def sinc(x):
            return mpmath.sin(x) / x if x else mpmath.mpf(1)

        def dsinc(x):  # d sinc(sqrt(-t)) / dt
            return (sinc(x) - mpmath.cos(x)) / (2 * x * x) if x else mpmath.mpf(1) / 6

        def divided(f, df, a, b):
            return df(a) if a == b else (f(a) - f(b)) / (b * b - a * a)

        for F, f, df in ((F_C, mpmath.cos, lambda x: sinc(x) / 2), (F_Sn, sinc, dsinc)):
            expected = torch.tensor(
                [[float(divided(f, df, mpmath.mpf(a), mpmath.mpf(b))) for b in sigma.tolist()]
                 for a in sigma.tolist()],
                dtype=torch.float64,
            )
            self.assertEqual(F, expected, atol=2e-11, rtol=0)


instantiate_device_type_tests(TestSkewMatrixExp, globals(), only_for=("cpu", "cuda"))


if __name__ == "__main__":
    run_tests()
