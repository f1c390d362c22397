# Owner(s): ["module: nn"]
import inspect
import io
import pickle
import re
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.init as I
import torch.nn.utils.parametrizations as P
from torch.nn.modules.rnn import RNNBase
from torch.testing._internal.common_utils import run_tests, TestCase

import torch_ortho_patch
from torch_ortho_patch import _check, _install, _rnn, init as ours_init, parametrizations as ours


REPO = Path(__file__).absolute().parent.parent
NEW_NAMES = ("orthogonal_map", "matrix_exp_map", "cayley_map", "householder_map")
RNN_METHODS = ("_init_flat_weights", "_update_flat_weights")
INIT_NAMES = ("orthogonal_", "orthogonal")


def snapshot():
    r"""Return what install() may touch: the objects themselves, for identity checks."""
    return {
        "orthogonal": vars(P)["orthogonal"],
        "__all__": vars(P)["__all__"],
        "__all__ items": list(P.__all__),
        **{name: vars(P).get(name, "<missing>") for name in NEW_NAMES},
        **{name: vars(RNNBase)[name] for name in RNN_METHODS},
        "_weights_have_changed": vars(RNNBase)["_weights_have_changed"],
        **{f"init.{name}": vars(I)[name] for name in INIT_NAMES},
    }


def takes_blocks(fn):
    return "blocks" in inspect.signature(fn).parameters


