# Owner(s): ["module: nn"]
r"""Smoke tests of the benchmark harness. They check what it runs and reports,
never how fast anything is."""

import contextlib
import importlib.util
import io
import json
import math
import os
import re
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch
from torch.testing._internal.common_utils import run_tests, TestCase

import torch_ortho_patch
from torch_ortho_patch import _bench
from torch_ortho_patch.__main__ import main as cli_main


REPO = Path(__file__).absolute().parent.parent
_VARIANTS = ("unconstrained", "ours_installed", "ours_direct", "upstream_stacked")


def _load_plot():
    return _load_script("plot")


def _load_script(name):
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestBench(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # One quick run, through the command line, shared by the tests below.
        cls.tmp = tempfile.TemporaryDirectory()
        cls.json_path = os.path.join(cls.tmp.name, "quick.json")
        cls.threads_before = torch.get_num_threads()
        cls.installed_before = torch_ortho_patch.is_installed()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cls.status = cli_main(["bench", "--quick", "--json", cls.json_path])
        cls.stdout = out.getvalue()
        cls.threads_after = torch.get_num_threads()
        cls.installed_after = torch_ortho_patch.is_installed()
        with open(cls.json_path) as f:
            cls.data = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        super().tearDownClass()

    def test_prints_header_and_quick_warning(self):
        self.assertEqual(self.status, 0)
        out = self.stdout
        self.assertIn(f"torch: {torch.__version__}", out)
        self.assertIn("\nthreads: 1\n", out)
        self.assertRegex(out, r"\ncpu: .+\n")
        self.assertRegex(out, r"\ndevice: cpu .*dtype: float32\n")
        self.assertIn("quick mode: timings are not meaningful", out)

    def test_prints_tables_and_goals(self):
        out = self.stdout
        for map_name in ("matrix_exp", "cayley", "householder", "stacked*"):
            for mode in ("fwd", "fwd+bwd", "infer"):
                pattern = rf"\n{re.escape(map_name)} +16 +{re.escape(mode)} "
                self.assertRegex(out, pattern)
        for rnn in ("GRU(8)", "LSTM(8)"):
            for variant in _VARIANTS:
                self.assertRegex(out, rf"\n{re.escape(rnn)} .* {variant} ")
        # Goals are only judged on the full sizes.
        self.assertIn("R1-256 = - (target <= 0.3): not measured", out)
        self.assertIn("R2-GRU-direct = - (target <= 1.7): not measured", out)

    def test_json(self):
        self.assertEqual(self.data["format"], 1)
        (run,) = self.data["runs"]
        self.assertEqual(run["header"]["threads"], 1)
        self.assertTrue(run["config"]["quick"])
        maps = run["maps"]
        self.assertEqual(len(maps), 4 * 3)  # 3 maps and the stacked row, 3 passes
        for row in maps:
            for name, result in row["times"].items():
                self.assertIsInstance(result, dict, msg=f"{row['map']} {name}")
                self.assertGreater(result["median"], 0.0)
            self.assertTrue(math.isfinite(row["ratio_ours_upstream"]))
            # Our gate blocks are orthogonal, whatever torch does.
            self.assertNotIn("ours", row["wrong"])
            self.assertNotIn("ours_householder", row["wrong"])
        stacked = [row for row in maps if row["map"] == "stacked"]
        for row in stacked:
            # torch's stacked parametrization does not make the gates orthogonal.
            self.assertIn("upstream_stacked", row["wrong"])
        self.assertEqual([row["rnn"] for row in run["rnn"]], ["GRU", "LSTM"])
        for row in run["rnn"]:
            ratios = row["ratio_vs_unconstrained"]
            self.assertEqual(
                set(ratios), {"ours_installed", "ours_direct", "upstream_stacked"}
            )
            self.assertTrue(all(r > 0 for r in ratios.values()))
            # See Note [RNN weights read once per forward]
            # with install() and without it.
            self.assertEqual(row["evals_per_forward"]["ours_installed"], 1)
            self.assertEqual(row["evals_per_forward"]["ours_direct"], 1)
            self.assertGreater(row["evals_per_forward"]["upstream_stacked"], 1)
        self.assertEqual(
            [g["status"] for g in run["goals"]], ["not measured"] * len(_bench.GOALS)
        )

    def test_restores_threads_and_install_state(self):
        self.assertEqual(self.threads_after, self.threads_before)
        self.assertEqual(self.installed_after, self.installed_before)
        with torch_ortho_patch.installed():
            _bench.run(quick=True, only="rnn")
            self.assertTrue(torch_ortho_patch.is_installed())

    def test_only(self):
        results = _bench.run(quick=True, only="maps", sizes=[4])
        self.assertNotIn("rnn", results)
        self.assertEqual({row["n"] for row in results["maps"]}, {4})
        report = _bench.format_report(results)
        self.assertIn("R2-GRU-installed = - (target <= 1.7): not measured", report)

    def test_measure_reports_a_raising_variant(self):
        def fails():
            raise RuntimeError("boom")

        results = _bench._measure(
            [_bench._Variant("ok", lambda: None), _bench._Variant("bad", fails)],
            threads=1,
            min_run_time=0.001,
            rounds=2,
        )
        self.assertEqual(results["bad"], "error: RuntimeError")
        self.assertEqual(results["ok"]["raised"], 0)

    def test_wrong_results_are_flagged(self):
        tol = _bench._orth_tol(4)
        Q = torch.linalg.qr(torch.randn(3, 4, 4)).Q
        self.assertFalse(_bench._is_wrong(_bench._checked(lambda: Q), tol))
        self.assertTrue(_bench._is_wrong(_bench._checked(lambda: 2 * Q), tol))
        nan = torch.full((4, 4), float("nan"))
        self.assertTrue(_bench._is_wrong(_bench._checked(lambda: nan), tol))

        def fails():
            raise RuntimeError("lu_solve")

        self.assertEqual(_bench._checked(fails), "RuntimeError")
        self.assertTrue(_bench._is_wrong("RuntimeError", tol))

    def test_goals(self):
        results = {
            "config": {"quick": False},
            "maps": [
                {"map": "matrix_exp", "n": 256, "mode": "fwd+bwd",
                 "ratio_ours_upstream": 0.5},
            ],
            "rnn": [
                {"rnn": "GRU", "hidden": 256,
                 "ratio_vs_unconstrained": {"ours_installed": 1.5, "ours_direct": 2.1}},
            ],
        }
        goals = {g["name"]: (g["value"], g["status"]) for g in _bench._goals(results)}
        self.assertEqual(goals["R1-256"], (0.5, "MISS"))
        self.assertEqual(goals["R1-64"], (None, "not measured"))
        self.assertEqual(goals["R2-GRU-installed"], (1.5, "PASS"))
        self.assertEqual(goals["R2-GRU-direct"], (2.1, "MISS"))
        self.assertEqual(goals["R2-LSTM-direct"], (None, "not measured"))
        self.assertEqual(goals["S1-import-warm"], (None, "not measured"))
        stats = {"median": 0.01, "min": 0.005, "max": 0.2}
        results["startup"] = {
            state: {m: dict(stats, median=value) for m in ("torch", "import", "install", "uninstall")}
            for state, value in (("warm", 0.01), ("cold", 0.7))
        }
        goals = {g["name"]: (g["value"], g["status"]) for g in _bench._goals(results)}
        # In milliseconds.
        self.assertEqual(goals["S1-import-warm"], (10.0, "PASS"))
        self.assertEqual(goals["S2-import-cold"], (700.0, "MISS"))
        self.assertEqual(goals["S3-install"], (10.0, "PASS"))
        self.assertEqual(goals["S4-uninstall"], (10.0, "PASS"))

    def test_startup(self):
        # Fresh processes, with the runtime cache filled and empty.
        results = _bench.run(quick=True, only="startup")
        self.assertNotIn("maps", results)
        st = results["startup"]
        self.assertEqual(st["processes"], 1)
        for state in ("warm", "cold"):
            for m in ("torch", "import", "install", "uninstall"):
                self.assertGreaterEqual(st[state][m]["median"], 0.0)
        report = _bench.format_report(results)
        self.assertIn("== Start-up: 1 fresh processes per row", report)
        self.assertRegex(report, r"\nwarm +import torch_ortho_patch +[0-9.]+ m?s ")
        self.assertRegex(report, r"\ncold +install\(\) +[0-9.]+ m?s ")
        self.assertIn("S2-import-cold = - (target <= 500): not measured", report)

    def cli_error(self, *argv):
        r"""Return the last stderr line of a bench command line that must fail.

        The benchmarks never start: see Note [Checking bench's arguments].
        """
        with mock.patch.object(_bench, "run") as run:
            with contextlib.redirect_stderr(io.StringIO()) as err:
                with self.assertRaises(SystemExit) as cm:
                    cli_main(["bench", *argv])
        self.assertEqual(cm.exception.code, 2, msg=argv)
        run.assert_not_called()
        lines = err.getvalue().splitlines()
        self.assertTrue(lines[0].startswith("usage: python -m torch_ortho_patch bench"))
        return lines[-1]

    def test_bad_arguments(self):
        self.assertIn("invalid choice", self.cli_error("--only", "everything"))
        cpus = os.cpu_count()
        argvs = [
            ["--sizes", "0"],
            ["--sizes", "16", "-5"],
            ["--sizes", "x"],
            ["--min-run-time", "-1"],
            ["--min-run-time", "0"],
            ["--min-run-time", "nan"],
            ["--rounds", "0"],
            ["--threads", "0"],
            ["--threads", str(cpus + 1)],
            ["--device", "foo"],
            ["--device", "meta"],
            ["--device", "cpu:1"],
        ]
        errors = "\n".join(self.cli_error(*argv) for argv in argvs)
        self.assertExpectedInline(
            errors.replace(f"at most {cpus} ", "at most <cpus> ").replace(
                f"'{cpus + 1}'", "'<cpus + 1>'"
            ),
            """\
python -m torch_ortho_patch bench: error: argument --sizes: expected a positive int, got '0'
python -m torch_ortho_patch bench: error: argument --sizes: expected a positive int, got '-5'
python -m torch_ortho_patch bench: error: argument --sizes: expected a positive int, got 'x'
python -m torch_ortho_patch bench: error: argument --min-run-time: expected a positive, finite number of seconds, got '-1'
python -m torch_ortho_patch bench: error: argument --min-run-time: expected a positive, finite number of seconds, got '0'
python -m torch_ortho_patch bench: error: argument --min-run-time: expected a positive, finite number of seconds, got 'nan'
python -m torch_ortho_patch bench: error: argument --rounds: expected a positive int, got '0'
python -m torch_ortho_patch bench: error: argument --threads: expected a positive int, got '0'
python -m torch_ortho_patch bench: error: argument --threads: expected at most <cpus> (os.cpu_count()), got '<cpus + 1>'
python -m torch_ortho_patch bench: error: argument --device: expected cpu, cuda or cuda:N, got 'foo'
python -m torch_ortho_patch bench: error: argument --device: cannot run on 'meta': the benchmarks run on cpu or cuda only
python -m torch_ortho_patch bench: error: argument --device: cannot run on 'cpu:1': the CPU device has index 0 only""",  # noqa: B950
        )

    def test_cuda_that_is_not_there(self):
        # Why --device cuda cannot run, for each way that CUDA can be missing.
        errors = []
        with mock.patch.object(torch.version, "cuda", None), mock.patch.object(
            torch.version, "hip", None
        ), mock.patch.object(torch, "__version__", "2.13.0+cpu"):
            errors.append(self.cli_error("--device", "cuda"))
        with mock.patch.object(torch.version, "cuda", "12.8"), mock.patch.object(
            torch.cuda, "is_available", lambda: False
        ):
            errors.append(self.cli_error("--device", "cuda"))
        with mock.patch.object(torch.version, "cuda", "12.8"), mock.patch.object(
            torch.cuda, "is_available", lambda: True
        ), mock.patch.object(torch.cuda, "device_count", lambda: 2):
            errors.append(self.cli_error("--device", "cuda:2"))
            # A visible device passes the check.
            self.assertEqual(_bench._device("cuda:1"), torch.device("cuda:1"))
        self.assertExpectedInline(
            "\n".join(errors),
            """\
python -m torch_ortho_patch bench: error: argument --device: cannot run on 'cuda': this PyTorch (2.13.0+cpu) was built without CUDA
python -m torch_ortho_patch bench: error: argument --device: cannot run on 'cuda': torch.cuda.is_available() is False: no CUDA device is visible
python -m torch_ortho_patch bench: error: argument --device: cannot run on 'cuda:2': only 2 CUDA device(s) are visible: cuda:0 to cuda:1""",  # noqa: B950
        )

    def test_json_path_is_checked_first(self):
        missing_dir = os.path.join(self.tmp.name, "missing", "out.json")
        errors = [
            self.cli_error("--json", missing_dir),
            self.cli_error("--json", self.tmp.name),
        ]
        self.assertExpectedInline(
            "\n".join(errors).replace(self.tmp.name, "<tmp>"),
            """\
python -m torch_ortho_patch bench: error: argument --json: can't open '<tmp>/missing/out.json' for writing: [Errno 2] No such file or directory
python -m torch_ortho_patch bench: error: argument --json: can't open '<tmp>' for writing: [Errno 21] Is a directory""",  # noqa: B950
        )
        # The check leaves a writable path as it was: no new file, no truncation.
        new = os.path.join(self.tmp.name, "new.json")
        self.assertIsNone(_bench._cannot_write(new))
        self.assertFalse(os.path.lexists(new))
        self.assertIsNone(_bench._cannot_write(self.json_path))
        with open(self.json_path) as f:
            self.assertEqual(json.load(f), self.data)

    def test_run_rejects_bad_arguments(self):
        cases = [
            {"threads": 0},
            {"threads": 2.0},
            {"threads": os.cpu_count() + 1},
            {"quick": "yes"},
            {"only": "everything"},
            {"min_run_time": -1.0},
            {"min_run_time": float("inf")},
            {"rounds": 0},
            {"sizes": []},
            {"sizes": [16, 0]},
            {"sizes": 16},
            {"device": "foo"},
            {"device": "meta"},
            {"log": "stderr"},
        ]
        messages = []
        for kwargs in cases:
            with self.assertRaises((TypeError, ValueError), msg=kwargs) as cm:
                _bench.run(**kwargs)
            messages.append(f"{type(cm.exception).__name__}: {cm.exception}")
        cpus = os.cpu_count()
        self.assertExpectedInline(
            "\n".join(messages)
            .replace(f"= {cpus}.", "= <cpus>.")
            .replace(f"Got {cpus + 1}.", "Got <cpus + 1>."),
            """\
ValueError: Expected threads to be a positive int. Got 0.
ValueError: Expected threads to be a positive int. Got 2.0.
ValueError: Expected threads to be at most os.cpu_count() = <cpus>. Got <cpus + 1>.
TypeError: Expected quick to be a bool. Got str.
ValueError: Expected only to be None, 'maps', 'rnn' or 'startup'. Got 'everything'.
ValueError: Expected min_run_time to be a positive, finite number of seconds. Got -1.0.
ValueError: Expected min_run_time to be a positive, finite number of seconds. Got inf.
ValueError: Expected rounds to be a positive int. Got 0.
ValueError: Expected sizes to be a non-empty list of positive ints. Got [].
ValueError: Expected sizes to be a non-empty list of positive ints. Got [16, 0].
ValueError: Expected sizes to be a non-empty list of positive ints. Got 16.
ValueError: Expected device to be cpu, cuda or cuda:N. Got 'foo'.
ValueError: Expected a device to benchmark on. Got 'meta': the benchmarks run on cpu or cuda only.
TypeError: Expected log to be callable. Got str.""",  # noqa: B950
        )

    def test_rst_and_combine(self):
        # Tables and --combine need only the standard library.
        plot = _load_plot()
        combined = os.path.join(self.tmp.name, "all.json")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            argv = [self.json_path, self.json_path, "--rst"]
            status = plot.main([*argv, "--combine", combined])
        self.assertEqual(status, 0)
        with open(combined) as f:
            self.assertEqual(len(json.load(f)["runs"]), 2)
        text = out.getvalue()
        self.assertIn(".. list-table:: Maps, forward + backward: time ratios", text)
        self.assertIn("   * - matrix_exp\n     - 16\n", text)
        # Every footnote cited is defined, and none is defined without a citation.
        cited = set(re.findall(r" \[#(\w+)\]_", text))
        defined = set(re.findall(r"^\.\. \[#(\w+)\]", text, re.M))
        self.assertEqual(cited, defined)

    @unittest.skipIf(
        importlib.util.find_spec("matplotlib") is None,
        "matplotlib is not installed (it comes with the docs extra). The plot "
        "reads only the JSON, so the runs that have the docs extra cover it.",
    )
    def test_plot(self):
        plot = _load_plot()
        png = os.path.join(self.tmp.name, "bench.png")
        with contextlib.redirect_stdout(io.StringIO()):
            status = plot.main([self.json_path, self.json_path, "-o", png])
        self.assertEqual(status, 0)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_device_table(self):
        # benchmarks/device_check.sh prints this table from what its steps wrote.
        table = _load_script("device_table")
        out = Path(self.tmp.name) / "device_check"
        out.mkdir()
        self.assertIn("no report: did not run", table.format_table(out))
        self.assertIn("no results: did not run", table.format_table(out))
        (out / "bench.json").write_text(Path(self.json_path).read_text())
        (out / "bench.status").write_text("0\n")
        (out / "tests.status").write_text("1\n")
        (out / "tests.selection").write_text("-k cuda (all test files)\n")
        (out / "env.json").write_text(json.dumps(
            {"mode": "cuda", "device": "cuda (X)", "torch": "2.11.0",
             "cuda": "13.0", "python": "3.12.3"}
        ))
        (out / "tests.xml").write_text(
            '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1" '
            'time="12.5"><testcase classname="test_ops.TestMapsCUDA" name="test_a"/>'
            '<testcase classname="test_ops.TestMapsCUDA" name="test_b">'
            '<failure message="boom"/></testcase></testsuite></testsuites>'
        )
        text = table.format_table(out)
        self.assertIn("torch 2.11.0 (CUDA 13.0), Python 3.12.3", text)
        self.assertIn("bench --quick: tiny sizes, the times mean nothing", text)
        self.assertRegex(text, r"\ntests +-k cuda \(all test files\) +12 s .* "
                         r"2 passed, 1 failed, 1 skipped\n")
        self.assertRegex(text, r"\ntests +FAILED .* TestMapsCUDA\.test_b\n")
        for mode in ("fwd", "fwd+bwd", "infer"):
            self.assertRegex(text, rf"\nmap +matrix_exp n=16 {re.escape(mode)} ")
        (run,) = self.data["runs"]
        for row in run["rnn"]:
            for variant, evals in row["evals_per_forward"].items():
                if variant != "unconstrained":
                    self.assertRegex(
                        text,
                        rf"\nrnn step +{row['rnn']}\({row['hidden']}\) {variant} .* "
                        rf"evaluations per forward: {evals}\n",
                    )
        for goal in run["goals"]:
            self.assertRegex(text, rf"\ngoal +{re.escape(goal['name'])} ")


if __name__ == "__main__":
    run_tests()
