# Owner(s): ["module: nn"]
r"""The upstream stack, proven on the installed torch.

* The tests that the patches add upstream (``upstream_tests.py`` and
  ``upstream_init_tests.py``) run against this package's runtime, with
  :func:`torch_ortho_patch.install` in effect.
* After each patch of the stack, applied cumulatively to the installed torch's
  files: the amended files compile and import, and the tests of the patches
  landed so far pass against the code built from them.
* ``diff --stack`` writes a series that ``git apply`` takes patch by patch on a
  copy of the installed files, ending where the squashed diff ends, and whose
  text speaks as PyTorch does.
"""

import ast
import io
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.init as I
import torch.nn.utils.parametrizations as P
from torch.nn.modules.rnn import RNNBase
from torch.testing._internal.common_device_type import instantiate_device_type_tests
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize,
    run_tests,
    TestCase,
)

import torch_ortho_patch
import upstream_init_tests as UI
import upstream_tests as U
from torch_ortho_patch import _stack, _upstream


UPSTREAM = _stack.upstream_patches()
FILES = (_stack.PARAMETRIZATIONS, _stack.RNN, _stack.INIT)
UPSTREAM_CLASSES = (
    U.TestNNParametrization,
    U.TestNNParametrizationDevice,
    U.TestNN,
    UI.TestNNInit,
)


def _copy(cls, name, **extra):
    # A class with the methods of cls as its own, which the instantiate_*
    # functions need, plus extra.
    ns = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    ns.update(extra)
    ns["__qualname__"] = name
    ns["__module__"] = __name__
    return type(name, cls.__bases__, ns)


class _Installed:
    # A base class, so that torch 2.4's instantiate_device_type_tests, which
    # builds TestFooCPU from the bases of TestFoo, keeps it: see
    # Note [setUp of device-generic tests] in test_integration.py.
    def setUp(self):
        super().setUp()
        torch_ortho_patch.install()
        self.addCleanup(torch_ortho_patch.uninstall)


def _installed(cls, name):
    # A copy of cls whose tests run with torch_ortho_patch.install() in effect.
    copied = _copy(cls, name)
    return type(name, (_Installed, *copied.__bases__), dict(vars(copied)))


# The tests the stack adds upstream, against this package's runtime.
TestUpstreamTestsPatched = _installed(U.TestNNParametrization, "TestUpstreamTestsPatched")
TestUpstreamTestsPatchedDevice = _installed(
    U.TestNNParametrizationDevice, "TestUpstreamTestsPatchedDevice"
)
TestUpstreamTestsPatchedNN = _installed(U.TestNN, "TestUpstreamTestsPatchedNN")
TestUpstreamInitTestsPatched = _installed(UI.TestNNInit, "TestUpstreamInitTestsPatched")


def _set_changed(target, ns, saved):
    # Set the names of ns whose values differ from what target held.
    for name, value in ns.items():
        if not name.startswith("__") or name == "__all__":
            if saved.get(name) is not value:
                setattr(target, name, value)


def _restore_all(target, saved):
    for name in list(vars(target)):
        if name not in saved:
            delattr(target, name)
    for name, value in saved.items():
        if vars(target).get(name) is not value:
            setattr(target, name, value)


@contextmanager
def built_in(stack):
    r"""Put the code built from ``stack`` into torch, as the amended files would."""
    ns = _stack.runtime_namespace(_stack.PARAMETRIZATIONS, "amended_step", stack=stack)
    ns_init = _stack.runtime_namespace(_stack.INIT, "amended_step_init", stack=stack)
    saved_p = dict(vars(P))
    saved_init = dict(vars(I))
    saved_rnn = dict(vars(RNNBase))
    try:
        _set_changed(P, ns, saved_p)
        _set_changed(I, ns_init, saved_init)
        for name, fn in _stack.rnn_methods(stack).items():
            setattr(RNNBase, name, fn)
        yield
    finally:
        _restore_all(P, saved_p)
        _restore_all(I, saved_init)
        for name in list(vars(RNNBase)):
            if name not in saved_rnn:
                delattr(RNNBase, name)
        for name, value in saved_rnn.items():
            if vars(RNNBase).get(name) is not value:
                setattr(RNNBase, name, value)


