# Owner(s): ["module: nn"]
"""Block-orthogonal RNN weights inside real training stacks.

torch.compile, torch.func.functional_call, CPU autocast, dtype and device moves,
DistributedDataParallel, checkpoints across install()/uninstall(), and an
unmodified user script run through ``python -m torch_ortho_patch run``.
"""

import os
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.utils.parametrizations as P
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters
from torch.testing._internal.common_device_type import instantiate_device_type_tests
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    IS_LINUX,
    parametrize as parametrize_test,
    run_tests,
    TestCase,
)

import torch_ortho_patch
import torch_ortho_patch.parametrizations as ours
from _block_checks import (
    block_orthogonality_error,
    check_blocks_orthogonal,
    GATES,
    orthogonality_tol,
)


REPO = Path(__file__).absolute().parent.parent
GATE_WEIGHTS = ("weight_hh_l0", "weight_ih_l0")
INPUT_SIZE, HIDDEN_SIZE = 4, 5


def rounding_tol(dtype, n=HIDDEN_SIZE):
    # Two computations of the same values that differ only in the order of their
    # floating point operations: a dot product of length n rounds about n times.
    return 10 * n * torch.finfo(dtype).eps


def same_values_tol(device):
    # On CPU the same kernels on the same values give the same bits. cuDNN's RNN
    # kernels are not bitwise reproducible (see the warning in nn.GRU's docs).
    return 0 if torch.device(device).type == "cpu" else rounding_tol(torch.float32)


# Note [setUp of device-generic tests]
# instantiate_device_type_tests in older torch (2.4, for one) builds TestFooCPU
# from the *bases* of TestFoo and copies TestFoo's methods into it, so TestFooCPU
# is not a subclass of TestFoo, and a zero-argument super() in a method defined
# on TestFoo raises "super(type, obj): obj must be an instance or subtype of
# type". Newer torch subclasses TestFoo. A device-generic class therefore takes
# its setUp from a base class, which works under both.
class DeviceTestCase(TestCase):
    def setUp(self):
        super().setUp()
        if self.device_type == "cuda":
            # TF32 would round float32 RNN weights to 10 bits on Ampere and later.
            flags = torch.backends.cudnn.flags(
                enabled=True, benchmark=False, deterministic=True, allow_tf32=False
            )
            flags.__enter__()  # TestCase.enterContext needs Python 3.11
            self.addCleanup(flags.__exit__, None, None, None)
        self.addCleanup(torch_ortho_patch.uninstall)


def make_rnn(cls, device="cpu", dtype=torch.float32, orthogonal_map=None, seed=0):
    r"""An RNN whose two gate weights are block-orthogonal, away from the origin.

    With INPUT_SIZE != HIDDEN_SIZE and the default map, weight_hh_l0 (square
    blocks) gets ``"matrix_exp"`` and weight_ih_l0 (tall blocks) ``"householder"``.
    """
    torch.manual_seed(seed)
    rnn = cls(INPUT_SIZE, HIDDEN_SIZE, device=device, dtype=dtype)
    for name in GATE_WEIGHTS:
        ours.orthogonal(rnn, name, orthogonal_map, blocks=GATES[cls])
    # The originals start at -I, where every map is the identity (see
    # Note [Trivialization origin]); move them so that the maps do real work.
    with torch.no_grad():
        for name in GATE_WEIGHTS:
            X = originals(rnn)[name]
            X.add_(0.1 * torch.randn_like(X))
    return rnn


def originals(module):
    return {name: p.original for name, p in module.parametrizations.items()}


def forward_backward(model, x):
    r"""Return the output and the gradients of the originals for one step."""
    model.zero_grad(set_to_none=True)
    out = model(x)[0]
    out.square().sum().backward()
    return out.detach(), {n: X.grad.clone() for n, X in originals(model).items()}


class CompileTestCase(DeviceTestCase):
    # See Note [setUp of device-generic tests]
    def setUp(self):
        super().setUp()
        torch._dynamo.reset()
        counters.clear()
        self.addCleanup(torch._dynamo.reset)


