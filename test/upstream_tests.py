# Owner(s): ["module: nn"]
# The tests that the upstream stack adds to PyTorch's
# test/nn/test_parametrization.py: the methods of TestNNParametrization go into
# that class, those of TestNNParametrizationDevice into the device-generic one,
# and those of TestNN, which test RNNBase, into TestNN of test/test_nn.py.
# Each patch of torch_ortho_patch._patches names its methods. They use only the
# names imported below, which upstream's test file imports too, and refer to
# the functions under test as torch.nn.utils.parametrizations.<name>, as that
# file does. test_stack.py runs them here, against the runtime and after each
# patch of the stack. Nothing above the imports is copied upstream.
from copy import deepcopy

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
from torch.__future__ import get_swap_module_params_on_conversion
from torch.testing._internal.common_device_type import instantiate_device_type_tests
from torch.testing._internal.common_nn import NNTestCase
from torch.testing._internal.common_utils import (
    gradcheck,
    instantiate_parametrized_tests,
    run_tests,
    skipIfNoLapack,
    swap,
)


class TestNNParametrization(NNTestCase):
    @skipIfNoLapack
    @swap([True, False])
    def test_orthogonal_householder_weight_decay(self):
        # Weight decay moves the entries of the diagonal of the original
        # tensor off +-1. Each column must keep norm 1 and its sign.
        m = torch.nn.utils.parametrizations.orthogonal(
            nn.Linear(3, 5), orthogonal_map="householder", use_trivialization=False
        )
        X = m.parametrizations.weight.original
        with torch.no_grad():
            X.diagonal().copy_(torch.tensor([-1.0, 1.0, 1.0]))
            Q_exact = m.weight.clone()
            X.diagonal().copy_(torch.tensor([-0.99, 0.99, 0.5]))
        Q = m.weight.detach()
        self.assertEqual(Q.mT @ Q, torch.eye(3), atol=1e-6, rtol=0)
        self.assertEqual(Q, Q_exact)

        # One AdamW step at its defaults, as in training.
        m = torch.nn.utils.parametrizations.orthogonal(
            nn.Linear(4, 6), orthogonal_map="householder"
        )
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        m(torch.randn(2, 4)).sum().backward()
        opt.step()
        Q = m.weight.detach()
        self.assertEqual(Q.mT @ Q, torch.eye(4), atol=1e-5, rtol=0)

    @skipIfNoLapack
    @swap([True, False])
    def test_orthogonal_rank_deficient(self):
        # A zero or rank-deficient initial value is orthogonalized, not turned
        # into a matrix with zero columns.
        for orthogonal_map in ("matrix_exp", "cayley", "householder"):
            for shape in ((4, 4), (5, 3), (3, 5)):
                m = nn.Linear(shape[1], shape[0])
                nn.init.zeros_(m.weight)
                torch.nn.utils.parametrizations.orthogonal(
                    m, orthogonal_map=orthogonal_map
                )
                Q = m.weight.detach()
                Q = Q.mT if shape[0] < shape[1] else Q
                k = min(shape)
                self.assertEqual(Q.mT @ Q, torch.eye(k), atol=1e-5, rtol=0)
                # An assigned matrix of rank one.
                m.weight = torch.ones(shape)
                Q = m.weight.detach()
                Q = Q.mT if shape[0] < shape[1] else Q
                self.assertEqual(Q.mT @ Q, torch.eye(k), atol=1e-5, rtol=0)
                parametrize.remove_parametrizations(m, "weight")

    @swap([True, False])
    def test_orthogonal_argument_types(self):
        m = nn.Linear(4, 4)
        with self.assertRaisesRegex(ValueError, "has to be one of"):
            torch.nn.utils.parametrizations.orthogonal(m, "weight", "__class__")
        with self.assertRaisesRegex(TypeError, "Expected orthogonal_map to be a str"):
            torch.nn.utils.parametrizations.orthogonal(m, "weight", 3)
        m.register_buffer("steps", torch.zeros(4, 4, dtype=torch.long))
        with self.assertRaisesRegex(TypeError, "floating point or complex"):
            torch.nn.utils.parametrizations.orthogonal(m, "steps")
        self.assertFalse(parametrize.is_parametrized(m))

    @skipIfNoLapack
    @swap([True, False])
    def test_orthogonal_on_parametrized_tensor(self):
        # orthogonal() on a tensor that is parametrized already: its base is
        # never set, and the composition must still be orthogonal.
        m = nn.Linear(4, 4)
        torch.nn.utils.parametrizations.orthogonal(m)
        torch.nn.utils.parametrizations.orthogonal(m, orthogonal_map="cayley")
        Q = m.weight
        Q.sum().backward()
        self.assertEqual(Q.detach().mT @ Q.detach(), torch.eye(4), atol=1e-5, rtol=0)

    @skipIfNoLapack
    @swap([True, False])
    def test_orthogonal_rnn_gates_warn(self):
        if get_swap_module_params_on_conversion():
            # swap_tensors refuses a tensor that has weak references, and RNNBase
            # keeps weak references to its weights, so parametrizing one fails on
            # the swap path (https://github.com/pytorch/pytorch/issues/186796).
            # Drop this branch once swap_tensors allows plain weak references
            # (https://github.com/pytorch/pytorch/pull/190739).
            with self.assertRaisesRegex(RuntimeError, "has weakref associated"):
                parametrize.register_parametrization(
                    nn.GRU(2, 2), "weight_hh_l0", nn.Identity()
                )
            return
        with self.assertWarnsRegex(UserWarning, "Pass blocks=3"):
            torch.nn.utils.parametrizations.orthogonal(nn.GRU(4, 4), "weight_hh_l0")
        with self.assertWarnsRegex(UserWarning, "have orthonormal columns"):
            torch.nn.utils.parametrizations.orthogonal(
                nn.LSTM(3, 4, proj_size=2), "weight_hh_l0"
            )
        # The cells stack their gates as GRU and LSTM do.
        with self.assertWarnsRegex(UserWarning, "'weight_hh' of GRUCell.*blocks=3"):
            torch.nn.utils.parametrizations.orthogonal(nn.GRUCell(4, 4), "weight_hh")
        with self.assertWarnsRegex(UserWarning, "'weight_ih' of LSTMCell.*blocks=4"):
            torch.nn.utils.parametrizations.orthogonal(nn.LSTMCell(3, 4), "weight_ih")
        # Matrices that are not stacked gates, and blocks=1, do not warn.
        self.assertNotWarn(
            lambda: torch.nn.utils.parametrizations.orthogonal(nn.Linear(20, 40))
        )
        self.assertNotWarn(
            lambda: torch.nn.utils.parametrizations.orthogonal(
                nn.GRU(4, 4), "weight_hh_l0", blocks=1
            )
        )
        self.assertNotWarn(
            lambda: torch.nn.utils.parametrizations.orthogonal(
                nn.RNN(4, 4), "weight_hh_l0"
            )
        )
        self.assertNotWarn(
            lambda: torch.nn.utils.parametrizations.orthogonal(
                nn.RNNCell(4, 4), "weight_hh"
            )
        )
        self.assertNotWarn(
            lambda: torch.nn.utils.parametrizations.orthogonal(
                nn.LSTMCell(4, 4), "weight_hh", blocks=4
            )
        )

    @swap([True, False])
    def test_orthogonal_blocks_errors(self):
        orthogonal = torch.nn.utils.parametrizations.orthogonal
        for blocks in (0, -3, 4):
            with self.assertRaisesRegex(ValueError, "positive divisor"):
                orthogonal(nn.Linear(2, 6), blocks=blocks)
        for blocks in ("3", 1.5, True):
            with self.assertRaisesRegex(TypeError, "Expected blocks to be an int"):
                orthogonal(nn.Linear(2, 6), blocks=blocks)
        with self.assertRaisesRegex(ValueError, "Expected blocks=3"):
            orthogonal(nn.GRU(2, 2), "weight_hh_l0", blocks=2)
        with self.assertRaisesRegex(ValueError, "Expected blocks=4"):
            orthogonal(nn.LSTM(2, 2), "weight_ih_l0", blocks=2)
        with self.assertRaisesRegex(ValueError, "Expected blocks=3"):
            orthogonal(nn.GRUCell(2, 2), "weight_hh", blocks=2)
        with self.assertRaisesRegex(ValueError, "Expected blocks=4"):
            orthogonal(nn.LSTMCell(2, 2), "weight_ih", blocks=2)

    @swap([True, False])
    def test_orthogonal_maps_errors(self):
        P = torch.nn.utils.parametrizations
        for fn in (P.matrix_exp_map, P.cayley_map, P.householder_map):
            with self.assertRaisesRegex(TypeError, "Expected X to be a Tensor"):
                fn([[1.0]])
            with self.assertRaisesRegex(ValueError, "Expected a matrix"):
                fn(torch.ones(3))
            with self.assertRaisesRegex(TypeError, "floating point or complex"):
                fn(torch.ones(3, 3, dtype=torch.long))
        with self.assertRaisesRegex(ValueError, "does not support complex"):
            P.householder_map(torch.ones(3, 3, dtype=torch.complex64))
        for method in ("foo", "__class__", None):
            with self.assertRaisesRegex(ValueError, "has to be one of"):
                P.orthogonal_map(torch.ones(3, 3), method)
        with self.assertRaisesRegex(ValueError, "positive divisor"):
            P.orthogonal_map(torch.ones(6, 3), blocks=4)

    @skipIfNoLapack
    def test_orthogonal_matrix_exp_derivatives(self):
        P = torch.nn.utils.parametrizations

        def reference_map(L):
            L = L.tril()
            return torch.matrix_exp(L - L.mH)

        # The value is torch.matrix_exp's, whether or not a gradient is taken.
        X = torch.randn(2, 6, 6, requires_grad=True)
        Q = P.matrix_exp_map(X)
        self.assertEqual(Q, reference_map(X), atol=0, rtol=0)
        with torch.no_grad():
            self.assertEqual(P.matrix_exp_map(X), Q, atol=0, rtol=0)
        for shape in ((3, 3), (4, 2), (2, 3, 5)):
            X = torch.randn(shape, dtype=torch.double, requires_grad=True)
            gradcheck(P.matrix_exp_map, (X,), check_forward_ad=True)
            torch.autograd.gradgradcheck(P.matrix_exp_map, (X,))
        Z = torch.randn(3, 5, 5, dtype=torch.cdouble, requires_grad=True)
        gradcheck(P.matrix_exp_map, (Z,))

        # In single precision the gradient is at least as accurate as that of
        # torch.matrix_exp, against a double precision reference, up to large
        # norms.
        def grad(f, L, G):
            L = L.detach().requires_grad_()
            return torch.autograd.grad(f(L), L, G)[0]

        pairs = ((torch.float, torch.double), (torch.cfloat, torch.cdouble))
        for dtype, double in pairs:
            for norm in (1.0, 100.0, 1000.0):
                L = torch.randn(3, 16, 16, dtype=double).tril()
                L = norm * L / torch.linalg.matrix_norm(L - L.mH, ord=2, keepdim=True)
                G = torch.randn(3, 16, 16, dtype=double)
                expected = grad(reference_map, L, G)
                ours = grad(P.matrix_exp_map, L.to(dtype), G.to(dtype))
                theirs = grad(reference_map, L.to(dtype), G.to(dtype))
                self.assertLessEqual(
                    (ours - expected).norm().item(), (theirs - expected).norm().item()
                )


