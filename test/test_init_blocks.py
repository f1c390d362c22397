# Owner(s): ["module: nn"]
r"""``torch_ortho_patch.init.orthogonal_`` against the installed torch's
``nn.init.orthogonal_``: bit for bit without ``blocks``, per gate with it.

See Note [Row blocks of orthogonal_] in the amended ``torch/nn/init.py``
(``python -m torch_ortho_patch diff``). The tests that go upstream with the
patch are in ``upstream_init_tests.py``.
"""

import torch
from torch import nn
from torch.testing._internal.common_device_type import (
    dtypes,
    instantiate_device_type_tests,
)
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize,
    run_tests,
    skipIfNoLapack,
    TestCase,
)

import torch_ortho_patch
from torch_ortho_patch import _install, init as ours


# Square, tall, wide, more than 2 dims, a single row or column, and empty.
SHAPES = [(5, 5), (12, 4), (4, 12), (6, 2, 3), (2, 3, 4, 5), (1, 7), (7, 1), (0, 3), (3, 0)]

# (module, blocks): square, tall and wide gate blocks, and proj_size.
RNNS = [
    ("GRU", 3, lambda device: nn.GRU(5, 7, num_layers=2, device=device)),
    ("GRUCell", 3, lambda device: nn.GRUCell(9, 7, device=device)),
    ("LSTM", 4, lambda device: nn.LSTM(7, 7, num_layers=2, proj_size=3, device=device)),
    ("LSTMCell", 4, lambda device: nn.LSTMCell(7, 5, device=device)),
]


def _upstream():
    # The installed torch's own orthogonal_, also if a test left it installed.
    return _install._torch_init_orthogonal()


def _gate_errors(weight, blocks, gain=1.0):
    # ||G^T G - I||_F of each gate G (its transpose if wide), G scaled by 1/gain.
    G = weight.detach().unflatten(0, (blocks, -1)) / gain
    G = G.mT if G.size(-2) < G.size(-1) else G
    Id = torch.eye(G.size(-1), dtype=G.dtype, device=G.device)
    return torch.linalg.matrix_norm(G.mT @ G - Id)


class _Uninstalled(TestCase):
    # setUp in a base class: see Note [setUp of device-generic tests] in
    # test_integration.py.
    def setUp(self):
        super().setUp()
        torch_ortho_patch.uninstall()
        self.addCleanup(torch_ortho_patch.uninstall)


class TestInitBlocksDevice(_Uninstalled):

    @skipIfNoLapack
    @dtypes(torch.float32, torch.float64)
    @parametrize("use_generator", [False, True])
    @parametrize("shape", SHAPES, name_fn=lambda s: "x".join(map(str, s)))
    def test_blocks_none_is_torch(self, device, dtype, shape, use_generator):
        # The installed torch's values, bit for bit, and the same use of the
        # random stream: the next draw after it is the same.
        def run(fn, **kwargs):
            torch.manual_seed(0)
            gen = torch.Generator(device).manual_seed(1) if use_generator else None
            tensor = torch.empty(shape, dtype=dtype, device=device)
            out = fn(tensor, 0.7, gen, **kwargs)
            self.assertIs(out, tensor)
            after = torch.randn(3, device=device)
            return tensor, after, None if gen is None else gen.get_state()

        expected = run(_upstream())
        for kwargs in ({}, {"blocks": None}, {"blocks": 1}):
            got = run(ours.orthogonal_, **kwargs)
            for a, b in zip(got, expected, strict=True):
                self.assertEqual(a, b, atol=0, rtol=0, exact_dtype=True, msg=str(kwargs))

    @skipIfNoLapack
    def test_blocks_none_is_torch_on_rnn_weights(self, device):
        # The idiom of the RNN guide, without blocks: what torch gives.
        for _, _, make in RNNS:
            torch.manual_seed(0)
            a, b = make(device), make(device)
            b.load_state_dict(a.state_dict())
            for fn, module in ((_upstream(), a), (ours.orthogonal_, b)):
                torch.manual_seed(1)
                for name, param in module.named_parameters():
                    if "weight" in name:
                        fn(param, 1.0)
            self.assertEqual(a.state_dict(), b.state_dict(), atol=0, rtol=0)

    @skipIfNoLapack
    @parametrize("gain", [1.0, 2.0])
    @parametrize("rnn", RNNS, name_fn=lambda r: r[0])
    def test_gates(self, device, rnn, gain):
        # Every gate matrix of every gate weight: orthogonal (square), with
        # orthonormal columns (tall) or rows (wide), times gain. Torch's own
        # orthogonal_ leaves them far from it.
        _, blocks, make = rnn
        torch.manual_seed(0)
        module = make(device)
        weights = [
            (name, p)
            for name, p in module.named_parameters()
            if name.startswith(("weight_ih", "weight_hh"))
        ]
        self.assertGreaterEqual(len(weights), 2)
        shapes = set()
        for name, weight in weights:
            before = weight.detach().clone()
            _upstream()(weight, gain)
            self.assertGreater(_gate_errors(weight, blocks, gain).max().item(), 0.3)
            ours.orthogonal_(weight, gain, blocks=blocks)
            # float32: a few ulps per entry, Frobenius over at most 7 x 7.
            self.assertLess(_gate_errors(weight, blocks, gain).max().item(), 1e-5, msg=name)
            self.assertNotEqual(weight.detach(), before)
            self.assertTrue(weight.requires_grad)
            self.assertIsNone(weight.grad_fn)
            n, m = weight.size(0) // blocks, weight.size(1)
            shapes.add("square" if n == m else "tall" if n > m else "wide")
        # Each module has square gate blocks and non-square ones.
        self.assertEqual(len(shapes), 2, msg=str(shapes))

    def test_meta(self, device):
        # A meta tensor is left as it is, and its blocks are still checked.
        tensor = torch.empty(12, 4, device="meta")
        self.assertIs(ours.orthogonal_(tensor, blocks=3), tensor)
        with self.assertRaisesRegex(ValueError, "positive divisor"):
            ours.orthogonal_(tensor, blocks=5)