class TestCompile(CompileTestCase):
    def graph_breaks(self):
        # Newer Dynamo adds a "Developer debug context" paragraph, which holds
        # the repr of the module or the source of the call (it differs between
        # a plain and a parametrized RNN); the rest of the reason is the same.
        breaks = {}
        for reason, count in counters["graph_break"].items():
            reason = re.sub(
                r"\n *Developer debug context:.*?(?=\n\s*\n|\Z)", "", reason, flags=re.S
            )
            breaks[reason] = breaks.get(reason, 0) + count
        return breaks

    def rnn_graph_breaks(self, cls, x):
        r"""The graph breaks this Dynamo reports for torch's own ``cls``.

        With allow_rnn=False, Dynamo refuses to trace an RNN module, and each
        release words the reason differently ("TorchDynamo purposely graph breaks
        on RNN, GRU, LSTMs" in 2.4, "Attempted to wrap RNN, GRU, or LSTM" in 2.13,
        "Dynamo does not support RNN, GRU, or LSTM" in 2.15). Compiling the
        unparametrized module measures the wording of the installed release.
        """
        torch._dynamo.reset()
        counters.clear()
        plain = cls(INPUT_SIZE, HIDDEN_SIZE, device=x.device)
        torch.compile(plain, backend="aot_eager")(x)
        breaks = self.graph_breaks()
        torch._dynamo.reset()
        counters.clear()
        return breaks

    def assertCompiledMatchesEager(self, model, x, fullgraph=False):
        out, grads = forward_backward(model, x)
        cnt = CompileCounterWithBackend("aot_eager")
        compiled = torch.compile(model, backend=cnt, fullgraph=fullgraph)
        out_c, grads_c = forward_backward(compiled, x)
        # aot_eager runs the same ATen kernels as eager; only decompositions
        # may reorder a few roundings.
        tol = rounding_tol(x.dtype)
        self.assertEqual(out_c, out, atol=tol, rtol=tol)
        self.assertEqual(grads_c.keys(), grads.keys())
        for name in grads:
            self.assertEqual(grads_c[name], grads[name], atol=tol, rtol=tol)
        # Something was compiled, so the comparison above is not eager vs eager.
        self.assertGreater(cnt.frame_count, 0)
        return cnt

    @parametrize_test("cls", [nn.GRU, nn.LSTM], name_fn=lambda cls: cls.__name__)
    @parametrize_test("orthogonal_map", [None, "cayley"], name_fn=lambda m: m or "default")
    def test_compile_matches_eager(self, device, cls, orthogonal_map):
        # With Dynamo's default config (allow_rnn=False), Dynamo does not trace the
        # RNN module itself: its forward is a graph break and runs eagerly, and the
        # parametrizations that forward reads are compiled as frames of their own.
        x = torch.randn(6, 2, INPUT_SIZE, device=device)
        known = self.rnn_graph_breaks(cls, x)
        # The case this test is about: the RNN's own forward is not traced.
        self.assertNotEqual(known, {})
        rnn = make_rnn(cls, device, orthogonal_map=orthogonal_map)
        self.assertCompiledMatchesEager(rnn, x)

        # No graph break other than the RNN module itself, for every map. cayley
        # asks torch.get_num_threads() (which Dynamo cannot trace) only for
        # batches of matrices of size >= 128 on CPU, where the batched-LU
        # workaround may be needed (see Note [CPU batched LU]); these are smaller.
        for reason in self.graph_breaks():
            self.assertIn(reason, known, msg="unexpected graph break")

    def test_compile_parametrization_fullgraph(self, device):
        # The default map of each gate weight compiles into one graph per weight.
        rnn = make_rnn(nn.GRU, device)
        for name in GATE_WEIGHTS:
            parametrization = rnn.parametrizations[name][0]
            X = originals(rnn)[name].detach().requires_grad_()
            expected = parametrization(X)
            cnt = CompileCounterWithBackend("aot_eager")
            Q = torch.compile(parametrization, backend=cnt, fullgraph=True)(X)
            tol = rounding_tol(X.dtype)
            self.assertEqual(Q, expected, atol=tol, rtol=tol)
            check_blocks_orthogonal(Q, 3, f"compiled {name}")
            self.assertEqual(cnt.frame_count, 1)
        self.assertEqual(self.graph_breaks(), {})

    @parametrize_test(
        "cls,installed",
        [(nn.GRU, False), (nn.GRU, True), (nn.LSTM, True)],
        name_fn=lambda cls, installed: f"{cls.__name__}_installed_{installed}",
    )
    def test_compile_allow_rnn_fullgraph(self, device, cls, installed):
        # With allow_rnn=True, Dynamo traces the RNN forward as well, so the
        # parametrizations and the RNN kernel end up in a single graph. With the
        # patch installed, that includes the patched RNNBase methods (see
        # Note [RNN weights read once per forward]).
        if installed:
            torch_ortho_patch.install()
        x = torch.randn(6, 2, INPUT_SIZE, device=device)
        with torch._dynamo.config.patch(allow_rnn=True):
            torch.manual_seed(0)
            plain = cls(INPUT_SIZE, HIDDEN_SIZE, device=device)
            try:
                torch.compile(plain, backend="aot_eager")(x)[0].sum().backward()
            except Exception as e:
                # torch itself cannot compile this RNN here. On torch 2.13 an
                # unparametrized LSTM fails with aot_eager: AOTAutograd saves a
                # None for backward and asserts that all saved values are tensors
                # (pytorch PR #185163). The parametrized one must fail the same
                # way, not differently.
                torch._dynamo.reset()
                rnn = make_rnn(cls, device)
                with self.assertRaises(type(e)) as ctx:
                    forward_backward(torch.compile(rnn, backend="aot_eager"), x)
                # The message goes on with the types saved, which differ.
                def head(e):
                    return re.split("[,:\n]", str(e))[0]

                self.assertEqual(head(ctx.exception), head(e))
                return
            torch._dynamo.reset()
            rnn = make_rnn(cls, device)
            cnt = self.assertCompiledMatchesEager(rnn, x, fullgraph=True)
        self.assertEqual(cnt.frame_count, 1)
        self.assertEqual(self.graph_breaks(), {})