class TestNNParametrizationDevice(NNTestCase):
    @skipIfNoLapack
    @swap([True, False])
    def test_orthogonal_blocks(self, device):
        if get_swap_module_params_on_conversion():
            # swap_tensors refuses a tensor that has weak references, and RNNBase
            # keeps weak references to its weights, so parametrizing one fails on
            # the swap path (https://github.com/pytorch/pytorch/issues/186796).
            # Drop this branch once swap_tensors allows plain weak references
            # (https://github.com/pytorch/pytorch/pull/190739).
            with self.assertRaisesRegex(RuntimeError, "has weakref associated"):
                parametrize.register_parametrization(
                    nn.GRU(2, 2), "weight_hh_l0", nn.Identity()
                )
            return
        orthogonal = torch.nn.utils.parametrizations.orthogonal

        def assert_blocks_orthogonal(W, k):
            for G in W.detach().chunk(k, dim=-2):
                G = G.mT if G.size(-2) < G.size(-1) else G
                eye = torch.eye(G.size(-1), device=device)
                self.assertEqual(G.mT @ G, eye, atol=1e-5, rtol=0)

        for cls, k in ((nn.GRU, 3), (nn.LSTM, 4)):
            for orthogonal_map in ("matrix_exp", "cayley", "householder"):
                for use_trivialization in (True, False):
                    # weight_ih_l0 has tall gates (5, 3), weight_hh_l0 square ones.
                    rnn = cls(3, 5).to(device)
                    keys = set(rnn.state_dict())
                    for name in ("weight_ih_l0", "weight_hh_l0"):
                        orthogonal(
                            rnn,
                            name,
                            orthogonal_map,
                            use_trivialization=use_trivialization,
                            blocks=k,
                        )
                        assert_blocks_orthogonal(getattr(rnn, name), k)
                    parametrization = rnn.parametrizations.weight_hh_l0[0]
                    self.assertIn(f"blocks={k}", repr(parametrization))
                    if use_trivialization:
                        self.assertEqual(parametrization.base.shape, (k, 5, 5))
                    x = torch.randn(2, 4, 3, device=device)
                    rnn(x)[0].sum().backward()
                    original = rnn.parametrizations.weight_hh_l0.original
                    self.assertIsNotNone(original.grad)
                    with torch.no_grad():
                        original.add_(0.1 * torch.randn_like(original))
                    assert_blocks_orthogonal(rnn.weight_hh_l0, k)
                    # The keys name the same tensors as without blocks.
                    keys_after = {
                        key.replace("parametrizations.", "").split(".original")[0]
                        for key in rnn.state_dict()
                        if not key.endswith(".base")
                    }
                    self.assertEqual(keys_after, keys)
        # The cells, with tall gates in weight_ih and square ones in weight_hh.
        for cls, k in ((nn.GRUCell, 3), (nn.LSTMCell, 4)):
            cell = cls(3, 5).to(device)
            for name in ("weight_ih", "weight_hh"):
                orthogonal(cell, name, blocks=k)
                assert_blocks_orthogonal(getattr(cell, name), k)
            out = cell(torch.randn(2, 3, device=device))
            out = out[0] if isinstance(out, tuple) else out
            out.sum().backward()
            self.assertIsNotNone(cell.parametrizations.weight_hh.original.grad)
        # Wide blocks have orthonormal rows, with the default map.
        m = orthogonal(nn.Linear(6, 4).to(device), blocks=2)
        assert_blocks_orthogonal(m.weight, 2)
        # blocks=1 is the behaviour without blocks.
        torch.manual_seed(0)
        a = orthogonal(nn.Linear(3, 6).to(device)).weight
        torch.manual_seed(0)
        b = orthogonal(nn.Linear(3, 6).to(device), blocks=1).weight
        self.assertEqual(a, b, atol=0, rtol=0)

    @skipIfNoLapack
    @swap([True, False])
    def test_orthogonal_maps(self, device):
        P = torch.nn.utils.parametrizations
        maps = {
            "matrix_exp": P.matrix_exp_map,
            "cayley": P.cayley_map,
            "householder": P.householder_map,
        }
        for name, fn in maps.items():
            for shape in ((4, 4), (5, 3), (3, 5), (2, 4, 2)):
                # Without a base, the parametrization is the map of its original.
                m = nn.Module()
                m.weight = nn.Parameter(torch.randn(shape, device=device))
                P.orthogonal(m, "weight", name, use_trivialization=False)
                X = m.parametrizations.weight.original
                self.assertEqual(fn(X), m.weight, atol=0, rtol=0)
                self.assertEqual(P.orthogonal_map(X, name), m.weight, atol=0, rtol=0)
                Q = fn(X).detach()
                Q = Q.mT if shape[-2] < shape[-1] else Q
                eye = torch.eye(Q.size(-1), device=device).expand_as(Q.mT @ Q)
                self.assertEqual(Q.mT @ Q, eye, atol=1e-5, rtol=0)
            # Blocks are mapped one by one.
            X = torch.randn(2, 12, 4, device=device)
            expected = torch.cat([fn(B) for B in X.split(4, dim=-2)], dim=-2)
            self.assertEqual(P.orthogonal_map(X, name, blocks=3), expected)

    @skipIfNoLapack
    @swap([True, False])
    def test_orthogonal_half_precision(self, device):
        if get_swap_module_params_on_conversion():
            # swap_tensors refuses a tensor that has weak references, and RNNBase
            # keeps weak references to its weights, so parametrizing one fails on
            # the swap path (https://github.com/pytorch/pytorch/issues/186796).
            # Drop this branch once swap_tensors allows plain weak references
            # (https://github.com/pytorch/pytorch/pull/190739).
            with self.assertRaisesRegex(RuntimeError, "has weakref associated"):
                parametrize.register_parametrization(
                    nn.GRU(2, 2), "weight_hh_l0", nn.Identity()
                )
            return
        P = torch.nn.utils.parametrizations
        for dtype in (torch.float16, torch.bfloat16):
            for orthogonal_map in ("matrix_exp", "cayley", "householder"):
                gru = nn.GRU(4, 4, device=device, dtype=dtype)
                P.orthogonal(gru, "weight_hh_l0", orthogonal_map, blocks=3)
                self.assertEqual(gru.parametrizations.weight_hh_l0[0].base.dtype, dtype)
                W = gru.weight_hh_l0
                self.assertEqual(W.dtype, dtype)
                for G in W.detach().float().split(4):
                    eye = torch.eye(4, device=device)
                    self.assertEqual(G.mT @ G, eye, atol=1e-2, rtol=0)
                x = torch.randn(3, 2, 4, device=device, dtype=dtype)
                gru(x)[0].sum().backward()
            # The maps compute in float32 and return the dtype of their input.
            X = torch.randn(6, 6, device=device, dtype=dtype)
            Q = P.matrix_exp_map(X)
            self.assertEqual(Q.dtype, dtype)
            self.assertEqual(Q, P.matrix_exp_map(X.float()).to(dtype))


