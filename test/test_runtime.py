# Owner(s): ["module: nn"]
r"""The runtime as users meet it: its cache, install() and uninstall() under
threads, deepcopy in every install state, other libraries' patches, and the
amended source after ``linecache.clearcache()``.

None of these tests measures time; ``python -m torch_ortho_patch bench`` does.
"""

import ast
import copy
import inspect
import linecache
import marshal
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.utils.parametrizations as P
from torch.nn.modules.rnn import RNNBase
from torch.nn.utils import parametrize
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize as parametrize_test,
    run_tests,
    TestCase,
)

import torch_ortho_patch as tp
from _block_checks import Counting
from torch_ortho_patch import _cache, _install, _rnn, _stack


REPO = Path(__file__).absolute().parent.parent
PARAMETRIZATIONS = _stack.PARAMETRIZATIONS


def python(code, env):
    full = dict(os.environ)
    full.update(PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore", **env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=full, capture_output=True, text=True
    )


def with_canary(text):
    # The installed parametrizations.py with a line added to orthogonal's
    # docstring, as a new torch release might have it.
    node = next(
        n for n in ast.parse(text).body if getattr(n, "name", None) == "orthogonal"
    )
    doc = node.body[0]
    lines = text.splitlines(keepends=True)
    lines.insert(doc.lineno, "    CANARY of a changed upstream file.\n\n")
    return "".join(lines)


class CacheTestCase(TestCase):
    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name) / "cache"
        patcher = mock.patch.dict(os.environ, {_cache.ENV: str(self.dir)})
        patcher.start()
        self.addCleanup(patcher.stop)

    def entries(self, directory=None):
        directory = self.dir if directory is None else directory
        return sorted(p.name for p in directory.iterdir()) if directory.exists() else []

    def namespace(self):
        return _stack.runtime_namespace(PARAMETRIZATIONS, "cached_runtime")

    def builds(self):
        # Counts the builds of the namespace; returns the list of calls.
        calls = []
        build = _stack._build_namespace

        def counted(*args):
            calls.append(args)
            return build(*args)

        patcher = mock.patch.object(_stack, "_build_namespace", counted)
        patcher.start()
        self.addCleanup(patcher.stop)
        return calls