class TestFunctionalCall(DeviceTestCase):
    @parametrize_test("installed", [False, True])
    def test_functional_call_replaces_original(self, device, installed):
        if installed:
            torch_ortho_patch.install()
        key = "parametrizations.weight_hh_l0.original"
        gru = make_rnn(nn.GRU, device)
        x = torch.randn(6, 2, INPUT_SIZE, device=device)
        before = gru(x)[0].detach()
        X = gru.get_parameter(key)
        T = (X.detach() + 0.3 * torch.randn_like(X)).requires_grad_()

        out = torch.func.functional_call(gru, {key: T}, (x,))[0]

        # The reference: the same module, with its original set to T.
        ref = make_rnn(nn.GRU, device)
        with torch.no_grad():
            ref.get_parameter(key).copy_(T)
        expected = ref(x)[0]
        tol = same_values_tol(device)
        self.assertEqual(out, expected, atol=tol, rtol=tol)
        self.assertNotEqual(out, before)

        out.square().sum().backward()
        expected.square().sum().backward()
        self.assertIsNotNone(T.grad)
        self.assertEqual(T.grad, ref.get_parameter(key).grad, atol=tol, rtol=tol)
        self.assertIsNone(X.grad)  # the module's own original got nothing

        # The RNN does not keep the weights of the functional call in its cache
        # of flat weights: the next plain call uses the module's own original.
        self.assertEqual(gru(x)[0], before, atol=tol, rtol=tol)

        # torch.func.grad through the same call agrees with autograd, to
        # round-off: it builds a graph of the backward, for which the matrix_exp
        # map takes torch.matrix_exp's backward rather than the eigh one (see
        # Note [Backward of the skew matrix exponential]).
        def loss(T):
            return torch.func.functional_call(gru, {key: T}, (x,))[0].square().sum()

        tol = max(tol, rounding_tol(torch.float32))
        self.assertEqual(torch.func.grad(loss)(T.detach()), T.grad, atol=tol, rtol=tol)


