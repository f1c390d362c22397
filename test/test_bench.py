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
from pathlib import Path

import torch
from torch.testing._internal.common_utils import run_tests, TestCase

import torch_ortho_patch
from torch_ortho_patch import _bench
from torch_ortho_patch.__main__ import main as cli_main


REPO = Path(__file__).absolute().parent.parent
_VARIANTS = ("unconstrained", "ours_fix", "ours_nofix", "upstream_stacked")


def _load_plot():
    spec = importlib.util.spec_from_file_location(
        "bench_plot", REPO / "benchmarks" / "plot.py"
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
        self.assertIn("R1 = - (target <= 0.33): not measured", out)
        self.assertIn("R2 = - (target <= 2.0): not measured", out)

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
                set(ratios), {"ours_fix", "ours_nofix", "upstream_stacked"}
            )
            self.assertTrue(all(r > 0 for r in ratios.values()))
            # See Note [RNN weights read once per forward]
            self.assertEqual(row["evals_per_forward"]["ours_fix"], 1)
            self.assertGreater(row["evals_per_forward"]["ours_nofix"], 1)
        self.assertEqual([g["status"] for g in run["goals"]], ["not measured"] * 2)

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
        self.assertIn("R2 = - (target <= 2.0): not measured", report)

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
                 "ratio_vs_unconstrained": {"ours_fix": 1.5}},
            ],
        }
        goals = _bench._goals(results)
        self.assertEqual(
            [(g["name"], g["value"], g["status"]) for g in goals],
            [("R1", 0.5, "MISS"), ("R2", 1.5, "PASS")],
        )

    def test_bad_arguments(self):
        with contextlib.redirect_stderr(io.StringIO()) as err:
            with self.assertRaises(SystemExit):
                _bench.main(["--only", "everything"])
        self.assertIn("invalid choice", err.getvalue())
        with self.assertRaisesRegex(ValueError, "Expected threads to be a positive"):
            _bench.run(threads=0)

    def test_plot_and_rst(self):
        plot = _load_plot()
        png = os.path.join(self.tmp.name, "bench.png")
        combined = os.path.join(self.tmp.name, "all.json")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            argv = [self.json_path, self.json_path, "-o", png, "--rst"]
            status = plot.main([*argv, "--combine", combined])
        self.assertEqual(status, 0)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with open(combined) as f:
            self.assertEqual(len(json.load(f)["runs"]), 2)
        text = out.getvalue()
        self.assertIn(".. list-table:: Maps, forward + backward: time ratios", text)
        self.assertIn("   * - matrix_exp\n     - 16\n", text)
        # Every footnote cited is defined, and none is defined without a citation.
        cited = set(re.findall(r" \[#(\w+)\]_", text))
        defined = set(re.findall(r"^\.\. \[#(\w+)\]", text, re.M))
        self.assertEqual(cited, defined)


if __name__ == "__main__":
    run_tests()
