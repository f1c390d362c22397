# Owner(s): ["module: nn"]
#
# Tests for the skew matrix exponential behind matrix_exp_map (torch_ortho_patch._skew_expm.skew_matrix_exp).
# See Note [Skew matrix exponential via eigh] and
# Note [Higher order derivatives of the skew matrix exponential].

from unittest import mock

import torch
import torch.autograd.forward_ad as fwAD
from torch.autograd import gradcheck, gradgradcheck
from torch.testing._internal.common_device_type import (
    dtypes,
    instantiate_device_type_tests,
    onlyCPU,
)
from torch.testing._internal.common_utils import parametrize, run_tests, TestCase

import torch_ortho_patch._skew_expm as P
from torch_ortho_patch._skew_expm import skew_matrix_exp


ALL_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
DOUBLE_DTYPES = (torch.float64, torch.complex128)
SHAPES = ((0, 0), (1, 1), (2, 2), (5, 5), (2, 3, 4, 4), (0, 3, 3), (3, 32, 32))
SMALL_SHAPES = ((0, 0), (1, 1), (2, 2), (5, 5), (2, 3, 4, 4))


def _skew(X):
    return X - X.mH


def _skew_matrix_exp_of(X):
    # gradcheck perturbs its input in every direction, and the function is
    # only defined on skew matrices, so check it through A = X - X^H.
    return skew_matrix_exp(_skew(X))


def _random_skew(shape, dtype, device):
    # X / sqrt(n) keeps ||A||_2 around 3 for every n
    n = max(shape[-1], 1)
    return _skew(torch.randn(shape, dtype=dtype, device=device) / n**0.5)


def _compile_accepts_dual_inputs():
    r"""Whether this Dynamo compiles a call whose input carries a forward-AD tangent.

    Older Dynamo traces such a call, and the compiled code computes the tangent
    at run time (aot_eager runs the ATen ops on the dual inputs). Newer Dynamo
    (2.15, for one) refuses the input instead ("Attempted to wrap a dual tensor
    input"), which with fullgraph=False is a graph break: the call runs eagerly.
    Probed on a function that involves none of our code.
    """
    torch._dynamo.reset()
    probe = torch.compile(lambda x: 2 * x, backend="aot_eager", fullgraph=True)
    try:
        with fwAD.dual_level():
            probe(fwAD.make_dual(torch.ones(2), torch.ones(2)))
    except torch._dynamo.exc.Unsupported:
        return False
    finally:
        torch._dynamo.reset()
    return True


def _counting_eigh():
    # Counts the calls that take the eigh path rather than torch.matrix_exp.
    # See Note [Skew matrix exponential via eigh].
    return mock.patch.object(P, "_factorize", side_effect=P._factorize)


def _special_skew(name, dtype, device):
    # Skew matrices with repeated eigenvalues, where the divided differences
    # take their limits; see Note [Skew matrix exponential via eigh].
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