class TestMove(DeviceTestCase):
    def assertBuffersOn(self, rnn, device, dtype):
        for name in GATE_WEIGHTS:
            parametrization = rnn.parametrizations[name]
            weight = getattr(rnn, name)
            for t in (parametrization.original, parametrization[0].base, weight):
                self.assertEqual(t.dtype, dtype)
                self.assertEqual(t.device, torch.device(device))

    def assertSameAsPlain(self, rnn, x):
        # A GRU with the parametrized values as plain parameters gives the same output.
        plain = nn.GRU(INPUT_SIZE, HIDDEN_SIZE, device=x.device, dtype=x.dtype)
        # Read the weights with grad enabled, as rnn(x) does (the values are the
        # same under no_grad; see Note [Backward of the skew matrix exponential]).
        weights = [getattr(rnn, name) for name in rnn._flat_weights_names]
        with torch.no_grad():
            for name, W in zip(rnn._flat_weights_names, weights):
                getattr(plain, name).copy_(W)
        tol = same_values_tol(x.device)
        self.assertEqual(rnn(x)[0], plain(x)[0], atol=tol, rtol=tol)

    @parametrize_test("installed", [False, True])
    def test_to_float64(self, device, installed):
        if installed:
            torch_ortho_patch.install()
        gru = make_rnn(nn.GRU, device)
        gru.to(torch.float64)
        self.assertBuffersOn(gru, device, torch.float64)
        for name in GATE_WEIGHTS:
            W = getattr(gru, name)
            # A cast adds no precision: the base was made orthogonal in float32,
            # so the float64 weight is block-orthogonal to float32's tolerance.
            W32 = W.to(torch.float32)
            self.assertLessEqual(
                block_orthogonality_error(W, 3), orthogonality_tol(W32, 3)
            )
            # Assigning the weight to itself orthogonalizes it again, now in float64.
            with torch.no_grad():
                setattr(gru, name, W)
            check_blocks_orthogonal(getattr(gru, name), 3, f"float64 {name}")
        self.assertBuffersOn(gru, device, torch.float64)
        x = torch.randn(6, 2, INPUT_SIZE, device=device, dtype=torch.float64)
        self.assertSameAsPlain(gru, x)

    @parametrize_test("installed", [False, True])
    def test_to_device(self, device, installed):
        if installed:
            torch_ortho_patch.install()
        gru = make_rnn(nn.GRU, "cpu")
        x = torch.randn(6, 2, INPUT_SIZE)
        expected = gru(x)[0].detach()
        gru.to(device)
        self.assertBuffersOn(gru, device, torch.float32)
        for name in GATE_WEIGHTS:
            check_blocks_orthogonal(getattr(gru, name), 3, f"{device} {name}")
        out = gru(x.to(device))[0]
        self.assertSameAsPlain(gru, x.to(device))
        tol = rounding_tol(torch.float32)
        self.assertEqual(out.cpu(), expected, atol=tol, rtol=tol)
        out.square().sum().backward()
        for name, X in originals(gru).items():
            self.assertEqual(X.grad.device, torch.device(device))
            self.assertGreater(X.grad.abs().sum().item(), 0)