class TestRuntimeCache(CacheTestCase):
    # See Note [The runtime cache] in torch_ortho_patch/_cache.py.
    def test_built_once_then_read(self):
        calls = self.builds()
        first = self.namespace()
        self.assertEqual(len(calls), 1)
        (name,) = self.entries()
        self.assertTrue(name.startswith("torch.nn.utils.parametrizations.namespace."))
        self.assertTrue(name.endswith(f".{sys.implementation.cache_tag}.amended"))
        second = self.namespace()
        self.assertEqual(len(calls), 1)
        # What is read is what was built.
        self.assertEqual(
            inspect.signature(second["orthogonal"]), inspect.signature(first["orthogonal"])
        )
        self.assertEqual(second["orthogonal"].__doc__, first["orthogonal"].__doc__)
        self.assertIn("blocks", inspect.signature(second["orthogonal"]).parameters)

    def test_changed_upstream_file_invalidates(self):
        calls = self.builds()
        self.assertNotIn("CANARY", self.namespace()["orthogonal"].__doc__)
        installed = _stack._installed_text

        def changed(path):
            text = installed(path)
            return with_canary(text) if path == PARAMETRIZATIONS else text

        with mock.patch.object(_stack, "_installed_text", changed):
            ns = self.namespace()
        self.assertEqual(len(calls), 2)
        self.assertIn("CANARY", ns["orthogonal"].__doc__)
        # One slot per file: the new entry replaced the old one.
        self.assertEqual(len(self.entries()), 1)
        # And back: the entry of the changed file is not used for the real one.
        self.assertNotIn("CANARY", self.namespace()["orthogonal"].__doc__)
        self.assertEqual(len(calls), 3)

    def test_changed_package_or_python_invalidates(self):
        calls = self.builds()
        self.namespace()
        with mock.patch.object(_cache, "package_digest", return_value=b"another source"):
            self.namespace()
        self.assertEqual(len(calls), 2)
        with mock.patch.object(_cache, "python_key", return_value=["another python"]):
            self.namespace()
        self.assertEqual(len(calls), 3)

    def test_package_digest_covers_every_source_file(self):
        files = {p.relative_to(_cache._PACKAGE).as_posix() for p in _cache._PACKAGE.rglob("*.py")}
        self.assertIn("_patches/blocks.py", files)
        self.assertIn("__init__.py", files)  # __version__
        self.assertIn("_edits.py", files)

    def test_corrupt_entry_is_rebuilt(self):
        calls = self.builds()
        self.namespace()
        (name,) = self.entries()
        for garbage in (b"", b"\x00garbage", marshal.dumps(("another format", "k", 1))):
            (self.dir / name).write_bytes(garbage)
            ns = self.namespace()
            self.assertIn("blocks", inspect.signature(ns["orthogonal"]).parameters)
        self.assertEqual(len(calls), 4)
        # The last build left a whole entry again.
        self.namespace()
        self.assertEqual(len(calls), 4)

    def test_write_is_atomic(self):
        # The entry appears by a rename of a whole file; a failed write leaves
        # neither a partial entry nor a temporary file behind.
        with mock.patch.object(_cache.os, "replace", side_effect=OSError("full")):
            ns = self.namespace()
        self.assertIn("blocks", inspect.signature(ns["orthogonal"]).parameters)
        self.assertEqual(self.entries(), [])
        replaced = []
        replace = os.replace

        def spy(src, dst):
            # The temporary file is complete when it is renamed.
            replaced.append(marshal.loads(Path(src).read_bytes())[0])
            replace(src, dst)

        with mock.patch.object(_cache.os, "replace", spy):
            self.namespace()
        self.assertEqual(replaced, [_cache._FORMAT])
        self.assertEqual(len(self.entries()), 1)

    def test_processes_that_build_at_once(self):
        # Four processes import for the first time together: all of them get
        # the amended orthogonal, and one whole entry is left.
        code = (
            "import inspect, torch_ortho_patch as tp\n"
            "print('blocks' in inspect.signature(tp.orthogonal).parameters)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO), _cache.ENV: str(self.dir)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            for _ in range(4)
        ]
        outs = [p.communicate() for p in procs]
        self.assertEqual([p.returncode for p in procs], [0] * 4, msg=outs)
        self.assertEqual([o for o, _ in outs], ["True\n"] * 4)
        entries = self.entries()
        # No temporary file is left, and parametrizations.py has one entry.
        self.assertEqual([e for e in entries if not e.endswith(".amended")], [])
        ours = [e for e in entries if e.startswith("torch.nn.utils.parametrizations.")]
        self.assertEqual(len(ours), 1, msg=entries)
        calls = self.builds()
        self.namespace()
        self.assertEqual(calls, [])

    def test_unwritable_directory_falls_back(self):
        # A directory that cannot be made (as in a read-only site-packages; this
        # works for root too) is skipped for the next one, silently; with no
        # directory left, nothing is cached and the runtime is still right.
        blocker = Path(self.dir.parent) / "a file"
        blocker.write_text("")
        user = Path(self.dir.parent) / "user"
        calls = self.builds()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with mock.patch.object(_cache, "directories", return_value=[blocker / "sub", user]):
                self.namespace()
                self.namespace()
            self.assertEqual(len(calls), 1)
            self.assertEqual(len(self.entries(user)), 1)
            with mock.patch.object(_cache, "directories", return_value=[blocker / "sub"]):
                ns = self.namespace()
                self.namespace()
        self.assertEqual(len(calls), 3)
        self.assertIn("blocks", inspect.signature(ns["orthogonal"]).parameters)

    def test_directories(self):
        with mock.patch.dict(os.environ, {_cache.ENV: ""}):
            self.assertEqual(_cache.directories(), [])
        env = {k: v for k, v in os.environ.items() if k != _cache.ENV}
        env["XDG_CACHE_HOME"] = "/somewhere"
        with mock.patch.dict(os.environ, env, clear=True):
            with mock.patch.object(sys, "dont_write_bytecode", False):
                dirs = _cache.directories()
            self.assertEqual(len(dirs), 2)
            self.assertEqual(dirs[0], Path(_cache.__file__).parent / "__pycache__")
            self.assertEqual(dirs[1], Path("/somewhere/torch_ortho_patch/runtime"))
            with mock.patch.object(sys, "dont_write_bytecode", True):
                self.assertEqual(_cache.directories(), [dirs[1]])

    def test_no_cache_builds_every_time(self):
        calls = self.builds()
        with mock.patch.dict(os.environ, {_cache.ENV: ""}):
            self.namespace()
            self.namespace()
        self.assertEqual(len(calls), 2)
        self.assertEqual(self.entries(), [])

    def test_warm_import_and_install_build_nothing(self):
        # With the cache filled, neither the patches nor the edits are imported:
        # nothing is parsed or edited.
        env = {_cache.ENV: str(self.dir)}
        first = python("import torch_ortho_patch as tp; tp.install()", env)
        self.assertEqual(first.returncode, 0, msg=first.stderr)
        entries = self.entries()
        for prefix in ("torch.nn.utils.parametrizations.", "torch.nn.modules.rnn."):
            self.assertEqual(len([e for e in entries if e.startswith(prefix)]), 1, msg=entries)
        probe = (
            "import sys, torch_ortho_patch as tp\n"
            "from torch.nn.modules.rnn import RNNBase\n"
            "tp.install()\n"
            "assert RNNBase._update_flat_weights.__module__ == 'torch_ortho_patch._rnn'\n"
            "tp.uninstall()\n"
            "print(sorted(m for m in sys.modules if m.startswith('torch_ortho_patch.')))\n"
        )
        second = python(probe, env)
        self.assertEqual(second.returncode, 0, msg=second.stderr)
        imported = ast.literal_eval(second.stdout)
        self.assertIn("torch_ortho_patch._cache", imported)
        # The package of the stack, for its list of patches, but no patch.
        building = [m for m in imported if m.startswith("torch_ortho_patch._patches.")]
        self.assertEqual(building, [])
        self.assertNotIn("torch_ortho_patch._edits", imported)