class TestSkewMatrixExp(TestCase):
    def _value_atol(self, A):
        # Both exp(A) and the reference are unitary, so their entries are at
        # most 1; each entry is an inner product of length n, which loses n * eps.
        # The inputs have ||A||_2 of order one (_random_skew).
        return 10 * max(A.size(-1), 1) * torch.finfo(A.dtype).eps

    def _grad_atol(self, A, G):
        # The vjp G -> L(A^H, G) has operator norm at most 1 (|F| <= 1, V unitary),
        # so it is computed to n * eps relative to ||G||_2.
        n = max(A.size(-1), 1)
        scale = torch.linalg.matrix_norm(G, ord=2).max().item() if G.numel() else 1.0
        return 10 * n * torch.finfo(A.dtype).eps * max(scale, 1.0)

    def _check_against_matrix_exp(self, A):
        A = A.detach().requires_grad_()
        Q = skew_matrix_exp(A)
        expected = torch.matrix_exp(A)
        self.assertEqual(Q.dtype, A.dtype)
        self.assertEqual(Q.shape, A.shape)
        self.assertEqual(Q, expected, atol=self._value_atol(A), rtol=0)
        G = torch.randn_like(Q)
        (grad,) = torch.autograd.grad(Q, A, G)
        (expected_grad,) = torch.autograd.grad(expected, A, G)
        self.assertEqual(grad, expected_grad, atol=self._grad_atol(A, G), rtol=0)

    @dtypes(*ALL_DTYPES)
    @parametrize("shape", SHAPES, name_fn=lambda s: "x".join(map(str, s)))
    def test_matches_matrix_exp(self, device, dtype, shape):
        self._check_against_matrix_exp(_random_skew(shape, dtype, device))

    @dtypes(*ALL_DTYPES)
    @parametrize("name", ["zero", "repeated", "repeated_with_zero_block", "batched_mixed"])
    def test_repeated_eigenvalues_match_matrix_exp(self, device, dtype, name):
        self._check_against_matrix_exp(_special_skew(name, dtype, device))

    @dtypes(torch.complex64, torch.complex128)
    def test_complex_repeated_eigenvalues_match_matrix_exp(self, device, dtype):
        # i theta Id has one eigenvalue of multiplicity 4; adding
        # blockdiag(J, J) splits it into two of multiplicity 2.
        iId = 0.7j * torch.eye(4, dtype=dtype, device=device)
        self._check_against_matrix_exp(iId)
        self._check_against_matrix_exp(iId + 0.3 * _special_skew("repeated", dtype, device))

    @dtypes(*DOUBLE_DTYPES)
    @parametrize("shape", SMALL_SHAPES, name_fn=lambda s: "x".join(map(str, s)))
    def test_gradcheck(self, device, dtype, shape):
        X = torch.randn(shape, dtype=dtype, device=device, requires_grad=True)
        self.assertTrue(
            gradcheck(
                _skew_matrix_exp_of,
                (X,),
                check_forward_ad=True,
                check_batched_grad=True,
                # The legacy vmap that gradcheck uses here cannot take the
                # tangent of X.mH for complex X; torch.matrix_exp fails the same way.
                check_batched_forward_grad=not dtype.is_complex,
            )
        )

    @dtypes(*DOUBLE_DTYPES)
    @parametrize("shape", SMALL_SHAPES, name_fn=lambda s: "x".join(map(str, s)))
    def test_gradgradcheck(self, device, dtype, shape):
        X = torch.randn(shape, dtype=dtype, device=device, requires_grad=True)
        self.assertTrue(
            gradgradcheck(_skew_matrix_exp_of, (X,), check_fwd_over_rev=True, fast_mode=True)
        )

    @dtypes(torch.float64)
    def test_gradgradcheck_full(self, device, dtype):
        # The fast mode above checks random projections; check every entry once.
        X = torch.randn(3, 3, dtype=dtype, device=device, requires_grad=True)
        self.assertTrue(gradgradcheck(_skew_matrix_exp_of, (X,), check_batched_grad=True))

    @dtypes(*DOUBLE_DTYPES)
    @parametrize("name", ["zero", "repeated", "repeated_with_zero_block", "batched_mixed"])
    def test_gradcheck_repeated_eigenvalues(self, device, dtype, name):
        # X = A / 2 gives X - X^H = A exactly
        X = (_special_skew(name, dtype, device) / 2).requires_grad_()
        self.assertTrue(gradcheck(_skew_matrix_exp_of, (X,), check_forward_ad=True))
        self.assertTrue(
            gradgradcheck(_skew_matrix_exp_of, (X,), check_fwd_over_rev=True, fast_mode=True)
        )

    @dtypes(torch.float64)
    def test_second_derivatives_all_modes(self, device, dtype):
        # lam and V carry no derivative, so a careless jvp or vjp would miss the
        # second order terms in every mode but one. See
        # Note [Higher order derivatives of the skew matrix exponential].
        X = torch.randn(3, 3, dtype=dtype, device=device)
        W = torch.randn(3, 3, dtype=dtype, device=device)

        def loss(f):
            return lambda X: (f(_skew(X)) * W).sum()

        func = torch.func
        expected = func.jacrev(func.jacrev(loss(torch.matrix_exp)))(X)
        f = loss(skew_matrix_exp)
        for name, H in [
            ("reverse over reverse", func.jacrev(func.jacrev(f))(X)),
            ("forward over reverse", func.jacfwd(func.jacrev(f))(X)),
            ("reverse over forward", func.jacrev(func.jacfwd(f))(X)),
            ("forward over forward", func.jacfwd(func.jacfwd(f))(X)),
        ]:
            self.assertEqual(H, expected, msg=name)

    @dtypes(*DOUBLE_DTYPES)
    def test_reverse_over_forward_eager(self, device, dtype):
        X = torch.randn(2, 4, 4, dtype=dtype, device=device, requires_grad=True)
        T = torch.randn_like(X)
        grads = []
        for f in (skew_matrix_exp, torch.matrix_exp):
            with fwAD.dual_level():
                tangent = fwAD.unpack_dual(f(_skew(fwAD.make_dual(X, T)))).tangent
            grads.append(torch.autograd.grad(tangent.abs().sum(), X)[0])
        self.assertEqual(grads[0], grads[1])

    @dtypes(torch.float64)
    def test_double_backward_matches_matrix_exp(self, device, dtype):
        X = torch.randn(2, 4, 4, dtype=dtype, device=device, requires_grad=True)
        G = torch.randn_like(X)
        results = []
        for f in (skew_matrix_exp, torch.matrix_exp):
            (g,) = torch.autograd.grad(f(_skew(X)), X, G, create_graph=True)
            results.append(torch.autograd.grad(g.pow(2).sum(), X)[0])
        self.assertEqual(results[0], results[1])

    @dtypes(*ALL_DTYPES)
    def test_vmap(self, device, dtype):
        A = _random_skew((3, 2, 4, 4), dtype, device)
        expected = torch.matrix_exp(A)
        self.assertEqual(torch.func.vmap(skew_matrix_exp)(A), expected, atol=0, rtol=0)
        # vmap hides requires_grad, so reach the generated vmap rule of the
        # Function directly; see Note [Skew matrix exponential via eigh].
        def apply(A):
            return P._SkewMatrixExpWithJvp.apply(A)[0]

        nested = torch.func.vmap(torch.func.vmap(apply), in_dims=1)
        with _counting_eigh() as eigh:
            self.assertEqual(torch.func.vmap(apply)(A), expected, atol=self._value_atol(A), rtol=0)
            self.assertEqual(nested(A), expected.transpose(0, 1), atol=self._value_atol(A), rtol=0)
        self.assertEqual(eigh.call_count, 2)

    @dtypes(torch.float64)
    def test_vmap_of_jacobians(self, device, dtype):
        # torch.func.jacrev and jacfwd take real inputs only
        A = _random_skew((2, 3, 3), dtype, device)
        for jac in (torch.func.jacrev, torch.func.jacfwd):
            with _counting_eigh() as eigh:
                J = torch.func.vmap(jac(skew_matrix_exp))(A)
            self.assertEqual(eigh.call_count, 1)
            self.assertEqual(J, torch.func.vmap(jac(torch.matrix_exp))(A))

    @dtypes(torch.float32)
    def test_compile_aot_eager(self, device, dtype):
        W = torch.randn(2, 6, 6, dtype=dtype, device=device)

        def f(X):
            return (skew_matrix_exp(_skew(X)) * W).sum()

        torch._dynamo.reset()
        compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
        X = torch.randn(2, 6, 6, dtype=dtype, device=device, requires_grad=True)
        out = f(X)
        (grad,) = torch.autograd.grad(out, X)
        compiled_out = compiled(X)
        (compiled_grad,) = torch.autograd.grad(compiled_out, X)
        self.assertEqual(compiled_out, out)
        self.assertEqual(compiled_grad, grad)
        # Forward AD through a compiled call gives the right tangent; see
        # Note [Forward AD under torch.compile]. Where Dynamo refuses dual inputs,
        # the fullgraph compile must refuse ours the same way, and a default
        # compile falls back to eager for them.
        T = torch.randn_like(X)
        if not _compile_accepts_dual_inputs():
            with fwAD.dual_level(), self.assertRaisesRegex(
                torch._dynamo.exc.Unsupported, "dual tensor"
            ):
                compiled(fwAD.make_dual(X.detach(), T))
            torch._dynamo.reset()
            compiled = torch.compile(f, backend="aot_eager")
        with fwAD.dual_level():
            tangent = fwAD.unpack_dual(compiled(fwAD.make_dual(X.detach(), T))).tangent

        def reference(X):
            return (torch.matrix_exp(_skew(X)) * W).sum()

        self.assertEqual(tangent, torch.func.jvp(reference, (X.detach(),), (T,))[1])
        torch._dynamo.reset()

    @onlyCPU
    @dtypes(torch.float32, torch.complex64)
    def test_batched_two_threads(self, device, dtype):
        # Batched LU is wrong on this CPU build with two threads for batch >= 2
        # and n >= 160 (pytorch#142815). eigh does not use LU, but check that a
        # batched eigh of A^H A there agrees with one matrix at a time, for a
        # real A (a real symmetric eigh) and a complex one (a Hermitian eigh).
        # The backward has no factorisation; other tests cover it.
        A = _random_skew((3, 256, 256), dtype, device).requires_grad_()
        S = A.detach().mH @ A.detach()
        old = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            mu, U = torch.linalg.eigh(S)
            mu_single = torch.stack([torch.linalg.eigh(s)[0] for s in S])
            Q = skew_matrix_exp(A)
            Q_single = torch.stack([skew_matrix_exp(a) for a in A])
        finally:
            torch.set_num_threads(old)
        self.assertEqual(mu, mu_single)
        reconstructed = U @ torch.diag_embed(mu.to(U.dtype)) @ U.mH
        scale = torch.linalg.matrix_norm(S, ord=2).max().item()
        self.assertEqual(reconstructed, S, atol=self._value_atol(A) * scale, rtol=0)
        self.assertEqual(Q, Q_single)
        self.assertEqual(Q, torch.matrix_exp(A.detach()), atol=self._value_atol(A), rtol=0)

    @dtypes(torch.float32, torch.complex64)
    def test_inference_is_matrix_exp(self, device, dtype):
        # See Note [Skew matrix exponential via eigh]: without a derivative to
        # take, the result is torch.matrix_exp's, bit for bit.
        A = _random_skew((2, 5, 5), dtype, device).requires_grad_()
        with _counting_eigh() as eigh:
            with torch.no_grad():
                Q = skew_matrix_exp(A)
            Q_detached = skew_matrix_exp(A.detach())
        self.assertEqual(eigh.call_count, 0)
        expected = torch.matrix_exp(A.detach())
        self.assertEqual(Q, expected, atol=0, rtol=0)
        self.assertEqual(Q_detached, expected, atol=0, rtol=0)
        self.assertFalse(Q.requires_grad)

    @dtypes(torch.float64)
    def test_derivative_modes_use_eigh(self, device, dtype):
        A = _random_skew((5, 5), dtype, device)
        W = torch.randn_like(A)

        def loss(A):
            return (skew_matrix_exp(A) * W).sum()

        for name, run in [
            ("backward", lambda: skew_matrix_exp(A.clone().requires_grad_())),
            ("torch.func.grad", lambda: torch.func.grad(loss)(A)),
            ("torch.func.vjp", lambda: torch.func.vjp(skew_matrix_exp, A)),
            ("torch.func.jvp", lambda: torch.func.jvp(skew_matrix_exp, (A,), (W,))),
        ]:
            with _counting_eigh() as eigh:
                run()
            self.assertEqual(eigh.call_count, 1, msg=name)
        with _counting_eigh() as eigh, fwAD.dual_level():
            tangent = fwAD.unpack_dual(skew_matrix_exp(fwAD.make_dual(A, W))).tangent
        self.assertEqual(eigh.call_count, 1)
        self.assertEqual(tangent, torch.func.jvp(torch.matrix_exp, (A,), (W,))[1])

    @dtypes(torch.float32, torch.complex128)
    def test_non_finite_input_gives_nan(self, device, dtype):
        # As torch.matrix_exp does, where eigh alone would raise.
        A = _random_skew((3, 4, 4), dtype, device)
        A[0, 1, 0], A[0, 0, 1] = float("nan"), float("nan")
        A[1, 2, 0], A[1, 0, 2] = float("inf"), -float("inf")
        A.requires_grad_()
        Q = skew_matrix_exp(A)
        (grad,) = torch.autograd.grad(Q, A, torch.ones_like(Q))
        self.assertTrue(Q[:2].isnan().all())
        self.assertTrue(grad[:2].isnan().all())
        self.assertEqual(Q[2], torch.matrix_exp(A[2].detach()), atol=self._value_atol(A), rtol=0)
        self.assertTrue(grad[2].isfinite().all())
        with torch.no_grad():
            self.assertTrue(skew_matrix_exp(A)[:2].isnan().all())

    def test_errors(self, device):
        with self.assertRaises(ValueError) as cm:
            skew_matrix_exp(torch.zeros(3, device=device))
        self.assertExpectedInline(
            str(cm.exception),
            """Expected a batch of square matrices of shape (*, n, n). Got a tensor of shape (3,).""",
        )
        with self.assertRaises(ValueError) as cm:
            skew_matrix_exp(torch.zeros(2, 3, 4, device=device))
        self.assertExpectedInline(
            str(cm.exception),
            """Expected a batch of square matrices of shape (*, n, n). Got a tensor of shape (2, 3, 4).""",
        )
        with self.assertRaises(ValueError) as cm:
            skew_matrix_exp(torch.zeros(3, 3, dtype=torch.float16, device=device))
        self.assertExpectedInline(
            str(cm.exception),
            """Expected a floating point or complex tensor of dtype float32, float64, complex64 or complex128. Got torch.float16.""",
        )