# Instantiated out of sight of pytest: test_step runs them on its own.
_STEP_CLASSES: dict = {
    "_StepTests": instantiate_parametrized_tests(_copy(U.TestNNParametrization, "_StepTests")),
    "_StepTestsDevice": _copy(U.TestNNParametrizationDevice, "_StepTestsDevice"),
    "_StepInitTests": _copy(UI.TestNNInit, "_StepInitTests"),
    "_StepTestsNN": instantiate_parametrized_tests(_copy(U.TestNN, "_StepTestsNN")),
}
instantiate_device_type_tests(_STEP_CLASSES["_StepTestsDevice"], _STEP_CLASSES, only_for=("cpu",))


def _suite(test_names):
    # The upstream test methods whose names start with one of test_names, on CPU.
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in _STEP_CLASSES.values():
        for name in loader.getTestCaseNames(cls):
            if any(name == t or name.startswith(t + "_") for t in test_names):
                suite.addTest(cls(name))
    return suite


def _installed_texts():
    root = _stack.installed_root()
    return {path: (root / path).read_text(encoding="utf-8") for path in FILES}


def _git(*args, cwd):
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


class TestStack(TestCase):
    @parametrize("step", range(len(UPSTREAM)), name_fn=lambda i: UPSTREAM[i].name.replace("-", "_"))
    def test_step(self, step):
        stack = UPSTREAM[: step + 1]
        texts = _stack.apply(_installed_texts(), stack)
        for path, text in texts.items():
            if text is None:
                continue
            compile(text, path, "exec")
        # The amended parametrizations.py imports, as a module of torch's package.
        spec_name = "torch.nn.utils._amended_parametrizations_check"
        module = type(sys)(spec_name)
        module.__package__ = "torch.nn.utils"
        code = compile(texts[_stack.PARAMETRIZATIONS], _stack.PARAMETRIZATIONS, "exec")
        new_modules = {
            upstream[:-3].replace("/", "."): ours for upstream, ours in _stack.NEW_FILES.items()
        }
        saved = {name: sys.modules.get(name) for name in new_modules}
        try:
            for upstream, ours in new_modules.items():
                __import__(ours)
                sys.modules[upstream] = sys.modules[ours]
            exec(code, vars(module))
        finally:
            for name, value in saved.items():
                if value is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = value
        self.assertTrue(callable(vars(module)["orthogonal"]))
        # So does the amended init.py, as a module of torch.nn.
        init_module = type(sys)("torch.nn._amended_init_check")
        init_module.__package__ = "torch.nn"
        exec(compile(texts[_stack.INIT], _stack.INIT, "exec"), vars(init_module))
        self.assertTrue(callable(vars(init_module)["orthogonal_"]))
        # The tests of the patches landed so far pass against the built code.
        names = [t for patch in stack for t in patch.tests]
        suite = _suite(names)
        self.assertEqual(suite.countTestCases() > 0, bool(names))
        out = io.StringIO()
        with built_in(stack):
            result = unittest.TextTestRunner(stream=out, verbosity=2).run(suite)
        self.assertTrue(result.wasSuccessful(), out.getvalue())
        self.assertEqual(len(result.skipped), 0, out.getvalue())

    def test_every_test_belongs_to_a_patch(self):
        named = {t for patch in UPSTREAM for t in patch.tests}
        defined = {n for cls in UPSTREAM_CLASSES for n in vars(cls) if n.startswith("test_")}
        methods = set(_upstream._test_methods(Path(U.__file__)))
        init_methods = set(_upstream._test_methods(Path(UI.__file__)))
        # A name says which file it goes to: none is in both.
        self.assertEqual(methods & init_methods, set())
        methods |= init_methods
        self.assertEqual(named, methods)
        self.assertTrue(all(any(d.startswith(n) for n in named) for d in defined))

    def test_runtime_is_the_last_step(self):
        # The runtime is the whole stack: the upstream patches and the runtime-only
        # ones, which come last.
        self.assertEqual([p.name for p in _stack.patches()[: len(UPSTREAM)]], [p.name for p in UPSTREAM])
        self.assertTrue(all(not p.upstream for p in _stack.patches()[len(UPSTREAM) :]))
        from torch_ortho_patch import parametrizations as ours

        for name in ("spectral_norm", "weight_norm", "_OrthMaps", "_is_orthogonal"):
            # What the stack leaves alone is the installed torch's own object.
            self.assertIs(getattr(ours, name), getattr(P, name))
        for name in ("orthogonal", "_Orthogonal", "_make_orthogonal"):
            self.assertIsNot(getattr(ours, name), getattr(P, name))
        from torch_ortho_patch import init as ours_init

        for name in ("xavier_uniform_", "kaiming_normal_", "_calculate_fan_in_and_fan_out"):
            self.assertIs(getattr(ours_init, name), getattr(I, name))
        for name in ("orthogonal_", "orthogonal"):
            self.assertIsNot(getattr(ours_init, name), getattr(I, name))

    def test_runtime_source_is_the_amended_text(self):
        # inspect (and so torch.jit.script and tracebacks) reads the amended lines,
        # not whatever the installed file has at the same line numbers.
        import inspect
        import textwrap

        from torch_ortho_patch import parametrizations as ours

        texts = _stack.apply(_installed_texts(), _stack.patches())

        def amended(path, *qualname):
            nodes = ast.parse(texts[path]).body
            for name in qualname:
                node = next(n for n in nodes if getattr(n, "name", None) == name)
                nodes = getattr(node, "body", [])
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lines = texts[path].splitlines(keepends=True)[first - 1 : node.end_lineno]
            return textwrap.dedent("".join(lines)).rstrip()

        def source(fn):
            return textwrap.dedent(inspect.getsource(fn)).rstrip()

        from torch_ortho_patch import init as ours_init

        self.assertEqual(source(ours_init.orthogonal_), amended(_stack.INIT, "orthogonal_"))
        P = _stack.PARAMETRIZATIONS
        self.assertEqual(source(ours.orthogonal), amended(P, "orthogonal"))
        self.assertEqual(source(ours._Orthogonal.forward), amended(P, "_Orthogonal", "forward"))
        methods = _stack.rnn_methods()
        self.assertNotEqual(methods, {})
        for name, fn in methods.items():
            self.assertEqual(source(fn), amended(_stack.RNN, "RNNBase", name))

    def test_dynamo_treats_amended_rnn_methods_as_rnn_py(self):
        # See Note [Where the amended RNNBase methods say they come from].
        from torch._dynamo import trace_rules
        from torch.nn.modules import rnn

        installed = trace_rules.check_file(rnn.__file__)
        for name, fn in _stack.rnn_methods().items():
            self.assertEqual(trace_rules.check_verbose(fn).skipped, installed.skipped, msg=name)


