# Owner(s): ["module: nn"]
# Tests of Note [RNN weights read once per forward] (torch_ortho_patch/_patches/rnn_read_once.py).
import copy
import pickle
import warnings

import torch
import torch.nn as nn
from torch.nn.modules.rnn import RNNBase
from torch.nn.utils import parametrize
from torch.testing._internal.common_device_type import instantiate_device_type_tests
from torch.testing._internal.common_utils import (
    parametrize as parametrize_test,
    run_tests,
    TestCase,
)

import torch_ortho_patch
from _block_checks import Counting
from torch_ortho_patch import _rnn


RNNS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}


def counted(cls, names, device, **kwargs):
    rnn = cls(5, 5, **kwargs).to(device)
    counters = []
    for name in names:
        counter = Counting()
        parametrize.register_parametrization(rnn, name, counter)
        counters.append(counter)
    return rnn, counters


def calls_per_forward(rnn, counters, device):
    x = torch.randn(3, 2, 5, device=device)
    rnn(x)  # the first call may initialise caches
    for c in counters:
        c.calls = 0
    rnn(x)
    return [c.calls for c in counters]


class UninstalledTestCase(TestCase):
    # A base class, not TestRNNReadsWeightsOnce.setUp: see
    # Note [setUp of device-generic tests] in test_integration.py.
    def setUp(self):
        super().setUp()
        torch_ortho_patch.uninstall()
        self.addCleanup(torch_ortho_patch.uninstall)


class TestRNNReadsWeightsOnce(UninstalledTestCase):
    @parametrize_test("kind", list(RNNS))
    def test_upstream_evaluates_four_times(self, device, kind):
        # The behaviour of torch itself, measured on torch 2.13: hasattr() and
        # getattr() in both _weights_have_changed() and _init_flat_weights().
        rnn, counters = counted(RNNS[kind], ["weight_hh_l0"], device)
        self.assertEqual(calls_per_forward(rnn, counters, device), [4])

    @parametrize_test("kind", list(RNNS))
    def test_once_per_forward_without_install(self, device, kind):
        # torch_ortho_patch.orthogonal amends the class that parametrize gives
        # this one module, and removing the parametrization takes it back.
        rnn = RNNS[kind](5, 5).to(device)
        blocks = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
        torch_ortho_patch.orthogonal(rnn, "weight_hh_l0", blocks=blocks)
        counter = Counting()
        parametrize.register_parametrization(rnn, "weight_hh_l0", counter)
        self.assertEqual(calls_per_forward(rnn, [counter], device), [1])
        other = RNNS[kind](5, 5).to(device)
        self.assertIs(type(other)._update_flat_weights, RNNBase._update_flat_weights)
        self.assertEqual(RNNBase._update_flat_weights.__module__, "torch.nn.modules.rnn")
        parametrize.remove_parametrizations(rnn, "weight_hh_l0")
        self.assertIs(type(rnn), RNNS[kind])

    @parametrize_test("kind", list(RNNS))
    def test_once_per_forward(self, device, kind):
        torch_ortho_patch.install()
        rnn, counters = counted(RNNS[kind], ["weight_hh_l0"], device)
        self.assertEqual(calls_per_forward(rnn, counters, device), [1])

    @parametrize_test("kind", list(RNNS))
    def test_once_per_forward_many_weights(self, device, kind):
        torch_ortho_patch.install()
        names = ["weight_ih_l0", "weight_hh_l0", "bias_hh_l0", "weight_hh_l1_reverse"]
        rnn, counters = counted(
            RNNS[kind], names, device, num_layers=2, bidirectional=True
        )
        self.assertEqual(calls_per_forward(rnn, counters, device), [1, 1, 1, 1])

    def test_once_per_forward_with_projections(self, device):
        torch_ortho_patch.install()
        rnn, counters = counted(nn.LSTM, ["weight_hr_l0"], device, proj_size=3)
        self.assertEqual(calls_per_forward(rnn, counters, device), [1])

    def test_cached(self, device):
        torch_ortho_patch.install()
        rnn, counters = counted(nn.GRU, ["weight_hh_l0"], device)
        x = torch.randn(3, 2, 5, device=device)
        counters[0].calls = 0  # registering evaluates it once
        with parametrize.cached():
            rnn(x)
            rnn(x)
        # Computed once for the whole cached() block.
        self.assertEqual(counters[0].calls, 1)

    @parametrize_test("kind", list(RNNS))
    def test_same_values_and_gradients(self, device, kind):
        # The fix changes how often the weights are read, not what is computed.
        def run():
            torch.manual_seed(0)
            rnn = RNNS[kind](5, 5, num_layers=2).to(device)
            with warnings.catch_warnings():
                # Ours warns that a stacked gate weight is not square; the point
                # here is only that the computation is the same.
                warnings.simplefilter("ignore", UserWarning)
                # The same parametrization in both runs; installed() toggles the fix.
                torch_ortho_patch.orthogonal(rnn, "weight_hh_l1")
            x = torch.randn(4, 2, 5, device=device)
            out = rnn(x)[0]
            out.sum().backward()
            return out, [p.grad for p in rnn.parameters()]

        expected = run()
        with torch_ortho_patch.installed():
            actual = run()
        self.assertEqual(actual, expected, atol=0, rtol=0)