class TestInstall(TestCase):
    def setUp(self):
        super().setUp()
        torch_ortho_patch.uninstall()
        self.addCleanup(torch_ortho_patch.uninstall)
        self.before = snapshot()

    def assertRestored(self):
        after = snapshot()
        for key, value in self.before.items():
            if key == "__all__ items":
                self.assertEqual(after[key], value)
            else:
                self.assertIs(after[key], value, msg=key)

    def test_import_patches_nothing(self):
        code = (
            "import inspect, torch_ortho_patch\n"
            "import torch.nn.utils.parametrizations as P\n"
            "from torch.nn.modules.rnn import RNNBase\n"
            "print('blocks' in inspect.signature(P.orthogonal).parameters,"
            " hasattr(P, 'orthogonal_map'), RNNBase._init_flat_weights.__module__,"
            " torch_ortho_patch.is_installed())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.assertExpectedInline(out, """False False torch.nn.modules.rnn False\n""")

    def test_install_patches(self):
        self.assertFalse(torch_ortho_patch.is_installed())
        torch_ortho_patch.install()
        self.assertTrue(torch_ortho_patch.is_installed())
        # The replacement is our function itself: no wrapper, so `blocks` shows.
        self.assertIs(P.orthogonal, ours.orthogonal)
        self.assertTrue(takes_blocks(P.orthogonal))
        self.assertFalse(hasattr(P.orthogonal, "__wrapped__"))
        self.assertIs(P.orthogonal.__doc__, ours.orthogonal.__doc__)
        for name in NEW_NAMES:
            self.assertIs(getattr(P, name), getattr(ours, name))
            self.assertIn(name, P.__all__)
        old_all = self.before["__all__ items"]
        self.assertEqual(P.__all__[: len(old_all)], old_all)
        amended = _rnn.methods()
        self.assertEqual(
            set(amended),
            {"_init_flat_weights", "_weights_have_changed", "_update_flat_weights", "__deepcopy__"},
        )
        for name, fn in amended.items():
            self.assertIs(vars(RNNBase)[name], fn)
        # See Note [What install() patches]: torch's private classes stay.
        self.assertIsNot(P._Orthogonal, ours._Orthogonal)
        # nn.init.orthogonal_ and its deprecated alias; the rest of nn.init stays.
        for name in INIT_NAMES:
            self.assertIs(vars(I)[name], getattr(ours_init, name))
        self.assertTrue(takes_blocks(I.orthogonal_))
        self.assertIs(I.xavier_uniform_, ours_init.xavier_uniform_)
        self.assertIs(_install._torch_init_orthogonal(), self.before["init.orthogonal_"])

        namespace = {}
        exec("from torch.nn.utils.parametrizations import *", namespace)
        self.assertIs(namespace["cayley_map"], ours.cayley_map)

    def test_uninstall_restores_identity(self):
        torch_ortho_patch.install()
        torch_ortho_patch.uninstall()
        self.assertFalse(torch_ortho_patch.is_installed())
        self.assertRestored()
        for name in NEW_NAMES:
            self.assertFalse(hasattr(P, name))

    def test_idempotent(self):
        torch_ortho_patch.install()
        torch_ortho_patch.install()
        self.assertIs(P.orthogonal, ours.orthogonal)
        self.assertEqual(P.__all__.count("cayley_map"), 1)
        torch_ortho_patch.uninstall()
        self.assertRestored()
        torch_ortho_patch.uninstall()  # nothing installed: does nothing
        self.assertRestored()

    def test_reinstall(self):
        for _ in range(3):
            torch_ortho_patch.install()
            self.assertIs(P.orthogonal, ours.orthogonal)
            torch_ortho_patch.uninstall()
            self.assertRestored()

    def test_uninstall_without_install_does_nothing(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            torch_ortho_patch.uninstall()
        self.assertRestored()

    def test_never_records_own_object(self):
        # One of our objects already in place must not be taken for the original.
        P.cayley_map = ours.cayley_map
        try:
            torch_ortho_patch.install()
            torch_ortho_patch.uninstall()
            self.assertFalse(hasattr(P, "cayley_map"))
        finally:
            vars(P).pop("cayley_map", None)
        self.assertRestored()

    def test_foreign_replacement_warns_and_is_kept(self):
        def foreign(module, name="weight"):
            return module

        torch_ortho_patch.install()
        P.orthogonal = foreign
        try:
            with self.assertWarns(UserWarning) as cm:
                torch_ortho_patch.uninstall()
            self.assertIs(P.orthogonal, foreign)
        finally:
            P.orthogonal = self.before["orthogonal"]
        msg = str(cm.warning).replace(repr(foreign), "<foreign>")
        self.assertExpectedInline(
            msg,
            """torch.nn.utils.parametrizations.orthogonal was replaced by <foreign> after torch_ortho_patch.install(), so uninstall() leaves it in place instead of restoring the original. Restore it yourself, or uninstall() before replacing it, to silence this warning.""",  # noqa: B950
        )
        # Everything else was restored.
        self.assertRestored()
        self.assertFalse(torch_ortho_patch.is_installed())

    def test_capability_gate(self):
        # A torch whose orthogonal already takes `blocks` is left alone.
        def orthogonal(module, name="weight", orthogonal_map=None, *, blocks=None):
            return module

        P.orthogonal = orthogonal
        try:
            with self.assertWarns(UserWarning) as cm:
                torch_ortho_patch.install()
            self.assertIs(P.orthogonal, orthogonal)
            self.assertFalse(torch_ortho_patch.is_installed())
            self.assertFalse(hasattr(P, "cayley_map"))
            self.assertIs(
                vars(RNNBase)["_update_flat_weights"],
                self.before["_update_flat_weights"],
            )
            self.assertTrue(_install._torch_has_blocks())
        finally:
            P.orthogonal = self.before["orthogonal"]
        self.assertExpectedInline(
            str(cm.warning),
            """torch.nn.utils.parametrizations.orthogonal already accepts `blocks`, so torch_ortho_patch.install() changed nothing: this PyTorch includes the change. Call torch's own orthogonal(..., blocks=k) and remove the install() call to silence this warning.""",  # noqa: B950
        )
        self.assertFalse(_install._torch_has_blocks())

    def test_init_capability_gate(self):
        # A torch whose nn.init.orthogonal_ takes `blocks` keeps its own; the
        # rest is installed.
        def orthogonal_(tensor, gain=1, generator=None, *, blocks=None):
            return tensor

        I.orthogonal_ = orthogonal_
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                torch_ortho_patch.install()
            self.assertIs(I.orthogonal_, orthogonal_)
            self.assertIs(I.orthogonal, self.before["init.orthogonal"])
            self.assertIs(P.orthogonal, ours.orthogonal)
            torch_ortho_patch.uninstall()
            self.assertIs(I.orthogonal_, orthogonal_)
        finally:
            I.orthogonal_ = self.before["init.orthogonal_"]
        self.assertRestored()

    def test_version_gate(self):
        with mock.patch.object(torch, "__version__", "2.3.1"):
            with self.assertRaises(RuntimeError) as cm:
                torch_ortho_patch.install()
        self.assertExpectedInline(
            str(cm.exception),
            """torch_ortho_patch.install() does not support this PyTorch: no release older than 2.4 is tested. Expected torch >= 2.4. Got 2.3.1.""",  # noqa: B950
        )
        self.assertFalse(torch_ortho_patch.is_installed())
        self.assertRestored()
        # The floor itself, and version strings with local parts, are accepted.
        for version in ("2.4.0", "2.14.0a0+git1234", "3.0"):
            with mock.patch.object(torch, "__version__", version):
                torch_ortho_patch.install()
                self.assertTrue(torch_ortho_patch.is_installed())
                torch_ortho_patch.uninstall()
        self.assertEqual(_install._parse_version("1.13.1+cu117"), (1, 13))

    def test_thread_safety(self):
        n_threads, rounds = 8, 50
        barrier = threading.Barrier(n_threads)
        errors = []

        def worker(i):
            try:
                barrier.wait()
                for j in range(rounds):
                    if (i + j) % 2:
                        torch_ortho_patch.install()
                    else:
                        torch_ortho_patch.uninstall()
            except BaseException as e:  # noqa: B036
                errors.append(e)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            threads = [
                threading.Thread(target=worker, args=(i,)) for i in range(n_threads)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        # A foreign-replacement warning would mean that two calls interleaved.
        self.assertEqual([str(w.message) for w in caught], [])
        # Whatever the last call was, the state is consistent.
        if torch_ortho_patch.is_installed():
            self.assertIs(P.orthogonal, ours.orthogonal)
            self.assertEqual(P.__all__.count("orthogonal_map"), 1)
        torch_ortho_patch.uninstall()
        self.assertRestored()

    def test_installed_context_manager(self):
        with torch_ortho_patch.installed():
            self.assertTrue(torch_ortho_patch.is_installed())
            self.assertIs(P.orthogonal, ours.orthogonal)
        self.assertRestored()

    def test_installed_restores_on_exception(self):
        with self.assertRaisesRegex(ValueError, "boom"):
            with torch_ortho_patch.installed():
                self.assertTrue(torch_ortho_patch.is_installed())
                raise ValueError("boom")
        self.assertFalse(torch_ortho_patch.is_installed())
        self.assertRestored()

    def test_installed_keeps_an_earlier_install(self):
        torch_ortho_patch.install()
        with torch_ortho_patch.installed():
            pass
        self.assertTrue(torch_ortho_patch.is_installed())
        self.assertIs(P.orthogonal, ours.orthogonal)

    def test_installed_object_is_reusable(self):
        # One object entered twice, nested, and as a decorator: each exit undoes
        # only its own entry. A contextlib.contextmanager object fails the second
        # time with an AttributeError of its own.
        cm = torch_ortho_patch.installed()
        for _ in range(2):
            with cm:
                self.assertTrue(torch_ortho_patch.is_installed())
                with cm:
                    self.assertTrue(torch_ortho_patch.is_installed())
                self.assertTrue(torch_ortho_patch.is_installed())
            self.assertFalse(torch_ortho_patch.is_installed())
        self.assertRestored()

        @torch_ortho_patch.installed()
        def depth(n):
            self.assertTrue(torch_ortho_patch.is_installed())
            return 0 if n == 0 else 1 + depth(n - 1)

        self.assertEqual(depth(3), 3)
        self.assertFalse(torch_ortho_patch.is_installed())
        self.assertRestored()

    def test_installed_when_install_raises(self):
        cm = torch_ortho_patch.installed()
        with mock.patch.object(torch, "__version__", "2.3.1"):
            with self.assertRaisesRegex(RuntimeError, "does not support"):
                with cm:
                    pass
        # The failed entry left nothing to undo: the object is still usable.
        with cm:
            self.assertTrue(torch_ortho_patch.is_installed())
        self.assertRestored()

    def test_no_arguments(self):
        # install(), uninstall(), installed() and is_installed() take none; a
        # forgotten call is Python's own clear TypeError, not something later.
        messages = []
        for call in (
            lambda: torch_ortho_patch.install(True),
            lambda: torch_ortho_patch.uninstall(force=True),
            lambda: torch_ortho_patch.installed(False),
            lambda: torch_ortho_patch.is_installed(1),
        ):
            with self.assertRaises(TypeError) as cm:
                call()
            messages.append(str(cm.exception))
        # The parentheses forgotten; Python's wording changes between releases.
        with self.assertRaisesRegex(TypeError, "does not support the context manager"):
            with torch_ortho_patch.installed:
                pass
        self.assertExpectedInline(
            "\n".join(messages),
            """\
install() takes 0 positional arguments but 1 was given
uninstall() got an unexpected keyword argument 'force'
installed() takes 0 positional arguments but 1 was given
is_installed() takes 0 positional arguments but 1 was given""",
        )
        self.assertFalse(torch_ortho_patch.is_installed())
        self.assertRestored()

    def test_names_bound_before_install_keep_the_original(self):
        # The monkeypatch caveat of install()'s docstring.
        from torch.nn.utils.parametrizations import orthogonal as early

        with torch_ortho_patch.installed():
            from torch.nn.utils.parametrizations import orthogonal as late

            self.assertFalse(takes_blocks(early))
            self.assertTrue(takes_blocks(late))

    def test_init_blocks_through_torch(self):
        # The loop of the RNN guide, unchanged but for blocks=4.
        lstm = nn.LSTM(3, 5, proj_size=2)
        with torch_ortho_patch.installed():
            for name, param in lstm.named_parameters():
                if name.startswith(("weight_ih", "weight_hh")):
                    nn.init.orthogonal_(param, 1.0, blocks=4)
        for name in ("weight_ih_l0", "weight_hh_l0"):
            G = getattr(lstm, name).detach().unflatten(0, (4, 5))
            G = G.mT if G.size(-2) < G.size(-1) else G
            Id = torch.eye(G.size(-1)).expand(4, -1, -1)
            self.assertEqual(G.mT @ G, Id, atol=1e-5, rtol=0)
        with self.assertRaisesRegex(TypeError, "blocks"):
            nn.init.orthogonal_(lstm.weight_hh_l0, blocks=4)

    def test_block_orthogonal_through_torch(self):
        with torch_ortho_patch.installed():
            gru = P.orthogonal(nn.GRU(6, 6), "weight_hh_l0", blocks=3)
        # Made while installed, it keeps working after uninstall().
        W = gru.weight_hh_l0.detach().unflatten(0, (3, 6))
        eps = torch.finfo(W.dtype).eps
        Id = torch.eye(6).expand(3, 6, 6)
        self.assertEqual(W.mT @ W, Id, atol=100 * 6 * eps, rtol=0)
        out, _ = gru(torch.randn(2, 1, 6))
        self.assertEqual(out.shape, (2, 1, 6))

    def test_serialization(self):
        # The claims of install()'s docstring.
        before = P.orthogonal(nn.Linear(4, 4))  # torch's own parametrization
        with torch_ortho_patch.installed():
            gru = P.orthogonal(nn.GRU(4, 4), "weight_hh_l0", blocks=3)
            # torch's objects made before install() still pickle.
            pickle.dumps(before.parametrizations)
        # A parametrization pickled alone is recorded under our module path.
        pickled = pickle.dumps(gru.parametrizations)
        self.assertIn(b"torch_ortho_patch.parametrizations", pickled)
        # PyTorch refuses to pickle a parametrized module whole.
        with self.assertRaisesRegex(RuntimeError, "only supported through state_dict"):
            torch.save(gru, io.BytesIO())
        # A state dict is plain tensors: weights_only loading works.
        buffer = io.BytesIO()
        torch.save(gru.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        self.assertEqual(set(state), set(gru.state_dict()))
        with torch_ortho_patch.installed():
            other = P.orthogonal(nn.GRU(4, 4), "weight_hh_l0", blocks=3)
        other.load_state_dict(state)
        self.assertEqual(other.weight_hh_l0, gru.weight_hh_l0)


def _pyproject_torch_requirement():
    r"""The torch requirement of pyproject.toml's [project] dependencies."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: read the one line by hand
        match = re.search(r"^dependencies = \[(.*)\]$", text, flags=re.M)
        deps = re.findall(r'"([^"]*)"', match.group(1)) if match else []
    else:
        deps = tomllib.loads(text)["project"]["dependencies"]
    return [d for d in deps if re.match(r"torch\b", d)]


class TestFloor(TestCase):
    # See Note [Supported PyTorch releases] in torch_ortho_patch/_install.py.
    floor = ".".join(map(str, _install._MIN_TORCH_VERSION))

    def test_pyproject_asks_for_the_floor(self):
        self.assertEqual(_pyproject_torch_requirement(), [f"torch>={self.floor}"])

    def test_docs_state_the_floor(self):
        # Every sentence in the README and the docs that states a floor states
        # this one, and the install pages do state it.
        claims = re.compile(
            r"(?:PyTorch|torch)\s+(\d+\.\d+)\s+or\s+later|torch>=(\d+\.\d+)"
        )
        stated = {}
        for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.rst"))]:
            for match in claims.finditer(path.read_text()):
                version = match.group(1) or match.group(2)
                stated.setdefault(path.relative_to(REPO).as_posix(), set()).add(version)
        for name in ("README.md", "docs/index.rst", "docs/installing.rst"):
            self.assertIn(name, stated, msg=f"{name} does not state the torch floor")
        for name, versions in stated.items():
            self.assertEqual(versions, {self.floor}, msg=name)

    def test_floor_is_what_install_checks(self):
        below = f"{_install._MIN_TORCH_VERSION[0]}.{_install._MIN_TORCH_VERSION[1] - 1}.0"
        with mock.patch.object(torch, "__version__", below):
            with self.assertRaisesRegex(RuntimeError, f"Expected torch >= {self.floor}."):
                _install._check_torch_version()
        with mock.patch.object(torch, "__version__", f"{self.floor}.0"):
            _install._check_torch_version()


class TestApplicability(TestCase):
    # What `python -m torch_ortho_patch check` says about this torch: the same
    # checks as install(), by capability past the version floor.
    def test_supported_torch(self):
        self.assertEqual(
            _check.applicability(),
            [
                "patch applies to this torch: yes",
                "RNN read-once fix applies: yes",
                "nn.init.orthogonal_ with blocks applies: yes",
            ],
        )

    def test_below_the_floor(self):
        with mock.patch.object(torch, "__version__", "2.3.1"):
            (line,) = _check.applicability()
        self.assertExpectedInline(
            line,
            """patch applies to this torch: no. torch_ortho_patch.install() does not support this PyTorch: no release older than 2.4 is tested. Expected torch >= 2.4. Got 2.3.1.""",  # noqa: B950
        )

    def test_rnn_layout_differs(self):
        with mock.patch.object(_rnn, "applies", return_value=False):
            lines = _check.applicability()
        self.assertEqual(
            lines[1],
            "RNN read-once fix applies: no, RNNBase does not have the methods it "
            "replaces in the form it expects",
        )


if __name__ == "__main__":
    run_tests()
