# Owner(s): ["module: nn"]
"""Module-level tests of ``orthogonal(..., blocks=k)``, in the style of core's
``test_orthogonal_parametrization`` in ``test/nn/test_parametrization.py``."""

import copy
import io
import pickle
import re
import warnings
from pathlib import Path

import torch
import torch.nn.utils.parametrizations as upstream
from torch import nn
from torch.nn.utils import parametrize
from torch.testing._internal.common_device_type import (
    dtypes,
    instantiate_device_type_tests,
)
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize as parametrize_test,
    run_tests,
    skipIfNoLapack,
    TestCase,
)

import torch_ortho_patch.parametrizations as P
from torch_ortho_patch import _stack, _upstream
from _block_checks import (
    block_orthogonality_error,
    check_blocks_orthogonal,
    check_rnn,
    orthogonality_tol,
    run_block_checks,
)


MAPS = ("matrix_exp", "cayley", "householder")
# (rows, cols) of one block
BLOCK_SHAPES = {"square": (4, 4), "tall": (5, 3), "wide": (3, 5)}


def _orthogonal_quiet(*args, **kwargs):
    # Upstream warns nothing; ours warns on non-square input without blocks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return P.orthogonal(*args, **kwargs)


class TestOrthogonalBlocks(TestCase):
    def _module(self, shape, device, dtype):
        m = nn.Linear(1, 1, device=device, dtype=dtype)
        m.weight = nn.Parameter(torch.randn(shape, device=device, dtype=dtype))
        return m

    @parametrize_test("orthogonal_map", MAPS)
    @parametrize_test("use_trivialization", [True, False])
    @parametrize_test("block_shape", list(BLOCK_SHAPES))
    @parametrize_test("batch", [(), (2,)])
    @dtypes(torch.float32, torch.complex64)
    def test_blocks_parametrization(
        self, device, dtype, orthogonal_map, use_trivialization, block_shape, batch
    ):
        n, k = BLOCK_SHAPES[block_shape]
        blocks = 3
        shape = (*batch, blocks * n, k)
        torch.manual_seed(0)
        m = self._module(shape, device, dtype)
        if dtype.is_complex and orthogonal_map == "householder":
            with self.assertRaisesRegex(ValueError, "does not support complex"):
                P.orthogonal(m, orthogonal_map=orthogonal_map, blocks=blocks)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an explicit blocks never warns
            P.orthogonal(
                m,
                orthogonal_map=orthogonal_map,
                use_trivialization=use_trivialization,
                blocks=blocks,
            )
        Q = m.weight
        self.assertEqual(Q.shape, shape)
        check_blocks_orthogonal(Q, blocks, "initial value")

        orth = m.parametrizations.weight[0]
        self.assertEqual(orth.blocks, blocks)
        if use_trivialization:
            N = max(n, k)
            self.assertEqual(orth.base.shape, (*batch, blocks, N, N))
        else:
            self.assertFalse(hasattr(orth, "base"))

        # Assignment makes each block orthogonal, where the map can be inverted.
        W = torch.randn(shape, device=device, dtype=dtype)
        if not use_trivialization and orthogonal_map != "householder":
            with self.assertRaises(NotImplementedError):
                m.weight = W
        else:
            m.weight = W
            check_blocks_orthogonal(m.weight, blocks, "after assignment")

        # One optimizer step on the unconstrained tensor keeps the constraint.
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        loss = (m.weight.abs() ** 2).sum() * torch.randn((), device=device)
        if not loss.requires_grad:
            raise AssertionError("weight does not depend on the original")
        m.weight.real.sum().backward()
        opt.step()
        check_blocks_orthogonal(m.weight, blocks, "after SGD")

    @dtypes(torch.float32, torch.complex64)
    def test_init_and_assign_per_block(self, device, dtype):
        # An orthogonal block is kept; any other becomes the Q factor of its QR
        # decomposition with a non-negative diagonal of R.
        n = 4
        Q0, _ = torch.linalg.qr(torch.randn(n, n, device=device, dtype=dtype))
        X1 = torch.randn(n, n, device=device, dtype=dtype)
        Q1, R1 = torch.linalg.qr(X1)
        Q1 = Q1 * R1.diagonal().sgn().unsqueeze(-2)
        W = torch.cat([Q0, X1, Q0.mH])
        for orthogonal_map in ("matrix_exp", "cayley"):
            m = self._module(W.shape, device, dtype)
            with torch.no_grad():
                m.weight.copy_(W)
            P.orthogonal(m, orthogonal_map=orthogonal_map, blocks=3)
            self.assertEqual(m.weight, torch.cat([Q0, Q1, Q0.mH]))
            m.weight = torch.cat([X1, Q0, Q0])
            self.assertEqual(m.weight, torch.cat([Q1, Q0, Q0]))

    @dtypes(torch.float16, torch.bfloat16)
    def test_half_precision_module(self, device, dtype):
        # QR has no half kernels on CPU; registration computes in float32 and
        # stores the base in the weight's dtype.
        gru = nn.GRU(4, 4, device=device, dtype=dtype)
        P.orthogonal(gru, "weight_hh_l0", blocks=3)
        self.assertEqual(gru.parametrizations.weight_hh_l0[0].base.dtype, dtype)
        self.assertEqual(gru.weight_hh_l0.dtype, dtype)
        check_blocks_orthogonal(gru.weight_hh_l0, 3, str(dtype))

    @parametrize_test("orthogonal_map", MAPS)
    @parametrize_test("optimizer", ["SGD", "AdamW"])
    def test_training_keeps_blocks_orthogonal(self, device, orthogonal_map, optimizer):
        torch.manual_seed(0)
        gru = nn.GRU(4, 3, device=device)  # weight_ih: 3 blocks of 3 x 4 (wide)
        for name in ("weight_ih_l0", "weight_hh_l0"):
            P.orthogonal(gru, name, orthogonal_map, blocks=3)
        # AdamW's default weight_decay=1e-2 shrinks the householder diagonal;
        # see torch_ortho_patch/_patches/householder_sign.py.
        opt = getattr(torch.optim, optimizer)(gru.parameters(), lr=1e-2)
        for _ in range(5):
            opt.zero_grad()
            out, _ = gru(torch.randn(6, 2, 4, device=device))
            out.square().sum().backward()
            opt.step()
        for name in ("weight_ih_l0", "weight_hh_l0"):
            check_blocks_orthogonal(getattr(gru, name), 3, name)

    def test_householder_weight_decay_regression(self, device):
        # Upstream zeroes this weight after one AdamW step.
        torch.manual_seed(0)
        m = nn.Linear(3, 6, device=device)
        P.orthogonal(m, orthogonal_map="householder", blocks=1)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        m(torch.randn(2, 3, device=device)).sum().backward()
        opt.step()
        original = m.parametrizations.weight.original
        # The diagonal was shrunk off -1, which is what broke int() ...
        self.assertTrue((original.diagonal().abs() < 1).all())
        # ... and the weight stays orthonormal.
        check_blocks_orthogonal(m.weight, 1, "householder after AdamW")
        self.assertEqual(torch.linalg.matrix_norm(m.weight), 3**0.5)

    @parametrize_test(
        "cls,kwargs",
        [
            (nn.GRU, dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)),
            (nn.LSTM, dict(input_size=4, hidden_size=4, num_layers=2)),
            (nn.LSTM, dict(input_size=5, hidden_size=4, proj_size=2, bidirectional=True)),
            (nn.RNN, dict(input_size=2, hidden_size=4, nonlinearity="relu")),
        ],
        name_fn=lambda cls, kwargs: cls.__name__ + "_" + "_".join(map(str, kwargs.values())),
    )
    def test_rnn_end_to_end(self, device, cls, kwargs):
        with torch.device(device):
            rnn = check_rnn(P, cls, **kwargs)
        self.assertIsInstance(rnn, cls)

    def test_state_dict_round_trip(self, device):
        torch.manual_seed(0)
        a = P.orthogonal(nn.GRU(4, 4, device=device), "weight_hh_l0", blocks=3)
        torch.manual_seed(1)
        b = P.orthogonal(nn.GRU(4, 4, device=device), "weight_hh_l0", blocks=3)
        sd = a.state_dict()
        self.assertIn("parametrizations.weight_hh_l0.original", sd)
        self.assertEqual(sd["parametrizations.weight_hh_l0.original"].shape, (12, 4))
        self.assertEqual(sd["parametrizations.weight_hh_l0.0.base"].shape, (3, 4, 4))
        self.assertNotEqual(a.weight_hh_l0, b.weight_hh_l0)
        b.load_state_dict(sd)
        self.assertEqual(a.weight_hh_l0, b.weight_hh_l0)
        x = torch.randn(3, 1, 4, device=device)
        self.assertEqual(a(x)[0], b(x)[0])

    def test_deepcopy_and_pickle(self, device):
        torch.manual_seed(0)
        gru = P.orthogonal(nn.GRU(4, 4, device=device), "weight_hh_l0", blocks=3)
        c = copy.deepcopy(gru)
        self.assertEqual(c.weight_hh_l0, gru.weight_hh_l0)
        self.assertEqual(c.parametrizations.weight_hh_l0[0].blocks, 3)
        x = torch.randn(3, 1, 4, device=device)
        self.assertEqual(c(x)[0], gru(x)[0])
        # Parametrized modules pickle only through state_dict(), as upstream.
        with self.assertRaisesRegex(RuntimeError, "only supported through state_dict"):
            pickle.dumps(gru)
        # The parametrization itself pickles, blocks included.
        orth = pickle.loads(pickle.dumps(gru.parametrizations.weight_hh_l0[0]))
        self.assertEqual(orth.blocks, 3)
        self.assertEqual(orth.base, gru.parametrizations.weight_hh_l0[0].base)

    def test_cached(self, device):
        gru = P.orthogonal(nn.GRU(4, 4, device=device), "weight_hh_l0", blocks=3)
        with parametrize.cached():
            W1 = gru.weight_hh_l0
            W2 = gru.weight_hh_l0
            self.assertIs(W1, W2)
            out, _ = gru(torch.randn(3, 1, 4, device=device))
        check_blocks_orthogonal(W1, 3, "cached")
        out.sum().backward()
        self.assertIsNotNone(gru.parametrizations.weight_hh_l0.original.grad)

    def test_remove_parametrizations(self, device):
        gru = P.orthogonal(nn.GRU(4, 4, device=device), "weight_hh_l0", blocks=3)
        W = gru.weight_hh_l0.detach().clone()
        parametrize.remove_parametrizations(gru, "weight_hh_l0", leave_parametrized=True)
        self.assertFalse(parametrize.is_parametrized(gru))
        self.assertIsInstance(gru.weight_hh_l0, nn.Parameter)
        self.assertEqual(gru.weight_hh_l0, W)
        check_blocks_orthogonal(gru.weight_hh_l0, 3, "left parametrized")
        # The plain GRU is picklable again.
        self.assertEqual(pickle.loads(pickle.dumps(gru)).weight_hh_l0, W)


