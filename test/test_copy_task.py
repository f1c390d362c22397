# Owner(s): ["module: nn"]
r"""Tests of the copying memory task script and its report. They check the task
and what the script records, never how well or how fast anything trains."""

import importlib.util
import math
import os
import tempfile
import unittest
from pathlib import Path

import torch
from torch import nn
from torch.testing._internal.common_utils import run_tests, TestCase


REPO = Path(__file__).absolute().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


copy_task = _load("copy_task")
plot_copy_task = _load("plot_copy_task")
QUICK_VARIANTS = ("unconstrained", "upstream", "matrix_exp")


def _quick_run():
    return copy_task.run(
        T=3, hidden=4, batch=2, steps=3, lr=1e-3, seeds=[0], cells=("GRU", "LSTM"),
        variants=QUICK_VARIANTS, eval_every=2, eval_batch=4, threads=1, quick=True,
        log=lambda line: None,
    )


class TestCopyTask(TestCase):
    def test_batch_layout(self):
        T, batch = 7, 5
        x, y = copy_task.make_batch(T, batch, torch.Generator().manual_seed(0))
        L = T + 20
        self.assertEqual(x.shape, (L, batch, 10))
        self.assertEqual(y.shape, (L, batch))
        symbols = x.argmax(-1)
        data = symbols[:10]
        self.assertTrue(((data >= 1) & (data <= 8)).all())
        # Blanks, then the delimiter at T + 9, then blanks while the model answers.
        self.assertTrue((symbols[10 : T + 9] == 0).all())
        self.assertTrue((symbols[T + 9] == 9).all())
        self.assertTrue((symbols[T + 10 :] == 0).all())
        self.assertTrue((y[: T + 10] == 0).all())
        self.assertEqual(y[T + 10 :], data)

    def test_baseline_is_the_memoryless_loss(self):
        # Certain blanks until the answer, then uniform over the 8 data symbols.
        T, batch = 13, 64
        _, y = copy_task.make_batch(T, batch, torch.Generator().manual_seed(1))
        logits = torch.full((T + 20, batch, 9), -1e4)
        logits[: T + 10, :, 0] = 0.0
        logits[T + 10 :, :, 1:] = 0.0
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        self.assertEqual(loss.item(), copy_task.baseline(T), atol=1e-6, rtol=1e-6)
        self.assertEqual(copy_task.baseline(T), 10 * math.log(8) / (T + 20))

    def test_quick_run_and_report(self):
        result = _quick_run()
        self.assertEqual(len(result["runs"]), 2 * len(QUICK_VARIANTS))
        for r in result["runs"]:
            self.assertTrue(math.isfinite(r["final_loss"]))
            self.assertEqual(r["curve"]["step"], [2, 3])
            if r["variant"] == "matrix_exp":
                # 4 x 4 blocks in float32; see test_parametrizations for the bound.
                self.assertLess(r["gate_error"], 1e-5)
            if r["variant"] == "upstream":
                # The stack has orthonormal columns, so its gates cannot be orthogonal.
                self.assertGreater(r["gate_error"], 0.1)
        # The table needs only the standard library.
        table = plot_copy_task.rst(result)
        self.assertIn(".. list-table:: GRU, hidden 4: copying task, T = 3", table)
        self.assertIn(".. list-table:: LSTM, hidden 4: copying task, T = 3", table)
        self.assertIn("   * - torch orthogonal, stacked\n", table)

    @unittest.skipIf(
        importlib.util.find_spec("matplotlib") is None,
        "matplotlib is not installed (it comes with the docs extra). The figure "
        "reads only the results, so the runs that have the docs extra cover it.",
    )
    def test_plot(self):
        with tempfile.TemporaryDirectory() as tmp:
            png = os.path.join(tmp, "copy.png")
            plot_copy_task.plot(_quick_run(), png)
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_threads_restored(self):
        before = torch.get_num_threads()
        copy_task.run(
            T=3, hidden=4, batch=2, steps=1, lr=1e-3, seeds=[0], cells=("GRU",),
            variants=("unconstrained",), eval_every=1, eval_batch=2,
            threads=before + 1, quick=True, log=lambda line: None,
        )
        self.assertEqual(torch.get_num_threads(), before)

    def test_bad_threads(self):
        with self.assertRaisesRegex(ValueError, "Expected threads to be a positive"):
            copy_task.run(
                T=3, hidden=4, batch=2, steps=1, lr=1e-3, seeds=[0], cells=("GRU",),
                variants=("unconstrained",), eval_every=1, eval_batch=2, threads=0,
                quick=True,
            )


if __name__ == "__main__":
    run_tests()