class TestSourceAfterClearcache(TestCase):
    # See Note [Serving the amended source] in torch_ortho_patch/_stack.py.
    def setUp(self):
        super().setUp()
        tp.uninstall()
        self.addCleanup(tp.uninstall)

    def test_inspect(self):
        methods = _rnn.methods()
        functions = [tp.orthogonal, tp.cayley_map, *methods.values()]
        before = [inspect.getsource(fn) for fn in functions]
        linecache.clearcache()
        after = [inspect.getsource(fn) for fn in functions]
        self.assertEqual(after, before)
        self.assertIn("blocks", after[0])
        self.assertIn(
            "def _init_flat_weights(self, flat_weights: list | None = None)",
            inspect.getsource(methods["_init_flat_weights"]),
        )
        # Through RNNBase while installed, as torch.jit.script reads it.
        tp.install()
        linecache.clearcache()
        self.assertEqual(
            inspect.getsource(RNNBase._init_flat_weights),
            inspect.getsource(methods["_init_flat_weights"]),
        )

    def test_tracebacks(self):
        def failure():
            try:
                tp.orthogonal(nn.Linear(3, 3), "weight", orthogonal_map="nope")
            except ValueError as e:
                return e
            raise AssertionError("Expected a ValueError")

        e = failure()
        before = traceback.format_exception(e)
        linecache.clearcache()
        after = traceback.format_exception(failure())
        self.assertEqual(after, before)
        amended = [line for line in after if "amended by" in line]
        self.assertTrue(amended, msg=after)
        # Each frame of amended code shows its line of the amended text.
        for entry in amended:
            self.assertEqual(len(entry.strip().splitlines()), 2, msg=entry)

    def test_module_files_are_their_own(self):
        # The loader that serves the amended text leaves the modules' own files
        # alone.
        from torch_ortho_patch import parametrizations as ours

        linecache.clearcache()
        self.assertIn("runtime_namespace", inspect.getsource(ours))
        self.assertIn("def amend_rnn_class", inspect.getsource(_rnn))
        # importlib's loader is the real one; __loader__ serves the amended text.
        self.assertIn("runtime_namespace", ours.__spec__.loader.get_source(ours.__name__))
        self.assertIn("def orthogonal(", ours.__loader__.get_source(ours.__name__))