class TestSkewExpHelpers(TestCase):
    # The divided differences and Bessel ratios behind the eigh path; see
    # Note [Skew matrix exponential via eigh].

    def _sigmas(self):
        # zeros and clusters, both sides of the series and branch boundaries
        # (sigma = 1 and 2, |t_j - t_k| = 1/2), a stationary point of sinc
        # (4.4934), large values, and random ones
        fixed = [0.0, 0.0, 1e-6, 1e-4, 1e-3, 0.1, 0.1 + 1e-7, 0.5, 0.99, 1.0, 1.01,
                 1.0 + 1e-5, 1.99, 2.0, 2.01, 2.1, 3.14159, 4.4934, 4.4935, 10.0,
                 10.001, 30.0, 100.0, 100.0001]
        g = torch.Generator().manual_seed(0)
        return torch.cat([torch.tensor(fixed, dtype=torch.float64),
                          12 * torch.rand(64, generator=g, dtype=torch.float64)])

    def test_bessel_ratios(self):
        x = torch.tensor([0.0, 0.3, 1.5, 2.0, 2.5, 5.0, 50.0], dtype=torch.float64)
        u = P._bessel_ratios(x, 3)
        self.assertEqual(u[0], torch.tensor([1.0, 1 / 3, 1 / 15, 1 / 105], dtype=torch.float64))
        # closed forms where they do not cancel
        x = x[3:]
        s, c = torch.sin(x), torch.cos(x)
        j = [s / x, s / x**2 - c / x, (3 / x**3 - 1 / x) * s - 3 * c / x**2,
             (15 / x**4 - 6 / x**2) * s - (15 / x**3 - 1 / x) * c]
        expected = torch.stack([j[k] / x**k for k in range(4)], dim=-1)
        self.assertEqual(u[3:], expected, atol=1e-15, rtol=1e-13)

    def test_divided_differences_double(self):
        # Off the diagonal, well apart, the quotients themselves; on it, f'.
        sigma = self._sigmas()
        F_C, F_Sn = P._divided_differences(sigma)
        a, b = sigma.unsqueeze(-1), sigma.unsqueeze(-2)
        apart = (b * b - a * a).abs() > 0.1
        sinc = P._sinc
        self.assertEqual(F_C[apart], ((torch.cos(a) - torch.cos(b)) / (b * b - a * a))[apart],
                         atol=1e-14, rtol=0)
        self.assertEqual(F_Sn[apart], ((sinc(a) - sinc(b)) / (b * b - a * a))[apart],
                         atol=1e-14, rtol=0)
        u = P._bessel_ratios(sigma, 1)
        self.assertEqual(F_C.diagonal(), u[:, 0] / 2, atol=1e-15, rtol=0)
        self.assertEqual(F_Sn.diagonal(), u[:, 1] / 2, atol=1e-15, rtol=0)
        self.assertEqual(F_C, F_C.mT)
        self.assertEqual(F_Sn, F_Sn.mT)

    def test_divided_differences_single(self):
        # The single precision scheme is accurate to a few eps in absolute terms.
        sigma = self._sigmas()
        expected = P._divided_differences(sigma)
        found = P._divided_differences_single(sigma.float())
        for F, F_ref in zip(found, expected):
            self.assertEqual(F.dtype, torch.float32)
            self.assertEqual(F.double(), F_ref, atol=4 * torch.finfo(torch.float32).eps, rtol=0)

    def test_accuracy_scales_with_squared_norm(self):
        # eigh of A^H A is accurate to eps ||A||^2 (see the Note); at large ||A||
        # the error grows with it, within 10 eps max(||A||_2^2, n).
        g = torch.Generator().manual_seed(0)
        n = 32
        X = torch.randn(3, n, n, generator=g, dtype=torch.float64)
        B = X - X.mT
        B = B / torch.linalg.matrix_norm(B, ord=2, keepdim=True)
        for norm in (1.0, 10.0, 100.0):
            A = (norm * B).float().requires_grad_()
            Q = skew_matrix_exp(A).double()
            eps = torch.finfo(torch.float32).eps
            bound = 10 * eps * max(norm**2, n)
            Id = torch.eye(n, dtype=torch.float64)
            self.assertLessEqual((Q.mT @ Q - Id).abs().max().item(), bound, msg=f"norm {norm}")
            self.assertEqual(Q, torch.matrix_exp(norm * B), atol=bound, rtol=0, msg=f"norm {norm}")


instantiate_device_type_tests(TestSkewMatrixExp, globals(), only_for=("cpu", "cuda"))


if __name__ == "__main__":
    run_tests()