class TestAutocastCPU(TestCase):
    @parametrize_test("orthogonal_map", [None, "cayley"], name_fn=lambda m: m or "default")
    def test_autocast_bfloat16(self, orthogonal_map):
        torch.manual_seed(0)
        n = 8
        gru = ours.orthogonal(nn.GRU(n, n), "weight_hh_l0", orthogonal_map, blocks=3)
        lin = ours.orthogonal(nn.Linear(n, 3 * n), orthogonal_map=orthogonal_map, blocks=3)
        with torch.no_grad():
            for X in (*originals(gru).values(), *originals(lin).values()):
                X.add_(0.1 * torch.randn_like(X))
        # The same modules with the parametrized values as plain parameters.
        plain_gru, plain_lin = nn.GRU(n, n), nn.Linear(n, 3 * n)
        with torch.no_grad():
            for name in gru._flat_weights_names:
                getattr(plain_gru, name).copy_(getattr(gru, name))
            plain_lin.weight.copy_(lin.weight)
            plain_lin.bias.copy_(lin.bias)
        W_gru, W_lin = gru.weight_hh_l0.detach(), lin.weight.detach()

        x = torch.randn(5, 2, n)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            W_gru_ac, W_lin_ac = gru.weight_hh_l0, lin.weight
            y = lin(gru(x)[0])
            y_plain = plain_lin(plain_gru(x)[0])
        self.assertEqual(y.dtype, torch.bfloat16)
        # The maps run in the dtype of the original. Under autocast, the product
        # with the trivialization base is a matmul, which autocast runs in
        # bfloat16, as it would run the module's own use of the weight. So the
        # weight seen under autocast is the float32 one up to bfloat16 rounding
        # of the base, of the map and of their product: three half ulps.
        eps = torch.finfo(torch.bfloat16).eps
        self.assertEqual(W_gru_ac.float(), W_gru, atol=2 * eps, rtol=0)
        self.assertEqual(W_lin_ac.float(), W_lin, atol=2 * eps, rtol=0)
        # The output is that of the plain modules under autocast, whose kernels
        # round the same weights to bfloat16 (one ulp of the outputs, ~1).
        self.assertEqual(y, y_plain, atol=2 * eps, rtol=2 * eps)

        y.float().square().sum().backward()
        for X in (*originals(gru).values(), *originals(lin).values()):
            self.assertEqual(X.dtype, torch.float32)
            self.assertEqual(X.grad.dtype, torch.float32)
            self.assertTrue(X.grad.isfinite().all())
            self.assertGreater(X.grad.abs().sum().item(), 0)

        # Outside autocast the weights are float32 and block-orthogonal in float32.
        for W in (gru.weight_hh_l0, lin.weight):
            self.assertEqual(W.dtype, torch.float32)
            check_blocks_orthogonal(W, 3, "after autocast")
        for parametrized in (gru.parametrizations.weight_hh_l0, lin.parametrizations.weight):
            self.assertEqual(parametrized[0].base.dtype, torch.float32)


# Run by each of the two processes of TestDDP with argv: rank, world_size,
# store_path, out_path. Different seeds on each rank: DDP must broadcast rank 0's
# original and base, and average the gradients of different batches.
DDP_WORKER = """\
import datetime
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import torch_ortho_patch

rank, world_size, store_path, out_path = sys.argv[1:]
rank, world_size = int(rank), int(world_size)
store = dist.FileStore(store_path, world_size)
dist.init_process_group(
    "gloo", store=store, rank=rank, world_size=world_size,
    timeout=datetime.timedelta(seconds=120),
)
try:
    torch.manual_seed(100 + rank)
    gru = torch_ortho_patch.orthogonal(nn.GRU(4, 6), "weight_hh_l0", blocks=3)
    model = DistributedDataParallel(gru)
    init = {k: v.clone() for k, v in gru.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    batches = []
    for step in range(3):
        x = torch.randn(5, 3, 4)
        batches.append(x)
        opt.zero_grad()
        model(x)[0].square().mean().backward()
        opt.step()
    torch.save(
        {
            "init": init,
            "batches": batches,
            "final": gru.state_dict(),
            "weight_hh_l0": gru.weight_hh_l0.detach(),
        },
        out_path,
    )
    # Neither rank tears the group down while the other may still use it: once,
    # under the load of the whole suite, rank 1 aborted at exit ("terminate
    # called without an active exception") after rank 0 had left.
    dist.barrier()
finally:
    dist.destroy_process_group()
"""


