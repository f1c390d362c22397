# Owner(s): ["module: nn"]
import contextlib
import inspect
import io
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from unittest import mock

import torch
import torch.nn.utils.parametrizations as P
from torch.testing._internal.common_utils import run_tests, TestCase

import torch_ortho_patch
from torch_ortho_patch import _startup
from torch_ortho_patch.__main__ import main
from torch_ortho_patch._upstream import build_diff


REPO = Path(__file__).absolute().parent.parent
AUTHOR = "A Tester <tester@example.org>"

# A user script that does not know about torch_ortho_patch.
SCRIPT = """\
import sys

import torch
import torch.nn as nn
import torch.nn.utils.parametrizations as P

gru = P.orthogonal(nn.GRU(4, 4), "weight_hh_l0", blocks=3)
W = gru.weight_hh_l0.detach().unflatten(0, (3, 4))
error = (W.mT @ W - torch.eye(4)).abs().max().item()
lstm = nn.LSTM(4, 4)
nn.init.orthogonal_(lstm.weight_hh_l0, blocks=4)
W = lstm.weight_hh_l0.detach().unflatten(0, (4, 4))
init_error = (W.mT @ W - torch.eye(4)).abs().max().item()
print("name", __name__)
print("argv", sys.argv[1:])
print("path0", sys.path[0])
print("ok", error < 1e-4)
print("init_ok", init_error < 1e-4)
if len(sys.argv) > 1 and sys.argv[1].isdigit():
    sys.exit(int(sys.argv[1]))
"""


# A child that reports whether it sees our orthogonal: exit status 0 if
# torch.nn.utils.parametrizations.orthogonal takes `blocks`, 3 if not.
PROBE = """\
import inspect, sys
import torch.nn.utils.parametrizations as P
sys.exit(0 if "blocks" in inspect.signature(P.orthogonal).parameters else 3)
"""

# A user script that starts children the ways users do. See Note [Reaching
# child processes].
CHILDREN = f"""\
import multiprocessing, os, subprocess, sys

PROBE = {PROBE!r}


def probe():
    exec(PROBE)


def child(code, **kwargs):
    return subprocess.run([sys.executable, "-c", code], **kwargs).returncode


if __name__ == "__main__":
    process = multiprocessing.get_context("spawn").Process(target=probe)
    process.start()
    process.join()
    print("spawn", process.exitcode)
    print("subprocess", child(PROBE))
    # torch_ortho_patch imported before torch: installed once both are complete.
    print("ours first", child("import torch_ortho_patch as t; "
                              "raise SystemExit(0 if t.is_installed() else 3)"))
    # A child that does not use torch does not import it.
    no_torch = "import sys; raise SystemExit(3 * ('torch' in sys.modules))"
    print("no torch", child(no_torch))
    grandchild = (
        "import subprocess, sys\\n"
        "code = %r\\n"
        "raise SystemExit(subprocess.run([sys.executable, '-c', code]).returncode)"
    )
    print("grandchild", child(grandchild % PROBE))
    env = {{k: v for k, v in os.environ.items() if k != "TORCH_ORTHO_PATCH_RUN"}}
    print("without the variable", child(PROBE, env=env))
    print("variable", os.environ["TORCH_ORTHO_PATCH_RUN"])
"""