class TestNN(NNTestCase):
    # Tests of RNNBase, which upstream keeps in test/test_nn.py.
    def test_rnn_parametrized_weight_read_once(self):
        class Counting(nn.Module):
            def __init__(self):
                super().__init__()
                self.calls = 0

            def forward(self, X):
                self.calls += 1
                return 2 * X

        x = torch.randn(5, 2, 3)
        for cls in (nn.RNN, nn.GRU, nn.LSTM):
            rnn = cls(3, 4)
            expected = rnn(x)[0]
            with torch.no_grad():
                rnn.weight_hh_l0.div_(2)
            counting = Counting()
            torch.nn.utils.parametrize.register_parametrization(
                rnn, "weight_hh_l0", counting
            )
            for _ in range(2):
                counting.calls = 0
                out = rnn(x)[0]
                self.assertEqual(counting.calls, 1)
                self.assertEqual(out, expected)
            # A change of the original is seen by the next forward.
            with torch.no_grad():
                rnn.parametrizations.weight_hh_l0.original.zero_()
            self.assertNotEqual(rnn(x)[0], expected)

    def test_rnn_deepcopy_after_forward(self):
        class Double(nn.Module):
            def forward(self, X):
                return 2 * X

        x = torch.randn(5, 2, 3)
        for cls in (nn.RNN, nn.GRU, nn.LSTM):
            rnn = cls(3, 4)
            torch.nn.utils.parametrize.register_parametrization(
                rnn, "weight_hh_l0", Double()
            )
            rnn(x)[0].sum().backward()
            copy = deepcopy(rnn)
            self.assertEqual(copy(x)[0], rnn(x)[0])
            # The copy computes with its own weights.
            with torch.no_grad():
                copy.parametrizations.weight_hh_l0.original.zero_()
            self.assertNotEqual(copy(x)[0], rnn(x)[0])
            copy(x)[0].sum().backward()
            self.assertIsNotNone(copy.parametrizations.weight_hh_l0.original.grad)


if __name__ == "__main__":
    # test_stack.py instantiates these classes where it runs them.
    instantiate_device_type_tests(
        TestNNParametrizationDevice, globals(), only_for=("cpu", "cuda")
    )
    instantiate_parametrized_tests(TestNNParametrization)
    instantiate_parametrized_tests(TestNN)
    run_tests()