@unittest.skipIf(shutil.which("git") is None, "git is needed to apply the series")
class TestSeries(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.series = _upstream.write_series(
            Path(cls.tmp.name) / "series", author="A Tester <tester@example.org>"
        )

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        super().tearDownClass()

    def _tree(self):
        root = Path(self.tmp.name) / "tree"
        shutil.rmtree(root, ignore_errors=True)
        for path, text in _installed_texts().items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text, encoding="utf-8")
        _git("init", "-q", cwd=root)
        return root

    def test_series_applies_in_order(self):
        root = self._tree()
        self.assertEqual(len(self.series), len(UPSTREAM))
        for path, patch in zip(self.series, UPSTREAM, strict=True):
            text = path.read_text(encoding="utf-8")
            self.assertIn(f"Subject: [PATCH {self.series.index(path) + 1}/{len(UPSTREAM)}] {patch.subject}\n", text)
            check = _git("apply", "--check", str(path), cwd=root)
            self.assertEqual(check.returncode, 0, check.stderr)
            applied = _git("apply", "--whitespace=error", str(path), cwd=root)
            self.assertEqual(applied.returncode, 0, applied.stderr)
        # The series ends where the squashed change ends.
        for path, (_, new) in _upstream.patched_files().items():
            self.assertEqual((root / path).read_text(encoding="utf-8"), new, path)

    def test_messages(self):
        # Each message ends with its references and a Test Plan that names the
        # file its tests land in and selects them with -k.
        for path, patch in zip(self.series, UPSTREAM, strict=True):
            text = path.read_text(encoding="utf-8")
            message = text.split("\n\n", 1)[1].split("\n---\n", 1)[0]
            for ref in patch.refs:
                self.assertRegex(ref, r"^(Fixes|See) #\d+$")
                self.assertIn(f"\n{ref}\n", message)
            if patch.tests:
                plan = message[message.rindex("\nTest Plan:\n") + 1 :].rstrip("\n")
                selection = " or ".join(patch.tests)
                # RNNBase's tests go where upstream keeps them, beside TestNN's,
                # and orthogonal_'s beside TestNNInit's.
                where = {
                    "rnn-read-once": _upstream.NEW_NN_TEST,
                    "rnn-deepcopy": _upstream.NEW_NN_TEST,
                    "init-blocks": _upstream.NEW_INIT_TEST,
                }.get(patch.name, _upstream.NEW_TEST)
                expected = f'Test Plan:\npython -m pytest {where} -k "{selection}"'
                if patch.test_plan:
                    expected += "\n\n" + patch.test_plan.strip("\n")
                self.assertEqual(plan, expected)
                for test in patch.tests:
                    self.assertIn(f"def {test}(", text)
        blocks = self.series[[p.name for p in UPSTREAM].index("blocks")].read_text()
        self.assertIn("\nFixes #102740\n", blocks)

    @unittest.skipUnless(
        torch.__version__.split("+")[0] == "2.13.0",
        "RFC.md gives the sizes against torch 2.13.0's files",
    )
    def test_rfc_size_table(self):
        # The RFC's table of the stack is the one generated from the series.
        rfc = Path(__file__).parent.parent / "RFC.md"
        table = _upstream.size_table(_upstream.build_series())
        self.assertIn(table, rfc.read_text(encoding="utf-8"))

    def test_squashed_diff_applies(self):
        root = self._tree()
        diff = Path(self.tmp.name) / "squashed.patch"
        diff.write_text(_upstream.build_diff(), encoding="utf-8")
        check = _git("apply", "--check", str(diff), cwd=root)
        self.assertEqual(check.returncode, 0, check.stderr)

    def test_text_speaks_as_core(self):
        # Added lines under torch/ name neither this package nor torch versions,
        # our benchmark files or "upstream".
        bad = re.compile(r"torch_ortho_patch|torch 2\.\d|benchmarks/|upstream", re.I)
        for item in _upstream.build_series():
            for chunk in item.diff.split("diff --git ")[1:]:
                path = chunk.split(" b/", 1)[1].split("\n", 1)[0]
                if not path.startswith("torch/"):
                    continue
                for line in chunk.splitlines():
                    if line.startswith("+") and not line.startswith("+++"):
                        self.assertIsNone(bad.search(line), f"{item.patch.name}: {line}")
            self.assertLessEqual(len(item.patch.subject), 72, item.patch.subject)

    # Upstream comment lines that a patch replaces because the patch makes them
    # false, counted, each patch saying so in its message.
    STALE_COMMENTS = {"householder-sign": 2}

    # Patches whose added lines under torch/ still carry what the next test
    # forbids, with the reason. The test fails once they are clean, so that the
    # entry goes too.
    KNOWN_MEASUREMENTS: dict = {}

    def test_comments_carry_no_measurements(self):
        # Timings, machine sizes and "not measured yet" belong in commit messages
        # and the RFC, not in torch/; issues are cited by their full URL.
        bad = re.compile(
            r"\d\s*(ms|us|µs|s)\b|not (been )?measured|\b\d+ (cores|threads)\b"
            r"|(?<!/)pytorch#\d|(?<![\w/])#\d{4,}"
        )
        found: dict = {}
        for item in _upstream.build_series():
            for chunk in item.diff.split("diff --git ")[1:]:
                path = chunk.split(" b/", 1)[1].split("\n", 1)[0]
                if not path.startswith("torch/"):
                    continue
                for line in chunk.splitlines():
                    if line.startswith("+") and not line.startswith("+++") and bad.search(line):
                        found.setdefault(item.patch.name, []).append(line)
        for name in self.KNOWN_MEASUREMENTS:
            self.assertIn(name, found, f"{name} is clean now: drop it from KNOWN_MEASUREMENTS")
            del found[name]
        self.assertEqual(found, {})

    def test_removed_comment_and_docstring_lines(self):
        # No upstream comment or docstring line goes unless its statement became
        # false; a line that moves (it is added back in the same patch) stays.
        removed = []
        for item in _upstream.build_series():
            minus = [l[1:] for l in item.diff.splitlines() if l.startswith("-") and not l.startswith("---")]
            plus = {l[1:].strip() for l in item.diff.splitlines() if l.startswith("+") and not l.startswith("+++")}
            gone = [l.strip() for l in minus if l.strip().startswith("#") and l.strip() not in plus]
            stale = self.STALE_COMMENTS.get(item.patch.name, 0)
            if stale:
                self.assertEqual(len(gone), stale, item.patch.name)
                self.assertIn("comment", item.patch.body)
                gone = []
            removed += [(item.patch.name, line) for line in gone]
        # Docstring lines: every line of every docstring of the installed file is
        # still a line of a docstring of the amended file.
        def docstring_lines(text):
            out = set()
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                    doc = ast.get_docstring(node, clean=False) or ""
                    out |= {line.strip() for line in doc.splitlines() if line.strip()}
            return out

        for path, (old, new) in _upstream.patched_files().items():
            if old is not None and path.endswith(".py"):
                gone = docstring_lines(old) - docstring_lines(new)
                removed += [(path, line) for line in sorted(gone)]
        self.assertEqual(removed, [])