@unittest.skipIf(
    not dist.is_available() or not dist.is_gloo_available(),
    "torch.distributed with gloo is not available",
)
class TestDDP(TestCase):
    # A bound for hung processes, not a speed check. A run takes 5 to 15 s on 2
    # idle cores, most of it importing torch and torch._dynamo (which DDP
    # imports) in each process; with the CUDA builds that CI tests other torch
    # releases with, on shared cores (load 5), that import alone took 12 to 17 s,
    # and two processes do it at once. The process group's own timeout, for the
    # rank that arrives first, is set in DDP_WORKER.
    TIMEOUT_S = 180

    def test_ddp_gloo_two_processes(self):
        world_size = 2
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
            if IS_LINUX:
                env["GLOO_SOCKET_IFNAME"] = "lo"  # stay on 127.0.0.1
            procs = [
                subprocess.Popen(
                    [
                        sys.executable, "-c", DDP_WORKER, str(rank), str(world_size),
                        str(tmp / "store"), str(tmp / f"rank{rank}.pt"),
                    ],
                    cwd=tmp,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for rank in range(world_size)
            ]
            outputs = []
            try:
                for p in procs:
                    outputs.append(p.communicate(timeout=self.TIMEOUT_S)[0])
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
            for rank, (p, output) in enumerate(zip(procs, outputs)):
                self.assertEqual(p.returncode, 0, msg=f"rank {rank}:\n{output}")
            results = [
                torch.load(tmp / f"rank{rank}.pt", weights_only=True)
                for rank in range(world_size)
            ]

        r0, r1 = results
        key = "parametrizations.weight_hh_l0.original"
        # Both ranks start from rank 0's values and end with the same ones.
        for k in r0["init"]:
            self.assertEqual(r1["init"][k], r0["init"][k], atol=0, rtol=0)
            self.assertEqual(r1["final"][k], r0["final"][k], atol=0, rtol=0)
        self.assertEqual(r1["weight_hh_l0"], r0["weight_hh_l0"], atol=0, rtol=0)
        self.assertNotEqual(r0["final"][key], r0["init"][key])  # it trained
        check_blocks_orthogonal(r0["weight_hh_l0"], 3, "DDP weight_hh_l0")

        # One process that averages the losses of both ranks' batches takes the
        # same steps as DDP, which averages their gradients.
        gru = torch_ortho_patch.orthogonal(nn.GRU(4, 6), "weight_hh_l0", blocks=3)
        gru.load_state_dict(r0["init"])
        opt = torch.optim.SGD(gru.parameters(), lr=0.5)
        for x0, x1 in zip(r0["batches"], r1["batches"]):
            opt.zero_grad()
            loss = (gru(x0)[0].square().mean() + gru(x1)[0].square().mean()) / 2
            loss.backward()
            opt.step()
        tol = rounding_tol(torch.float32, 6)
        self.assertEqual(gru.weight_hh_l0, r0["weight_hh_l0"], atol=tol, rtol=tol)
        for k, v in gru.state_dict().items():
            self.assertEqual(v, r0["final"][k], atol=tol, rtol=tol)


class TestCheckpoint(TestCase):
    def setUp(self):
        super().setUp()
        torch_ortho_patch.uninstall()
        self.addCleanup(torch_ortho_patch.uninstall)

    def round_trip(self, save_installed):
        def upstream_name(seed):
            torch.manual_seed(seed)
            return P.orthogonal(nn.GRU(4, 4), "weight_hh_l0", blocks=3)

        def package(seed):
            torch.manual_seed(seed)
            return torch_ortho_patch.orthogonal(nn.GRU(4, 4), "weight_hh_l0", blocks=3)

        make_saved, make_loaded = (
            (upstream_name, package) if save_installed else (package, upstream_name)
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "gru.pt"
            if save_installed:
                torch_ortho_patch.install()
            saved = make_saved(seed=0)
            torch.save(saved.state_dict(), path)
            torch_ortho_patch.uninstall()
            if not save_installed:
                torch_ortho_patch.install()
            loaded = make_loaded(seed=1)
            self.assertNotEqual(loaded.weight_hh_l0, saved.weight_hh_l0)
            loaded.load_state_dict(torch.load(path, weights_only=True))  # strict
            torch_ortho_patch.uninstall()

        self.assertEqual(loaded.parametrizations.weight_hh_l0[0].blocks, 3)
        self.assertEqual(loaded.state_dict().keys(), saved.state_dict().keys())
        for k, v in saved.state_dict().items():
            self.assertEqual(loaded.state_dict()[k], v, atol=0, rtol=0)
        self.assertEqual(loaded.weight_hh_l0, saved.weight_hh_l0, atol=0, rtol=0)
        check_blocks_orthogonal(loaded.weight_hh_l0, 3, "loaded weight_hh_l0")
        x = torch.randn(3, 2, 4)
        self.assertEqual(loaded(x)[0], saved(x)[0], atol=0, rtol=0)

    def test_save_installed_load_package(self):
        self.round_trip(save_installed=True)

    def test_save_package_load_installed(self):
        self.round_trip(save_installed=False)


# A new user's training script. It does not know about torch_ortho_patch.
TRAIN_SCRIPT = """\
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=100)
args = parser.parse_args()

torch.manual_seed(0)
n = 8
gru = nn.GRU(n, n)
torch.nn.utils.parametrizations.orthogonal(gru, "weight_hh_l0", blocks=3)
opt = torch.optim.SGD(gru.parameters(), lr=0.1)
for step in range(args.steps):
    opt.zero_grad()
    loss = gru(torch.randn(5, 4, n))[0].square().mean()
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
for gate, G in zip("rzn", gru.weight_hh_l0.detach().split(n)):
    print(f"gate {gate} error {(G.mT @ G - torch.eye(n)).abs().max().item():.3e}")
"""


class TestNewUser(TestCase):
    TIMEOUT_S = 120  # a bound for a hung interpreter; a run takes a few seconds

    def run_pythons(self, *argvs, cwd):
        r"""Run ``python *argv`` for each argv at once; return (rc, out, err) each."""
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
        procs = [
            subprocess.Popen(
                [sys.executable, *argv],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for argv in argvs
        ]
        results = []
        try:
            for p in procs:
                out, err = p.communicate(timeout=self.TIMEOUT_S)
                results.append((p.returncode, out, err))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return results

    def test_unmodified_script_trains_with_run(self):
        # cwd is a fresh directory outside the repository; only PYTHONPATH points
        # at it, as for a package that is not pip-installed.
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "train.py").write_text(TRAIN_SCRIPT)
            patched, unpatched = self.run_pythons(
                ["-m", "torch_ortho_patch", "run", "train.py", "--steps", "2"],
                ["train.py", "--steps", "2"],
                cwd=tmp,
            )

        rc, out, err = patched
        self.assertEqual(rc, 0, msg=err)
        lines = out.splitlines()
        self.assertEqual(
            [line.split(" loss ")[0] for line in lines[:2]], ["step 0", "step 1"]
        )
        self.assertEqual(
            [line.split(" error ")[0] for line in lines[2:]],
            ["gate r", "gate z", "gate n"],
        )
        tol = orthogonality_tol(torch.empty(8, 8))
        for line in lines[2:]:
            self.assertLessEqual(float(line.split(" error ")[1]), tol, msg=line)

        # Without the patch, torch's own orthogonal has no `blocks`: it is the
        # patch that makes the script work.
        rc, out, err = unpatched
        self.assertNotEqual(rc, 0)
        self.assertEqual(out, "")
        last = err.strip().splitlines()[-1]
        self.assertTrue(last.startswith("TypeError: "), msg=err)
        self.assertIn("unexpected keyword argument 'blocks'", last)


instantiate_device_type_tests(TestCompile, globals(), only_for=("cpu", "cuda"))
instantiate_device_type_tests(TestFunctionalCall, globals(), only_for=("cpu", "cuda"))
instantiate_device_type_tests(TestMove, globals(), only_for=("cpu", "cuda"))
instantiate_parametrized_tests(TestAutocastCPU)


if __name__ == "__main__":
    run_tests()
