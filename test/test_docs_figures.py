# Owner(s): ["module: docs"]
r"""The docs' figures are legible where the page shows them.

The docs show each figure at the width of their text column. Note [Figure size]
in benchmarks/plot.py says why that means a 7.5-inch figure with no text under
9 points; these tests draw each figure from the JSON the docs ship and check
every piece of text on it, and that the committed PNG has the size the script
writes today (so it was drawn by this version of the script, not an older one).
"""

import importlib.util
import struct
import unittest
from pathlib import Path

from torch.testing._internal.common_utils import run_tests, TestCase


REPO = Path(__file__).absolute().parent.parent
STATIC = REPO / "docs" / "_static"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png_size(path):
    # A PNG starts with its 8-byte signature and then the IHDR chunk: length,
    # type, then width and height as big-endian 32-bit integers.
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"Expected a PNG file. Got {path}.")
    return struct.unpack(">II", head[16:24])


@unittest.skipIf(
    importlib.util.find_spec("matplotlib") is None,
    "matplotlib is not installed (it comes with the docs extra)",
)
class TestDocsFigures(TestCase):
    def _check(self, script, data, png):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.text import Text

        with plt.rc_context({"font.size": script.FONT_SIZE}):
            fig = script.figure(data)
        try:
            fig.canvas.draw()
            self.assertEqual(script.FIGURE_WIDTH, 7.5)
            self.assertGreaterEqual(script.FONT_SIZE, 9)
            self.assertEqual(fig.get_figwidth(), script.FIGURE_WIDTH)
            texts = [
                t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
            ]
            # Titles, tick labels, legends and value labels: far more than a few.
            self.assertGreater(len(texts), 20)
            small = [
                (t.get_text(), t.get_fontsize())
                for t in texts
                if t.get_fontsize() < script.FONT_SIZE
            ]
            self.assertEqual(small, [])
            expected = (
                round(fig.get_figwidth() * script.DPI),
                round(fig.get_figheight() * script.DPI),
            )
        finally:
            plt.close(fig)
        self.assertEqual(_png_size(STATIC / png), expected)

    def test_benchmarks_figure(self):
        plot = _load("plot")
        runs = plot.load_runs([STATIC / "bench_results.json"])
        self._check(plot, runs, "bench.png")

    def test_experiment_figure(self):
        plot_copy_task = _load("plot_copy_task")
        data = plot_copy_task.load(STATIC / "copy_task.json")
        self._check(plot_copy_task, data, "copy_task.png")

    def test_headlines_say_what_was_measured(self):
        plot = _load("plot")
        runs = plot.load_runs([STATIC / "bench_results.json"])
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plot.figure(runs)
        try:
            titles = [ax.get_title() for ax in fig.axes]
        finally:
            plt.close(fig)
        self.assertTrue(titles[0].startswith("The map alone, forward + backward"))
        self.assertTrue(titles[1].startswith("A whole training step"))


if __name__ == "__main__":
    run_tests()