@unittest.skipIf(shutil.which("ruff") is None and not Path(sys.executable).with_name("ruff").exists(), "ruff is not installed")
class TestLint(TestCase):
    def _ruff(self):
        found = Path(sys.executable).with_name("ruff")
        return str(found) if found.exists() else shutil.which("ruff")

    def test_formatter_keeps_amended_files(self):
        # Where the installed file is laid out as PyTorch's formatter lays it out,
        # the amended one is too.
        for path, (old, new) in _upstream.patched_files().items():
            if not path.endswith(".py"):
                continue
            results = []
            for text in (old, new):
                if text is None:
                    results.append(0)
                    continue
                proc = subprocess.run(
                    [self._ruff(), "format", "--check", "--line-length", "88", "--stdin-filename", path, "-"],
                    input=text, capture_output=True, text=True, check=False,
                )
                results.append(proc.returncode)
            if results[0] == 0:
                self.assertEqual(results[1], 0, f"ruff format would change {path}")

    def test_no_new_lint(self):
        rules = "F,E9,B,PIE,PERF,PLE,UP006,UP007,SIM101"
        for path, (old, new) in _upstream.patched_files().items():
            if not path.endswith(".py"):
                continue
            counts = []
            for text in (old or "", new):
                proc = subprocess.run(
                    [self._ruff(), "check", "--select", rules, "--output-format", "concise", "--stdin-filename", path, "-"],
                    input=text, capture_output=True, text=True, check=False,
                )
                codes = re.findall(r": ([A-Z]+[0-9]+) ", proc.stdout)
                counts.append(sorted(codes))
            new_codes = list(counts[1])
            for code in counts[0]:
                if code in new_codes:
                    new_codes.remove(code)
            self.assertEqual(new_codes, [], f"{path}: new lint {new_codes}")


instantiate_parametrized_tests(TestUpstreamTestsPatched)
instantiate_parametrized_tests(TestUpstreamInitTestsPatched)
instantiate_parametrized_tests(TestUpstreamTestsPatchedNN)
instantiate_parametrized_tests(TestStack)
instantiate_device_type_tests(
    TestUpstreamTestsPatchedDevice, globals(), only_for=("cpu", "cuda")
)

if __name__ == "__main__":
    run_tests()
