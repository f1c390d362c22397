# Owner(s): ["module: nn"]
r"""Regression tests for what users really do: the meta device, torch.compile
with fullgraph=True on both sides of the LU threshold, and copying models."""

import copy
import warnings

import torch
from torch import nn
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize,
    run_tests,
    TestCase,
)

import torch_ortho_patch as tp
from _block_checks import check_blocks_orthogonal


MAPS = ("matrix_exp", "cayley", "householder")
# Note [CPU batched LU] switches paths at n = 128: a size on each side.
SIZES = (8, 130)


class TestMeta(TestCase):
    def test_meta_forward_with_autograd(self):
        # torch.func model ensembling copies a model to the meta device.
        for module, name, blocks in (
            (nn.Linear(4, 4), "weight", None),
            (nn.GRU(4, 4), "weight_hh_l0", 3),
        ):
            tp.orthogonal(module, name, blocks=blocks)
            meta = copy.deepcopy(module).to("meta")
            W = getattr(meta, name)
            self.assertEqual(W.device.type, "meta")
            self.assertEqual(W.shape, getattr(module, name).shape)
            self.assertTrue(W.requires_grad)

    def test_meta_after_install(self):
        with tp.installed():
            m = torch.nn.utils.parametrizations.orthogonal(nn.Linear(4, 4))
            out = copy.deepcopy(m).to("meta")(torch.empty(2, 4, device="meta"))
        self.assertEqual(out.shape, (2, 4))


class TestCompileFullgraph(TestCase):
    @parametrize("orthogonal_map", MAPS)
    @parametrize("blocks", [None, 3])
    @parametrize("n", SIZES)
    def test_map_fullgraph(self, orthogonal_map, blocks, n):
        torch._dynamo.reset()
        X = torch.randn(3 * n if blocks else n, n, requires_grad=True)

        def f(X):
            return tp.orthogonal_map(X, orthogonal_map, blocks=blocks)

        compiled = torch.compile(f, backend="eager", fullgraph=True)
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            Q = compiled(X)
            Q.sum().backward()
        finally:
            torch.set_num_threads(threads)
        check_blocks_orthogonal(Q.detach(), blocks or 1, f"{orthogonal_map} n={n}")
        self.assertEqual(Q, f(X), atol=1e-4, rtol=0)

    @parametrize("orthogonal_map", MAPS)
    def test_parametrization_fullgraph_aot(self, orthogonal_map):
        # The parametrization of a GRU gate weight, forward and backward
        # through AOTAutograd.
        torch._dynamo.reset()
        gru = tp.orthogonal(nn.GRU(6, 6), "weight_hh_l0", orthogonal_map, blocks=3)
        parametrization = gru.parametrizations.weight_hh_l0[0]
        X = gru.parametrizations.weight_hh_l0.original.detach().requires_grad_()
        Q = torch.compile(parametrization, backend="aot_eager", fullgraph=True)(X)
        Q.sum().backward()
        check_blocks_orthogonal(Q.detach(), 3, orthogonal_map)
        self.assertIsNotNone(X.grad)


class TestCopies(TestCase):
    def test_deepcopy_after_forward_without_install(self):
        # EMA and best-model copies: deepcopy after a training forward.
        torch.manual_seed(0)
        for cls, k in ((nn.GRU, 3), (nn.LSTM, 4)):
            rnn = tp.orthogonal(cls(4, 4), "weight_hh_l0", blocks=k)
            x = torch.randn(3, 2, 4)
            rnn(x)[0].sum().backward()
            ema = copy.deepcopy(rnn)
            self.assertEqual(ema(x)[0], rnn(x)[0])
            check_blocks_orthogonal(ema.weight_hh_l0, k, cls.__name__)

    def test_orthogonal_twice_is_orthogonal(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = tp.orthogonal(tp.orthogonal(nn.Linear(5, 5)), "weight", "cayley")
        check_blocks_orthogonal(m.weight, 1, "twice")


instantiate_parametrized_tests(TestCompileFullgraph)

if __name__ == "__main__":
    run_tests()