def rnn_with(kind, how):
    torch.manual_seed(0)
    cls, blocks = {"GRU": (nn.GRU, 3), "LSTM": (nn.LSTM, 4)}[kind]
    rnn = cls(4, 4)
    if how == "blocks":
        return P.orthogonal(rnn, "weight_hh_l0", blocks=blocks)
    return P.weight_norm(rnn, "weight_hh_l0")


class TestDeepcopy(TestCase):
    # See Note [Parametrized RNN classes keep the amended methods] in
    # torch_ortho_patch/_rnn.py.
    def setUp(self):
        super().setUp()
        tp.uninstall()
        self.addCleanup(tp.uninstall)

    def assertCopies(self, rnn):
        x = torch.randn(3, 2, 4)
        for _ in range(2):  # before a forward, then after one
            replica = copy.deepcopy(rnn)
            self.assertEqual(replica(x)[0], rnn(x)[0], atol=0, rtol=0)
            original = next(iter(rnn.parametrizations.weight_hh_l0.parameters()))
            mine = next(iter(replica.parametrizations.weight_hh_l0.parameters()))
            self.assertIsNot(mine, original)
            rnn(x)[0].sum().backward()

    @parametrize_test("kind", ["GRU", "LSTM"])
    @parametrize_test("how", ["blocks", "weight_norm"])
    def test_made_installed(self, kind, how):
        with tp.installed():
            rnn = rnn_with(kind, how)
            self.assertCopies(rnn)
        self.assertCopies(rnn)
        with tp.installed():
            self.assertCopies(rnn)
        self.assertCopies(rnn)

    @parametrize_test("kind", ["GRU", "LSTM"])
    def test_made_uninstalled(self, kind):
        torch.manual_seed(0)
        cls, blocks = {"GRU": (nn.GRU, 3), "LSTM": (nn.LSTM, 4)}[kind]
        rnn = tp.orthogonal(cls(4, 4), "weight_hh_l0", blocks=blocks)
        self.assertCopies(rnn)
        with tp.installed():
            self.assertCopies(rnn)
        self.assertCopies(rnn)

    def test_weight_norm_made_uninstalled_before_a_forward(self):
        # torch's own parametrized class, with torch's own deepcopy.
        rnn = rnn_with("GRU", "weight_norm")
        with tp.installed():
            replica = copy.deepcopy(rnn)
        x = torch.randn(3, 2, 4)
        self.assertEqual(replica(x)[0], rnn(x)[0], atol=0, rtol=0)


class TestReadOnceAfterUninstall(TestCase):
    def setUp(self):
        super().setUp()
        tp.uninstall()
        self.addCleanup(tp.uninstall)

    def calls_per_forward(self, rnn, counter):
        x = torch.randn(3, 2, 4)
        rnn(x)
        counter.calls = 0
        rnn(x)
        return counter.calls

    def test_parametrized_while_installed(self):
        with tp.installed():
            counted = nn.GRU(4, 4)
            counter = Counting()
            parametrize.register_parametrization(counted, "weight_hh_l0", counter)
            blocks = P.orthogonal(nn.LSTM(4, 4), "weight_hh_l0", blocks=4)
            blocks_counter = Counting()
            parametrize.register_parametrization(blocks, "weight_hh_l0", blocks_counter)
        self.assertEqual(self.calls_per_forward(counted, counter), 1)
        self.assertEqual(self.calls_per_forward(blocks, blocks_counter), 1)
        # torch's methods are back on RNNBase itself.
        self.assertEqual(RNNBase._update_flat_weights.__module__, "torch.nn.modules.rnn")

    def test_parametrized_after_uninstall_is_torchs(self):
        with tp.installed():
            rnn = nn.GRU(4, 4)
        counter = Counting()
        parametrize.register_parametrization(rnn, "weight_hh_l0", counter)
        self.assertEqual(self.calls_per_forward(rnn, counter), 4)

    def test_user_override_is_kept(self):
        class MyGRU(nn.GRU):
            def _update_flat_weights(self):
                self.mine = True
                return super()._update_flat_weights()

        with tp.installed():
            rnn = P.orthogonal(MyGRU(4, 4), "weight_hh_l0", blocks=3)
        rnn(torch.randn(2, 1, 4))
        self.assertTrue(rnn.mine)
        self.assertNotIn("_update_flat_weights", vars(type(rnn)))