def python(*args, cwd=REPO, env=None):
    env = dict(os.environ if env is None else env)
    env.update(PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def run_in_process(*argv, cwd=None):
    r"""Return (status, stderr) of main(argv) run in this process, in ``cwd``."""
    stderr = io.StringIO()
    old_cwd = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(stderr):
            code = main(list(argv))
    except SystemExit as e:
        code = e.code
    finally:
        os.chdir(old_cwd)
    return code, stderr.getvalue()


def fields(stdout):
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


class TestCLI(TestCase):
    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(os.path.realpath(tmp.name))
        (self.tmp / "user_script.py").write_text(SCRIPT)
        self.addCleanup(torch_ortho_patch.uninstall)

    def test_check_is_the_default(self):
        result = python("-m", "torch_ortho_patch")
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        out = result.stdout
        self.assertIn("patch applies to this torch: yes\n", out)
        self.assertIn("installed: no\n", out)
        rows = (
            "GRU weight_hh_l0",
            "LSTM weight_hh_l0",
            "nn.init.orthogonal_ GRU weight_hh_l0",
            "nn.init.orthogonal_ LSTM weight_hh_l0",
            "householder",
            "cayley",
        )
        for row in rows:
            self.assertRegex(out, rf"\n{row}.* ok\n")
        self.assertNotIn("FAIL", out)
        self.assertNotIn("oneMKL", out)  # LAPACK's own messages are kept out
        self.assertTrue(out.endswith("OK: all of our errors within tolerance\n"))

    def test_run_script(self):
        script = self.tmp / "user_script.py"
        result = python(
            "-m", "torch_ortho_patch", "run", str(script), "3", "--flag", "-m"
        )
        self.assertEqual(result.returncode, 3, msg=result.stderr)
        out = fields(result.stdout)
        self.assertEqual(out["name"], "__main__")
        self.assertEqual(out["argv"], "['3', '--flag', '-m']")
        self.assertEqual(out["path0"], str(self.tmp))
        self.assertEqual(out["ok"], "True")
        self.assertEqual(out["init_ok"], "True")

    def test_run_script_exit_zero(self):
        script = self.tmp / "user_script.py"
        result = python("-m", "torch_ortho_patch", "run", str(script))
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        self.assertEqual(fields(result.stdout)["ok"], "True")

    def test_run_module(self):
        args = ["-m", "torch_ortho_patch", "run", "-m", "user_script", "7", "x"]
        result = python(*args, cwd=self.tmp)
        self.assertEqual(result.returncode, 7, msg=result.stderr)
        out = fields(result.stdout)
        self.assertEqual(out["name"], "__main__")
        self.assertEqual(out["argv"], "['7', 'x']")
        self.assertEqual(out["path0"], str(self.tmp))
        self.assertEqual(out["ok"], "True")

    def test_run_script_that_raises(self):
        # The traceback starts at the script, exactly as python prints it.
        # See Note [Tracebacks under run].
        (self.tmp / "bad.py").write_text(
            "def f():\n    raise KeyError('nope')\n\nf()\n"
        )
        plain = python("bad.py", cwd=self.tmp)
        ours = python("-m", "torch_ortho_patch", "run", "bad.py", cwd=self.tmp)
        self.assertEqual((ours.returncode, ours.stderr), (1, plain.stderr))
        self.assertExpectedInline(
            ours.stderr.replace(str(self.tmp), "<tmp>"),
            """\
Traceback (most recent call last):
  File "<tmp>/bad.py", line 4, in <module>
    f()
  File "<tmp>/bad.py", line 2, in f
    raise KeyError('nope')
KeyError: 'nope'
""",
        )
        # The same in this process, for more kinds of failure: the frames above
        # the caught exception are not in its traceback, so nothing differs.
        scripts = {
            "syntax.py": "x = (\n",
            "imports.py": "import no_such_module_for_the_test\n",
            "chained.py": "try:\n    raise KeyError('first')\nexcept KeyError as e:\n"
            "    raise ValueError('again') from e\n",
        }
        for name, text in scripts.items():
            (self.tmp / name).write_text(text)
            plain = python(name, cwd=self.tmp)
            ours = run_in_process("run", name, cwd=self.tmp)
            self.assertEqual(ours, (1, plain.stderr))
        self.assertExpectedInline(
            plain.stderr.replace(str(self.tmp), "<tmp>"),
            """\
Traceback (most recent call last):
  File "<tmp>/chained.py", line 2, in <module>
    raise KeyError('first')
KeyError: 'first'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "<tmp>/chained.py", line 4, in <module>
    raise ValueError('again') from e
ValueError: again
""",
        )

    def test_run_module_that_raises(self):
        # A module's traceback starts at the module, without runpy's frames.
        (self.tmp / "bad_module.py").write_text("raise KeyError('nope')\n")
        code, stderr = run_in_process("run", "-m", "bad_module", cwd=self.tmp)
        self.assertEqual(code, 1)
        self.assertExpectedInline(
            stderr.replace(str(self.tmp), "<tmp>"),
            """\
Traceback (most recent call last):
  File "<tmp>/bad_module.py", line 1, in <module>
    raise KeyError('nope')
KeyError: 'nope'
""",
        )

    def test_run_uses_the_scripts_excepthook(self):
        (self.tmp / "hook.py").write_text(
            "import sys, traceback\n"
            "def hook(t, e, tb):\n"
            "    print('hook:', t.__name__, traceback.extract_tb(tb)[0].name,\n"
            "          file=sys.stderr)\n"
            "sys.excepthook = hook\n"
            "def f():\n"
            "    raise KeyError('nope')\n"
            "f()\n"
        )
        saved = sys.excepthook
        try:
            code, stderr = run_in_process("run", str(self.tmp / "hook.py"))
        finally:
            sys.excepthook = saved
        self.assertEqual(code, 1)
        self.assertExpectedInline(stderr, """hook: KeyError <module>\n""")

    def test_run_keyboard_interrupt(self):
        (self.tmp / "interrupted.py").write_text("raise KeyboardInterrupt\n")
        code, stderr = run_in_process("run", str(self.tmp / "interrupted.py"))
        self.assertEqual(code, 130)
        self.assertExpectedInline(
            stderr.replace(str(self.tmp), "<tmp>"),
            """\
Traceback (most recent call last):
  File "<tmp>/interrupted.py", line 1, in <module>
    raise KeyboardInterrupt
KeyboardInterrupt
""",
        )

    def test_run_module_errors_are_one_line(self):
        # As `python -m`, with our prefix instead of sys.executable's.
        (self.tmp / "package").mkdir()
        (self.tmp / "package" / "__init__.py").write_text("")
        self.addCleanup(sys.modules.pop, "package", None)
        lines = []
        for module in ("no_such_module_for_the_test", "package", ".relative"):
            plain = python("-m", module, cwd=self.tmp)
            code, stderr = run_in_process("run", "-m", module, cwd=self.tmp)
            self.assertEqual(code, 1, msg=stderr)
            self.assertEqual(code, plain.returncode)
            prefix = "python -m torch_ortho_patch run: "
            self.assertEqual(
                stderr.removeprefix(prefix),
                plain.stderr.removeprefix(f"{sys.executable}: "),
            )
            lines.append(stderr)
        self.assertExpectedInline(
            "".join(lines),
            """\
python -m torch_ortho_patch run: No module named no_such_module_for_the_test
python -m torch_ortho_patch run: No module named package.__main__; 'package' is a package and cannot be directly executed
python -m torch_ortho_patch run: Relative module names not supported
""",  # noqa: B950
        )
        # A package whose __init__ fails shows the failure, as python does.
        sys.modules.pop("package", None)
        (self.tmp / "package" / "__init__.py").write_text("raise ValueError('init')\n")
        code, stderr = run_in_process("run", "-m", "package.sub", cwd=self.tmp)
        self.assertEqual(code, 1)
        self.assertExpectedInline(
            stderr.replace(str(self.tmp), "<tmp>"),
            """\
Traceback (most recent call last):
  File "<tmp>/package/__init__.py", line 1, in <module>
    raise ValueError('init')
ValueError: init
""",
        )

    def test_run_reaches_child_processes(self):
        # See Note [Reaching child processes]
        (self.tmp / "children.py").write_text(CHILDREN)
        result = python("-m", "torch_ortho_patch", "run", "children.py", cwd=self.tmp)
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        self.assertExpectedInline(
            result.stdout,
            """\
spawn 0
subprocess 0
ours first 0
no torch 0
grandchild 0
without the variable 3
variable 1
""",
        )

    def test_startup_hook_needs_the_variable(self):
        # The hook that run puts on PYTHONPATH does nothing without the variable,
        # and the variable does nothing without the hook: importing
        # torch_ortho_patch never patches.
        hook = self.tmp / "hook"
        hook.mkdir()
        shutil.copyfile(_startup.__file__, hook / _startup.FILE_NAME)
        env = {k: v for k, v in os.environ.items() if k != _startup.ENV}
        cases = [
            ([hook, REPO], {}, 3),
            ([REPO], {_startup.ENV: "1"}, 3),
            ([hook, REPO], {_startup.ENV: "1"}, 0),
        ]
        code = "import torch_ortho_patch\n" + PROBE
        for path, variable, status in cases:
            result = subprocess.run(
                [sys.executable, "-c", code],
                env={**env, **variable, "PYTHONPATH": os.pathsep.join(map(str, path))},
                capture_output=True,
                text=True,
            )
            self.assertEqual(result.returncode, status, msg=(path, result.stderr))
        # Imported as part of the package, it installs no hook.
        self.assertFalse(
            any(getattr(f, _startup._MARK, False) for f in sys.meta_path)
        )

    def test_run_chains_to_an_existing_sitecustomize(self):
        site = self.tmp / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text("MARKER = 'theirs'\n")
        (self.tmp / "chain.py").write_text(
            "import subprocess, sys\n"
            f"code = {PROBE!r}.replace('import inspect, sys', "
            "'import inspect, sys, sitecustomize; print(sitecustomize.MARKER); "
            "print(any(\"torch_ortho_patch-run\" in p for p in sys.path))')\n"
            "status = subprocess.run([sys.executable, '-c', code]).returncode\n"
            "raise SystemExit(status)\n"
        )
        env = dict(os.environ)
        result = subprocess.run(
            [sys.executable, "-m", "torch_ortho_patch", "run", "chain.py"],
            cwd=self.tmp,
            env={**env, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])},
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        # Theirs ran; our directory is off the child's sys.path again.
        self.assertEqual(result.stdout, "theirs\nFalse\n")

    def test_run_restores_the_environment(self):
        (self.tmp / "env.py").write_text(
            "import os, sys\n"
            "sys.modules['__probe__'] = (os.environ['TORCH_ORTHO_PATCH_RUN'],\n"
            "    os.environ['PYTHONPATH'].split(os.pathsep))\n"
        )
        before = {k: os.environ.get(k) for k in ("PYTHONPATH", _startup.ENV)}
        try:
            code, stderr = run_in_process("run", str(self.tmp / "env.py"))
            variable, path = sys.modules["__probe__"]
        finally:
            sys.modules.pop("__probe__", None)
        self.assertEqual((code, stderr), (0, ""))
        self.assertEqual(variable, "1")
        hook_dir = Path(path[0])
        self.assertTrue(hook_dir.name.startswith("torch_ortho_patch-run-"))
        rest = before["PYTHONPATH"].split(os.pathsep) if before["PYTHONPATH"] else []
        self.assertEqual(path[1:], rest)
        self.assertEqual(
            {k: os.environ.get(k) for k in ("PYTHONPATH", _startup.ENV)}, before
        )
        self.assertFalse(hook_dir.exists())

    def test_run_in_process(self):
        # run installs for the script only and restores sys.argv and sys.path.
        (self.tmp / "probe.py").write_text(
            "import sys, torch_ortho_patch\n"
            "installed = torch_ortho_patch.is_installed()\n"
            "sys.modules['__probe__'] = (installed, sys.argv[:])\n"
            "sys.exit(sys.argv[1])\n"
        )
        argv, path = sys.argv[:], sys.path[:]
        try:
            with self.assertRaises(SystemExit) as cm:
                main(["run", str(self.tmp / "probe.py"), "bye"])
            self.assertEqual(cm.exception.code, "bye")
            expected = (True, [str(self.tmp / "probe.py"), "bye"])
            self.assertEqual(sys.modules["__probe__"], expected)
        finally:
            sys.modules.pop("__probe__", None)
        self.assertFalse(torch_ortho_patch.is_installed())
        self.assertEqual(sys.argv, argv)
        self.assertEqual(sys.path, path)

    def test_run_errors(self):
        code, stderr = run_in_process("run", str(self.tmp / "missing.py"))
        self.assertEqual(code, 2)
        self.assertExpectedInline(
            stderr.replace(str(self.tmp), "<tmp>"),
            """python -m torch_ortho_patch run: can't open file '<tmp>/missing.py': [Errno 2] No such file or directory\n""",  # noqa: B950
        )
        (self.tmp / "directory").mkdir()
        code, stderr = run_in_process("run", str(self.tmp / "directory"))
        self.assertEqual(code, 1)
        self.assertExpectedInline(
            stderr.replace(str(self.tmp), "<tmp>"),
            """python -m torch_ortho_patch run: can't find '__main__' module in '<tmp>/directory'\n""",  # noqa: B950
        )
        usage = "usage: python -m torch_ortho_patch run [-h] (SCRIPT | -m MODULE | -c CODE) [ARGS ...]\n"  # noqa: B950
        errors = []
        for argv in (["run"], ["run", "--"], ["run", "-m"], ["run", "-m", ""],
                     ["run", "--flag", "x.py"]):
            code, stderr = run_in_process(*argv)
            self.assertEqual(code, 2, msg=argv)
            self.assertTrue(stderr.startswith(usage), msg=stderr)
            errors.append(stderr.removeprefix(usage))
        self.assertExpectedInline(
            "".join(errors),
            """\
python -m torch_ortho_patch run: error: expected one of SCRIPT, -m MODULE or -c CODE
python -m torch_ortho_patch run: error: expected one of SCRIPT, -m MODULE or -c CODE
python -m torch_ortho_patch run: error: argument -m: expected one argument
python -m torch_ortho_patch run: error: argument -m: expected a module name, got ''
python -m torch_ortho_patch run: error: unrecognized arguments: --flag
""",
        )

    def test_run_version_gate(self):
        script = self.tmp / "user_script.py"
        with mock.patch.object(torch, "__version__", "2.3.1"):
            code, stderr = run_in_process("run", str(script))
        self.assertEqual(code, 2)
        self.assertExpectedInline(
            stderr,
            """python -m torch_ortho_patch run: error: torch_ortho_patch.install() does not support this PyTorch: no release older than 2.4 is tested. Expected torch >= 2.4. Got 2.3.1.\n""",  # noqa: B950
        )

    def test_run_after_double_dash(self):
        # `--` ends run's own options: a script whose name starts with "-".
        (self.tmp / "-dash.py").write_text(SCRIPT)
        result = python(
            "-m", "torch_ortho_patch", "run", "--", "-dash.py", "5", "-m", cwd=self.tmp
        )
        self.assertEqual(result.returncode, 5, msg=result.stderr)
        self.assertEqual(fields(result.stdout)["argv"], "['5', '-m']")
        self.assertEqual(fields(result.stdout)["ok"], "True")

    def test_other_commands_reject_bad_arguments(self):
        # Each with the usage of its own command. argparse's own wording changes
        # between Python releases, so only a stable part of it is pinned.
        prog = "python -m torch_ortho_patch"
        for argv, command, message in (
            (["check", "extra"], " check", "unrecognized arguments: extra"),
            (["diff", "a", "b"], " diff", "unrecognized arguments: a b"),
            (["diff", "--torch-src"], " diff", "argument --torch-src: expected"),
            (["nope"], "", "invalid choice: 'nope'"),
        ):
            code, stderr = run_in_process(*argv)
            self.assertEqual(code, 2, msg=argv)
            lines = stderr.splitlines()
            usage, error = lines[0], lines[-1]
            self.assertTrue(usage.startswith(f"usage: {prog}{command} [-h]"), usage)
            self.assertTrue(error.startswith(f"{prog}{command}: error: "), error)
            self.assertIn(message, error)

    def test_help(self):
        for command in ([], ["check"], ["run"], ["diff"]):
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                with self.assertRaises(SystemExit) as cm:
                    main([*command, "--help"])
            self.assertEqual(cm.exception.code, 0)
            self.assertTrue(
                stdout.getvalue().startswith(
                    f"usage: python -m torch_ortho_patch {' '.join(command)}".rstrip()
                )
            )
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), self.assertRaises(SystemExit):
            main(["run", "--help"])
        self.assertExpectedInline(
            stdout.getvalue().splitlines()[0],
            """usage: python -m torch_ortho_patch run [-h] (SCRIPT | -m MODULE | -c CODE) [ARGS ...]""",  # noqa: B950
        )

    def test_diff(self):
        result = python("-m", "torch_ortho_patch", "diff")
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        self.assertEqual(result.stdout, build_diff())
        result = python("-m", "torch_ortho_patch", "diff", "--torch-src", str(self.tmp))
        self.assertEqual(result.returncode, 2)
        self.assertIn("diff: error: Expected a PyTorch source tree", result.stderr)
        # A tree with parametrizations.py but no rnn.py: an error, not a traceback.
        parametrizations = self.tmp / "torch" / "nn" / "utils" / "parametrizations.py"
        parametrizations.parent.mkdir(parents=True)
        shutil.copyfile(inspect.getfile(P), parametrizations)
        code, stderr = run_in_process("diff", "--torch-src", str(self.tmp))
        self.assertEqual(code, 2)
        self.assertExpectedInline(
            stderr.replace(str(self.tmp), "<tmp>"),
            """python -m torch_ortho_patch diff: error: Expected a PyTorch source tree that contains torch/nn/modules/rnn.py. Got '<tmp>'.\n""",  # noqa: B950
        )
        # --stack writes the series and prints the paths of its files.
        series = self.tmp / "series"
        result = python(
            "-m", "torch_ortho_patch", "diff", "--stack", str(series), "--author", AUTHOR
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        written = sorted(series.iterdir())
        self.assertEqual(result.stdout.splitlines(), [str(p) for p in written])
        self.assertTrue(written[0].name.startswith("0001-"))
        self.assertIn("Subject: [PATCH 1/", written[0].read_text())
        self.assertIn(f"From: {AUTHOR}\n", written[0].read_text())

    def test_diff_syntax_error_in_tree(self):
        # An unparsable file of --torch-src is one line that names it and its line.
        for path in ("torch/nn/utils/parametrizations.py", "torch/nn/modules/rnn.py"):
            (self.tmp / path).parent.mkdir(parents=True, exist_ok=True)
        (self.tmp / "torch/nn/utils/parametrizations.py").write_text(
            inspect.getsource(P), encoding="utf-8"
        )
        (self.tmp / "torch/nn/modules/rnn.py").write_text("x = 1\ndef f(:\n", encoding="utf-8")
        code, stderr = run_in_process("diff", "--torch-src", str(self.tmp))
        self.assertEqual(code, 2)
        self.assertEqual(len(stderr.splitlines()), 1, stderr)
        self.assertExpectedInline(
            stderr.replace(str(self.tmp), "<tmp>"),
            """python -m torch_ortho_patch diff: error: Expected a Python file that parses. Got invalid syntax at <tmp>/torch/nn/modules/rnn.py:2.\n""",  # noqa: B950
        )

    def test_diff_stack_directory(self):
        series = self.tmp / "series"
        series.mkdir()
        (series / "0001-old.patch").write_text("stale\n")
        (series / "notes.txt").write_text("mine\n")
        args = ("diff", "--stack", str(series), "--author", AUTHOR)
        # Not empty: refused, and nothing is touched.
        code, stderr = run_in_process(*args)
        self.assertEqual(code, 2)
        self.assertIn("which is not empty (pass --force", stderr)
        self.assertEqual(sorted(p.name for p in series.iterdir()), ["0001-old.patch", "notes.txt"])
        # --force removes the old patches first, and leaves other files alone.
        code, stderr = run_in_process(*args, "--force")
        self.assertEqual(code, 0, stderr)
        names = sorted(p.name for p in series.iterdir())
        self.assertNotIn("0001-old.patch", names)
        self.assertIn("notes.txt", names)
        self.assertTrue(all(n.endswith(".patch") for n in names if n != "notes.txt"))
        # An empty directory is taken as it is; no staging directory is left.
        empty = self.tmp / "empty"
        empty.mkdir()
        code, stderr = run_in_process("diff", "--stack", str(empty), "--author", AUTHOR)
        self.assertEqual(code, 0, stderr)
        self.assertEqual(sorted(p.name for p in empty.iterdir()), sorted(
            n for n in names if n != "notes.txt"
        ))
        self.assertEqual(
            sorted(p.name for p in self.tmp.iterdir()), ["empty", "series", "user_script.py"]
        )

    def test_diff_stack_failure_leaves_nothing(self):
        series = self.tmp / "series"
        with mock.patch("torch_ortho_patch._upstream._format_patch", side_effect=OSError("disk full")):
            code, stderr = run_in_process("diff", "--stack", str(series), "--author", AUTHOR)
        self.assertEqual(code, 2)
        self.assertIn("diff: error: disk full", stderr)
        self.assertEqual([p.name for p in self.tmp.iterdir()], ["user_script.py"])

    def test_diff_author(self):
        series = self.tmp / "series"
        for bad in (
            "Name <a@b>\nSubject: injected",
            "no address",
            "<a@b>",
            "Name <a@b> trailing",
        ):
            code, stderr = run_in_process("diff", "--stack", str(series), "--author", bad)
            self.assertEqual(code, 2, bad)
            self.assertIn("Expected an author as 'Name <user@host>'", stderr)
            self.assertEqual(len(stderr.splitlines()), 1, stderr)
        self.assertFalse(series.exists())
        # Without --author, the user's git identity; without one, an error, never
        # an address made up.
        home = self.tmp / "home"
        home.mkdir()
        env = dict(os.environ, HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / "gitconfig"))
        for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "EMAIL"):
            env.pop(name, None)
        result = python("-m", "torch_ortho_patch", "diff", "--stack", str(series), cwd=home, env=env)
        self.assertEqual(result.returncode, 2)
        self.assertIn("Expected an author: pass --author", result.stderr)
        self.assertFalse(series.exists())
        (home / "gitconfig").write_text("[user]\n\tname = A Person\n\temail = a@example.org\n")
        result = python("-m", "torch_ortho_patch", "diff", "--stack", str(series), cwd=home, env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("From: A Person <a@example.org>\n", sorted(series.iterdir())[0].read_text())
        # --author and --force belong to --stack.
        code, stderr = run_in_process("diff", "--author", AUTHOR)
        self.assertEqual(code, 2)
        self.assertIn("--author and --force need --stack", stderr)

    def test_bench_delegates(self):
        calls = []
        fake = types.ModuleType("torch_ortho_patch._bench")
        fake.main = lambda argv: calls.append(argv) or 3
        with mock.patch.dict(sys.modules, {"torch_ortho_patch._bench": fake}):
            self.assertEqual(main(["bench", "--quick", "--help"]), 3)
        self.assertEqual(calls, [["--quick", "--help"]])


if __name__ == "__main__":
    run_tests()
