# Owner(s): ["module: nn"]
# The tests that the upstream stack adds to PyTorch's test/nn/test_init.py:
# the methods of TestNNInit go into that file's class of the same name. The
# patch that amends torch/nn/init.py names them. They use only the names
# imported below, which upstream's test_init.py imports too, and call the
# function under test as init.orthogonal_, as that file does. test_stack.py
# runs them here, against the runtime and after each patch of the stack.
# Nothing above the imports is copied upstream.
import torch
import torch.nn.init as init
from torch.testing._internal.common_utils import run_tests, skipIfNoLapack, TestCase


class TestNNInit(TestCase):
    @skipIfNoLapack
    def test_orthogonal_gate_blocks(self):
        # Each gate matrix of a GRU or LSTM weight is (semi) orthogonal, scaled
        # by gain: square, tall (input size < hidden size, proj_size) and wide.
        modules = [
            (torch.nn.GRU(5, 7), 3),
            (torch.nn.GRUCell(7, 5), 3),
            (torch.nn.LSTM(5, 7, proj_size=3), 4),
            (torch.nn.LSTMCell(9, 7), 4),
        ]
        for gain in (1.0, 0.5):
            for module, blocks in modules:
                for name, weight in module.named_parameters():
                    if not name.startswith(("weight_ih", "weight_hh")):
                        continue
                    init.orthogonal_(weight, gain=gain, blocks=blocks)
                    gates = weight.detach().split(weight.size(0) // blocks)
                    self.assertEqual(len(gates), blocks)
                    for W in gates:
                        W = W / gain
                        W = W.t() if W.size(0) < W.size(1) else W
                        eye = torch.eye(W.size(1))
                        error = torch.linalg.matrix_norm(W.t() @ W - eye).item()
                        self.assertLess(error, 1e-5, msg=f"{module} {name}")

    @skipIfNoLapack
    def test_orthogonal_fills_each_block(self):
        # blocks=k gives what k calls on the blocks give, from the same random
        # stream, with or without a generator; more than 2 dims are split along
        # dim 0. blocks=1 is the default.
        cases = [((12, 5), 3), ((8, 3), 4), ((6, 2, 3, 2), 3), ((4, 4), 1)]
        for shape, blocks in cases:
            for use_generator in (True, False):
                torch.manual_seed(0)
                gen = torch.Generator().manual_seed(0) if use_generator else None
                tensor = init.orthogonal_(torch.empty(shape), 1.5, gen, blocks=blocks)
                state = (gen or torch.default_generator).get_state()
                torch.manual_seed(0)
                gen = torch.Generator().manual_seed(0) if use_generator else None
                expected = torch.empty(shape)
                for block in expected.split(shape[0] // blocks):
                    init.orthogonal_(block, 1.5, gen)
                self.assertEqual(tensor, expected, atol=0, rtol=0)
                self.assertEqual((gen or torch.default_generator).get_state(), state)
        torch.manual_seed(0)
        expected = init.orthogonal_(torch.empty(6, 4))
        torch.manual_seed(0)
        self.assertEqual(init.orthogonal_(torch.empty(6, 4), blocks=1), expected)

    def test_orthogonal_block_arguments(self):
        tensor = torch.empty(12, 4)
        for blocks in ("3", 1.5, True):
            with self.assertRaisesRegex(TypeError, "Expected blocks to be an int"):
                init.orthogonal_(tensor, blocks=blocks)
        for blocks in (0, -3, 5):
            with self.assertRaisesRegex(ValueError, "positive divisor"):
                init.orthogonal_(tensor, blocks=blocks)
        with self.assertRaises(ValueError) as cm:
            init.orthogonal_(tensor, blocks=5)
        self.assertExpectedInline(
            str(cm.exception),
            """Expected blocks to be a positive divisor of the number of rows (dim 0) of the tensor, 12. Got blocks=5.""",  # noqa: B950
        )
        with self.assertRaises(TypeError) as cm:
            init.orthogonal_(tensor, blocks=1.5)
        self.assertExpectedInline(
            str(cm.exception),
            """Expected blocks to be an int or None. Got 1.5 of type float.""",
        )
        # blocks is keyword-only, and checked also where there is nothing to fill.
        with self.assertRaises(TypeError):
            init.orthogonal_(tensor, 1, None, 3)
        with self.assertRaisesRegex(ValueError, "positive divisor"):
            init.orthogonal_(torch.empty(0, 4), blocks=-1)
        self.assertEqual(init.orthogonal_(torch.empty(0, 4), blocks=3).shape, (0, 4))


if __name__ == "__main__":
    run_tests()