class TestRNNBaseBackwardCompatibility(TestCase):
    def setUp(self):
        super().setUp()
        torch_ortho_patch.install()
        self.addCleanup(torch_ortho_patch.uninstall)

    def test_methods_installed_and_restored(self):
        amended = _rnn.methods()
        self.assertEqual(
            set(amended),
            {"_init_flat_weights", "_weights_have_changed", "_update_flat_weights", "__deepcopy__"},
        )
        for name, fn in amended.items():
            self.assertIs(vars(RNNBase)[name], fn)
        torch_ortho_patch.uninstall()
        for name in ("_init_flat_weights", "_update_flat_weights"):
            method = getattr(RNNBase, name)
            self.assertEqual(method.__module__, "torch.nn.modules.rnn")

    def test_weights_have_changed(self):
        gru = nn.GRU(4, 4)
        self.assertFalse(gru._weights_have_changed())
        parametrize.register_parametrization(gru, "weight_hh_l0", Counting())
        gru(torch.randn(2, 1, 4))
        # A parametrized weight is a new tensor at every access.
        self.assertTrue(gru._weights_have_changed())

    def test_init_flat_weights_without_arguments(self):
        gru = nn.GRU(4, 4, bias=False)
        gru._flat_weights = []
        gru._init_flat_weights()
        self.assertEqual(len(gru._flat_weights), 2)
        self.assertIs(gru._flat_weights[0], gru.weight_ih_l0)
        self.assertIs(gru._flat_weight_refs[1](), gru.weight_hh_l0)

    def test_setattr(self):
        torch.manual_seed(0)
        gru, reference = nn.GRU(4, 4), nn.GRU(4, 4)
        gru.weight_hh_l0 = nn.Parameter(reference.weight_hh_l0.detach().clone())
        gru.weight_ih_l0 = nn.Parameter(reference.weight_ih_l0.detach().clone())
        for name in ("bias_ih_l0", "bias_hh_l0"):
            setattr(gru, name, nn.Parameter(getattr(reference, name).detach().clone()))
        self.assertIs(gru._flat_weights[1], gru.weight_hh_l0)
        x = torch.randn(3, 1, 4)
        self.assertEqual(gru(x)[0], reference(x)[0])

    def test_apply(self):
        lstm = nn.LSTM(4, 4).double()
        self.assertEqual(lstm._flat_weights[0].dtype, torch.float64)
        out, _ = lstm(torch.randn(3, 1, 4, dtype=torch.float64))
        self.assertEqual(out.dtype, torch.float64)

    def test_pickle_and_deepcopy(self):
        lstm = nn.LSTM(4, 4, num_layers=2)
        x = torch.randn(3, 1, 4)
        for clone in (pickle.loads(pickle.dumps(lstm)), copy.deepcopy(lstm)):
            self.assertEqual(clone(x)[0], lstm(x)[0])
            self.assertEqual(clone._flat_weights_names, lstm._flat_weights_names)

    def test_flatten_parameters(self):
        lstm = nn.LSTM(4, 4)
        lstm.flatten_parameters()
        self.assertEqual(lstm(torch.randn(3, 1, 4))[0].shape, (3, 1, 4))

    def test_jit_script(self):
        class Wrapper(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(4, 4)

            def forward(self, x):
                return self.lstm(x)[0]

        model = Wrapper()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # in torch >= 2.10
            scripted = torch.jit.script(model)
        x = torch.randn(3, 1, 4)
        self.assertEqual(scripted(x), model(x))

    def test_functional_call(self):
        torch.manual_seed(0)
        gru, reference = nn.GRU(4, 4), nn.GRU(4, 4)
        params = {k: v.detach().clone() for k, v in reference.named_parameters()}
        x = torch.randn(3, 1, 4)
        expected = gru(x)[0]
        out = torch.func.functional_call(gru, params, (x,))[0]
        self.assertEqual(out, reference(x)[0])
        # The module's own weights are back in use afterwards.
        self.assertEqual(gru(x)[0], expected)

    def test_parametrized_state_dict_round_trip(self):
        orthogonal = torch.nn.utils.parametrizations.orthogonal
        gru = orthogonal(nn.GRU(4, 4), "weight_hh_l0", blocks=3)
        clone = orthogonal(nn.GRU(4, 4), "weight_hh_l0", blocks=3)
        clone.load_state_dict(gru.state_dict())
        x = torch.randn(3, 1, 4)
        self.assertEqual(clone(x)[0], gru(x)[0])


instantiate_device_type_tests(
    TestRNNReadsWeightsOnce, globals(), only_for=("cpu", "cuda")
)

if __name__ == "__main__":
    run_tests()