class TestThreads(TestCase):
    # See Note [Swapping methods under running forwards] in
    # torch_ortho_patch/_install.py.
    def setUp(self):
        super().setUp()
        tp.uninstall()
        self.addCleanup(tp.uninstall)
        interval = sys.getswitchinterval()
        self.addCleanup(sys.setswitchinterval, interval)

    def test_forwards_against_install_cycles(self):
        torch.manual_seed(0)
        x = torch.randn(5, 2, 4)
        modules = [
            nn.GRU(4, 4),
            nn.LSTM(4, 4, num_layers=2),
            # Classes that take their methods from RNNBase, which is swapped.
            P.weight_norm(nn.GRU(4, 4), "weight_hh_l0"),
            P.weight_norm(nn.LSTM(4, 4), "weight_ih_l0"),
            # One whose class has the amended methods of its own.
            tp.orthogonal(nn.LSTM(4, 4), "weight_hh_l0", blocks=4),
        ]
        with torch.no_grad():
            expected = [m(x)[0] for m in modules]
        done = threading.Event()
        errors, wrong, forwards = [], [], [0]

        def forwards_of(i):
            try:
                while not done.is_set():
                    for m, want in zip(modules[i % 2 :], expected[i % 2 :]):
                        with torch.no_grad():
                            got = m(x)[0]
                        if not torch.equal(got, want):
                            wrong.append(type(m).__name__)
                        forwards[0] += 1
            except BaseException as e:  # noqa: B036
                errors.append(e)

        # Switch threads often, so that forwards are caught inside the methods.
        sys.setswitchinterval(1e-5)
        threads = [threading.Thread(target=forwards_of, args=(i,)) for i in range(4)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for t in threads:
                t.start()
            try:
                for _ in range(200):
                    tp.install()
                    # Let the forwards run, and be caught inside the methods.
                    time.sleep(1e-3)
                    tp.uninstall()
                    time.sleep(1e-3)
            finally:
                done.set()
                for t in threads:
                    t.join()
        self.assertEqual([f"{type(e).__name__}: {e}" for e in errors], [])
        self.assertEqual(wrong, [])
        self.assertGreater(forwards[0], 0)
        self.assertEqual([str(w.message) for w in caught], [])
        self.assertEqual(RNNBase._update_flat_weights.__module__, "torch.nn.modules.rnn")

    def test_callees_installed_first(self):
        order = [name for target, name, new in _install._plan() if target is RNNBase]
        self.assertLess(order.index("_weights_have_changed"), order.index("_update_flat_weights"))
        self.assertLess(order.index("_init_flat_weights"), order.index("_update_flat_weights"))


class TestForeignPatches(TestCase):
    def setUp(self):
        super().setUp()
        tp.uninstall()
        self.addCleanup(tp.uninstall)

    def test_install_warns_and_uninstall_puts_it_back(self):
        torch_own = vars(RNNBase)["_update_flat_weights"]

        def logged(self):
            return torch_own(self)

        RNNBase._update_flat_weights = logged
        self.addCleanup(setattr, RNNBase, "_update_flat_weights", torch_own)
        with self.assertWarns(UserWarning) as cm:
            tp.install()
        self.assertIs(vars(RNNBase)["_update_flat_weights"], _rnn.methods()["_update_flat_weights"])
        self.assertExpectedInline(
            str(cm.warning).replace(repr(logged), "<logged>"),
            """torch.nn.modules.rnn.RNNBase._update_flat_weights is not torch's own: it is <logged>, which another library put there. torch_ortho_patch.install() replaces it while installed, so that change has no effect until uninstall(), which puts it back. Apply the other library's patch after torch_ortho_patch.install() to keep both in effect.""",  # noqa: B950
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tp.uninstall()
        self.assertIs(vars(RNNBase)["_update_flat_weights"], logged)

    def test_torchs_own_do_not_warn(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tp.install()
            tp.uninstall()
            tp.install()


instantiate_parametrized_tests(TestDeepcopy)

if __name__ == "__main__":
    run_tests()