class TestInitBlocks(TestCase):
    def test_errors(self):
        # The same errors as orthogonal(..., blocks=), at the call; upstream's
        # own error for fewer than 2 dims comes first.
        messages = []
        for tensor, blocks in (
            (torch.empty(12, 4), True),
            (torch.empty(12, 4), 3.0),
            (torch.empty(12, 4), "3"),
            (torch.empty(12, 4), 0),
            (torch.empty(12, 4), 5),
            (torch.empty(6, 2, 3), 4),
            (torch.empty(12), 3),
        ):
            with self.assertRaises((TypeError, ValueError)) as cm:
                ours.orthogonal_(tensor, blocks=blocks)
            messages.append(f"{type(cm.exception).__name__}: {cm.exception}")
        self.assertExpectedInline(
            "\n".join(messages),
            """\
TypeError: Expected blocks to be an int or None. Got True of type bool.
TypeError: Expected blocks to be an int or None. Got 3.0 of type float.
TypeError: Expected blocks to be an int or None. Got '3' of type str.
ValueError: Expected blocks to be a positive divisor of the number of rows (dim 0) of the tensor, 12. Got blocks=0.
ValueError: Expected blocks to be a positive divisor of the number of rows (dim 0) of the tensor, 12. Got blocks=5.
ValueError: Expected blocks to be a positive divisor of the number of rows (dim 0) of the tensor, 6. Got blocks=4.
ValueError: Only tensors with 2 or more dimensions are supported""",  # noqa: B950
        )
        # The same wording as the parametrization's.
        with self.assertRaises(TypeError) as cm:
            torch_ortho_patch.orthogonal(nn.Linear(4, 12), blocks=3.0)
        self.assertEqual(str(cm.exception), messages[1].split(": ", 1)[1])

    def test_signature(self):
        import inspect

        upstream = inspect.signature(_upstream()).parameters
        signature = inspect.signature(ours.orthogonal_).parameters
        self.assertEqual(list(signature)[: len(upstream)], list(upstream))
        self.assertEqual(list(signature)[len(upstream) :], ["blocks"])
        self.assertEqual(signature["blocks"].kind, inspect.Parameter.KEYWORD_ONLY)
        self.assertIsNone(signature["blocks"].default)

    def test_import_changes_nothing(self):
        self.assertIsNot(nn.init.orthogonal_, ours.orthogonal_)
        self.assertIs(ours.xavier_uniform_, nn.init.xavier_uniform_)


instantiate_parametrized_tests(TestInitBlocks)
instantiate_device_type_tests(TestInitBlocksDevice, globals(), only_for=("cpu", "cuda"))


if __name__ == "__main__":
    run_tests()