class TestOrthogonalUpstreamCompat(TestCase):
    """With ``blocks=None`` (or ``blocks=1``), values equal upstream's bit for bit,
    and so do gradients, except matrix_exp's, which agree to round-off."""

    @parametrize_test("orthogonal_map", [None, *MAPS])
    @parametrize_test("use_trivialization", [True, False])
    @parametrize_test("shape", [(5, 5), (7, 3), (3, 7), (2, 6, 4), (2, 3, 3)])
    @parametrize_test("blocks", [None, 1])
    def test_equals_upstream(self, orthogonal_map, use_trivialization, shape, blocks):
        def make(fn, **kwargs):
            torch.manual_seed(0)
            m = nn.Linear(1, 1)
            m.weight = nn.Parameter(torch.randn(shape))
            torch.manual_seed(1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                fn(m, orthogonal_map=orthogonal_map, use_trivialization=use_trivialization, **kwargs)
            return m

        ours = make(P.orthogonal, blocks=blocks)
        theirs = make(upstream.orthogonal)
        # With or without autograd, every map gives upstream's values bit for bit.
        with torch.no_grad():
            self.assertEqual(ours.weight, theirs.weight, atol=0, rtol=0)
        self.assertEqual(ours.weight, theirs.weight, atol=0, rtol=0)
        # matrix_exp's backward comes from an eigendecomposition, which agrees
        # with torch.matrix_exp's to round-off (see Note [Backward of the skew
        # matrix exponential]); the other maps' gradients are bitwise.
        square = shape[-1] == shape[-2]
        if (orthogonal_map or ("matrix_exp" if square else "householder")) == "matrix_exp":
            tol = dict(atol=10 * shape[-1] * torch.finfo(torch.float32).eps, rtol=0)
        else:
            tol = dict(atol=0, rtol=0)
        # Same state, same step, same gradients.
        for m in (ours, theirs):
            m.weight.sum().backward()
        self.assertEqual(
            ours.parametrizations.weight.original.grad,
            theirs.parametrizations.weight.original.grad,
            **tol,
        )
        if use_trivialization or (orthogonal_map or "") == "householder":
            X = torch.randn(shape)
            ours.weight = X
            theirs.weight = X
            with torch.no_grad():
                self.assertEqual(ours.weight, theirs.weight, atol=0, rtol=0)

    @parametrize_test("orthogonal_map", MAPS)
    def test_partly_and_nearly_orthogonal_batches_equal_upstream(self, orthogonal_map):
        # Upstream keeps or orthogonalizes a batch as a whole, with the tolerance
        # of allclose (rtol=1e-5 on top of 10 n eps). Without blocks we do too.
        Q64, _ = torch.linalg.qr(torch.randn(3, 5, 5, dtype=torch.float64))
        nearly = (Q64 * (1 + 4e-6)).float()  # off by more than 10 n eps, within rtol
        partly = torch.cat([Q64[:2].float(), torch.randn(1, 5, 5)])
        for W in (nearly, partly):
            results = []
            for fn in (_orthogonal_quiet, upstream.orthogonal):
                m = nn.Linear(1, 1)
                m.weight = nn.Parameter(W.clone())
                torch.manual_seed(3)
                fn(m, orthogonal_map=orthogonal_map)
                with torch.no_grad():
                    results.append(m.weight.clone())
            self.assertEqual(results[0], results[1], atol=0, rtol=0)

    def test_complex_equals_upstream(self):
        for shape in [(4, 4), (5, 3)]:
            W = torch.randn(shape, dtype=torch.complex128)
            results = []
            for fn in (_orthogonal_quiet, upstream.orthogonal):
                m = nn.Linear(1, 1)
                m.weight = nn.Parameter(W.clone())
                torch.manual_seed(2)
                fn(m)
                results.append(m.weight)
            self.assertEqual(results[0], results[1], atol=0, rtol=0)

    def test_repr_unchanged_without_blocks(self):
        m = P.orthogonal(nn.Linear(4, 4))
        self.assertExpectedInline(
            repr(m.parametrizations.weight[0]), """_Orthogonal()"""
        )


class TestSameWeightInEveryMode(TestCase):
    """The parametrized weight is the same tensor in every mode, for every map.

    See Note [Backward of the skew matrix exponential]: the matrix_exp map owns
    only its backward."""

    def _modules(self, orthogonal_map):
        torch.manual_seed(0)
        linear = _orthogonal_quiet(nn.Linear(6, 6), "weight", orthogonal_map)
        gru = P.orthogonal(nn.GRU(6, 6), "weight_hh_l0", orthogonal_map, blocks=3)
        for m, name in ((linear, "weight"), (gru, "weight_hh_l0")):
            with torch.no_grad():
                original = m.parametrizations[name].original
                original.add_(0.5 * torch.randn_like(original).tril(-1))
            yield m, name

    @parametrize_test("orthogonal_map", MAPS)
    def test_same_weight(self, orthogonal_map):
        for m, name in self._modules(orthogonal_map):
            original = m.parametrizations[name].original
            W = getattr(m, name)
            self.assertTrue(W.requires_grad)
            with torch.no_grad():
                self.assertTrue(torch.equal(getattr(m, name), W), msg="no_grad")
            with parametrize.cached():
                self.assertTrue(torch.equal(getattr(m, name), W), msg="cached")
            original.requires_grad_(False)
            self.assertTrue(torch.equal(getattr(m, name), W), msg="frozen")
            original.requires_grad_(True)
            # Dynamo does not trace RNN modules; compile the parametrization.
            torch._dynamo.reset()
            compiled = torch.compile(m.parametrizations[name], backend="aot_eager", fullgraph=True)
            self.assertTrue(torch.equal(compiled(), W), msg="compiled")
            torch._dynamo.reset()

    @parametrize_test("orthogonal_map", MAPS)
    def test_trace_save_and_export(self, orthogonal_map):
        # As with upstream's orthogonal: jit.trace with its check, save and load,
        # and torch.export under default grad mode with the same operators.
        x = torch.randn(2, 6)
        torch.manual_seed(0)
        theirs = upstream.orthogonal(nn.Linear(6, 6), "weight", orthogonal_map)
        torch.manual_seed(0)
        ours = _orthogonal_quiet(nn.Linear(6, 6), "weight", orthogonal_map)
        self.assertTrue(torch.equal(ours(x), theirs(x)))
        traced = torch.jit.trace(ours, (x,))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        self.assertTrue(torch.equal(torch.jit.load(buffer)(x), ours(x)))

        def ops(m):
            graph = torch.export.export(m, (x,)).graph
            return sorted({str(n.target) for n in graph.nodes if n.op == "call_function"})

        if orthogonal_map != "householder":
            # householder reads its signs with where() instead of int() on
            # purpose (the householder-sign patch of the stack).
            self.assertEqual(ops(ours), ops(theirs))
        self.assertTrue(torch.equal(torch.export.export(ours, (x,)).module()(x), ours(x)))


class TestOrthogonalMessages(TestCase):
    """Pins warning and error texts, and reprs."""

    def _warning(self, module, name="weight", **kwargs):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            P.orthogonal(module, name, **kwargs)
        self.assertEqual(len(w), 1)
        self.assertIs(w[0].category, UserWarning)
        # stacklevel points at the caller of orthogonal(), not at this package.
        self.assertEqual(w[0].filename, __file__)
        return str(w[0].message)

    def test_warning_gru(self):
        self.assertExpectedInline(
            self._warning(nn.GRU(2, 2), "weight_hh_l0"),
            """orthogonal: 'weight_hh_l0' of GRU stacks 3 gate matrices of shape (2, 2) along dim 0. Without blocks it is constrained as one (6, 2) matrix, and its gate matrices are not orthogonal. Pass blocks=3 for each gate matrix to be orthogonal, or blocks=1 to keep the constraint on the whole matrix without this warning.""",
        )

    def test_warning_lstm(self):
        self.assertExpectedInline(
            self._warning(nn.LSTM(3, 5, bidirectional=True), "weight_ih_l0_reverse"),
            """orthogonal: 'weight_ih_l0_reverse' of LSTM stacks 4 gate matrices of shape (5, 3) along dim 0. Without blocks it is constrained as one (20, 3) matrix, and its gate matrices are not orthogonal. Pass blocks=4 for each gate matrix to have orthonormal columns, or blocks=1 to keep the constraint on the whole matrix without this warning.""",
        )

    def test_warning_cells(self):
        self.assertExpectedInline(
            self._warning(nn.GRUCell(3, 2), "weight_ih"),
            """orthogonal: 'weight_ih' of GRUCell stacks 3 gate matrices of shape (2, 3) along dim 0. Without blocks it is constrained as one (6, 3) matrix, and its gate matrices are not orthogonal. Pass blocks=3 for each gate matrix to have orthonormal rows, or blocks=1 to keep the constraint on the whole matrix without this warning.""",
        )
        self.assertIn("Pass blocks=4", self._warning(nn.LSTMCell(2, 2), "weight_hh"))

    def test_portable_silencer(self):
        # The filter that docs/rnn.rst documents for code that runs on several
        # releases: it silences the gate warning and nothing else, and works
        # with torch's own orthogonal, which has no such warning.
        rst = Path(__file__).parent.parent / "docs" / "rnn.rst"
        if not rst.is_file():
            self.skipTest("the docs are not in this checkout")
        pattern = re.search(r'message=r"([^"]+)"', rst.read_text(encoding="utf-8"))[1]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
            P.orthogonal(nn.GRU(2, 2), "weight_hh_l0")
            P.orthogonal(nn.LSTM(3, 2, proj_size=1), "weight_ih_l0")
            P.orthogonal(nn.LSTMCell(2, 2), "weight_hh")
            upstream.orthogonal(nn.GRU(2, 2), "weight_hh_l0")
            with self.assertRaisesRegex(UserWarning, "another"):
                warnings.warn("orthogonal: another warning", UserWarning)
        # Without the filter the same call warns.
        self.assertIn("stacks 3 gate matrices", self._warning(nn.GRU(2, 2), "weight_hh_l0"))

    def test_no_warning_for_plain_matrices(self):
        # A non-square matrix that stacks no gates gets orthonormal columns or
        # rows, as orthogonal() documents; that is no reason to warn. nn.RNN
        # stacks no gates either.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            P.orthogonal(nn.Linear(5, 3))
            P.orthogonal(nn.Linear(20, 40))  # the example of torch's docstring
            P.orthogonal(nn.RNN(3, 4), "weight_ih_l0")
            P.orthogonal(nn.RNNCell(3, 4), "weight_ih")

    def test_no_warning(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            P.orthogonal(nn.Linear(4, 4))  # square
            P.orthogonal(nn.GRU(4, 4), "weight_hh_l0", blocks=3)
            P.orthogonal(nn.Linear(3, 5), blocks=1)  # semi-orthogonal on purpose

    def test_warns_once_not_per_forward(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            gru = P.orthogonal(nn.GRU(2, 2), "weight_hh_l0")
            for _ in range(3):
                gru(torch.randn(2, 1, 2))
        self.assertEqual(len([x for x in w if "blocks" in str(x.message)]), 1)

    def _error(self, exc, fn, *args, **kwargs):
        with self.assertRaises(exc) as cm:
            fn(*args, **kwargs)
        return str(cm.exception)

    def test_blocks_errors(self):
        gru = nn.GRU(2, 2)
        self.assertExpectedInline(
            self._error(ValueError, P.orthogonal, gru, "weight_hh_l0", blocks=4),
            """Expected blocks to be a positive divisor of the number of rows (dim -2) of 'weight_hh_l0', 6. Got blocks=4.""",
        )
        self.assertExpectedInline(
            self._error(ValueError, P.orthogonal, gru, "weight_hh_l0", blocks=0),
            """Expected blocks to be a positive divisor of the number of rows (dim -2) of 'weight_hh_l0', 6. Got blocks=0.""",
        )
        self.assertExpectedInline(
            self._error(TypeError, P.orthogonal, gru, "weight_hh_l0", blocks=True),
            """Expected blocks to be an int or None. Got True of type bool.""",
        )
        self.assertExpectedInline(
            self._error(TypeError, P.orthogonal, gru, "weight_hh_l0", blocks=3.0),
            """Expected blocks to be an int or None. Got 3.0 of type float.""",
        )
        self.assertExpectedInline(
            self._error(TypeError, P.orthogonal, gru, "weight_hh_l0", blocks="3"),
            """Expected blocks to be an int or None. Got '3' of type str.""",
        )
        # Nothing was registered by the failed calls.
        self.assertFalse(parametrize.is_parametrized(gru))

    def test_upstream_errors_unchanged(self):
        for fn in (P.orthogonal, upstream.orthogonal):
            self.assertExpectedInline(
                self._error(ValueError, fn, nn.Linear(3, 3), "bias"),
                """Expected a matrix or batch of matrices. Got a tensor of 1 dimensions.""",
            )
            self.assertExpectedInline(
                self._error(ValueError, fn, nn.Linear(3, 3), orthogonal_map="qr"),
                """orthogonal_map has to be one of "matrix_exp", "cayley", "householder". Got: qr""",
            )

    def test_map_errors(self):
        self.assertExpectedInline(
            self._error(ValueError, P.orthogonal_map, torch.randn(3, 3), "svd"),
            """method has to be one of "matrix_exp", "cayley", "householder". Got: svd""",
        )
        self.assertExpectedInline(
            self._error(TypeError, P.cayley_map, torch.ones(3, 3, dtype=torch.long)),
            """cayley_map: Expected a floating point or complex tensor. Got torch.int64.""",
        )
        self.assertExpectedInline(
            self._error(ValueError, P.matrix_exp_map, torch.randn(3)),
            """matrix_exp_map: Expected a matrix or batch of matrices. Got a tensor of 1 dimensions.""",
        )
        self.assertExpectedInline(
            self._error(TypeError, P.householder_map, [[1.0]]),
            """householder_map: Expected X to be a Tensor. Got list.""",
        )
        self.assertExpectedInline(
            self._error(
                ValueError, P.householder_map, torch.randn(3, 3, dtype=torch.complex64)
            ),
            """The householder parametrization does not support complex tensors.""",
        )
        self.assertExpectedInline(
            self._error(ValueError, P.orthogonal_map, torch.randn(7, 2), blocks=2),
            """Expected blocks to be a positive divisor of the number of rows (dim -2) of 'X', 7. Got blocks=2.""",
        )

    def test_repr_gru(self):
        gru = P.orthogonal(nn.GRU(2, 2), "weight_hh_l0", blocks=3)
        self.assertExpectedInline(
            repr(gru),
            """\
ParametrizedGRU(
  2, 2
  (parametrizations): ModuleDict(
    (weight_hh_l0): ParametrizationList(
      (0): _Orthogonal(blocks=3)
    )
  )
)""",
        )


class TestCayleyBatchedLU(TestCase):
    # The runtime-only workaround of Note [CPU batched LU]: it is no part of the
    # upstream series, so its tests are here and not in upstream_tests.py.
    @skipIfNoLapack
    def test_cayley_batched_large(self):
        # Batched LU on CPU with more than one thread has returned wrong values
        # for batches of matrices of size about 150 and larger.
        class Batched(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(3, n, n) / n)

        threads = torch.get_num_threads()
        torch.set_num_threads(max(threads, 2))
        try:
            for n in (160, 192):
                m = P.orthogonal(Batched(n), orthogonal_map="cayley")
                with torch.no_grad():
                    m.parametrizations.weight.original.normal_(0, 1 / n)
                Q = m.weight
                Q.sum().backward()
                Q = Q.detach()
                eye = torch.eye(n).expand(3, n, n)
                self.assertEqual(Q.mT @ Q, eye, atol=1e-4, rtol=0)
        finally:
            torch.set_num_threads(threads)

    def test_workaround_only_on_releases_with_the_fault(self):
        # See Note [Which releases get the batched LU workaround].
        from torch_ortho_patch._patches import cayley_batched_lu as lu

        self.assertIsNone(lu._LU_FIXED_IN)  # no release has the ATen fix yet
        self.assertTrue(lu.has_lu_fault())
        self.assertFalse(lu.PATCH.upstream)
        text = _stack._installed_text(_stack.PARAMETRIZATIONS)
        before = _stack.apply({_stack.PARAMETRIZATIONS: text}, _stack.upstream_patches())
        amended = lu.edit(_stack.PARAMETRIZATIONS, before[_stack.PARAMETRIZATIONS])
        self.assertIn("_solve(", amended)
        saved = lu._LU_FIXED_IN
        try:
            lu._LU_FIXED_IN = "2.16"
            self.assertTrue(lu.has_lu_fault("2.15.0+cpu"))
            self.assertFalse(lu.has_lu_fault("2.16.0"))
            self.assertFalse(lu.has_lu_fault("2.17.0a0+git1234"))
            # A release with the fix keeps torch.linalg.solve.
            lu._LU_FIXED_IN = "0.1"
            unchanged = lu.edit(_stack.PARAMETRIZATIONS, before[_stack.PARAMETRIZATIONS])
            self.assertEqual(unchanged, before[_stack.PARAMETRIZATIONS])
        finally:
            lu._LU_FIXED_IN = saved

    def test_not_in_upstream_series(self):
        self.assertNotIn("_solve(", _upstream.build_diff())
        self.assertNotIn("cayley-batched-lu", [p.name for p in _stack.upstream_patches()])


class TestBlockChecks(TestCase):
    def test_run_block_checks(self):
        # The same checks run against the patched upstream file in test_upstream_diff.py.
        run_block_checks(P)

    def test_checks_catch_upstream_faults(self):
        # The helpers can fail: upstream's stacked GRU weight is not block-orthogonal.
        gru = upstream.orthogonal(nn.GRU(4, 4), "weight_hh_l0")
        W = gru.weight_hh_l0
        self.assertGreater(block_orthogonality_error(W, 3), 0.5)
        self.assertLessEqual(block_orthogonality_error(W), orthogonality_tol(W))


instantiate_device_type_tests(TestOrthogonalBlocks, globals(), only_for=("cpu", "cuda"))
instantiate_parametrized_tests(TestOrthogonalUpstreamCompat)
instantiate_parametrized_tests(TestSameWeightInEveryMode)


if __name__ == "__main__":
    run_tests()
