r"""The numbers that the README, the RFC and the docs quote agree with their sources.

The docs build makes its tables from the JSON files in ``docs/_static`` and its
counts from the stack (``docs/_numbers.py``). The README and RFC.md are not
built, so these tests check that what they say is what ``_numbers.py`` makes
of the same sources, and that ``check.json`` is what ``check`` measures today.
"""

import importlib.util
import re
from pathlib import Path

from torch.testing._internal.common_utils import run_tests, TestCase

from torch_ortho_patch import _check


ROOT = Path(__file__).resolve().parent.parent


def _numbers():
    spec = importlib.util.spec_from_file_location("_docs_numbers", ROOT / "docs" / "_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


N = _numbers()


class TestDocsNumbers(TestCase):
    def test_readme_is_generated(self):
        text = N.README.read_text(encoding="utf-8")
        self.assertEqual(
            N.update_readme(text),
            text,
            "README.md is stale: run python docs/_numbers.py --write-readme",
        )

    def test_readme_has_every_region(self):
        text = N.README.read_text(encoding="utf-8")
        found = set(re.findall(r"<!-- numbers:(\w+) -->", text))
        self.assertEqual(found, set(N.readme_values()))

    def test_rfc_counts(self):
        rfc = (ROOT / "RFC.md").read_text(encoding="utf-8")
        c = N.stack_counts()
        title = rfc.splitlines()[0]
        self.assertTrue(title.endswith(f"and {N._word(c['upstream_fixes'])} fixes"), title)
        self.assertIn(f"a stack of {N._word(c['patches'])} small pull requests", rfc)

    def test_fix_counts(self):
        c = N.stack_counts()
        self.assertEqual(c["fixes"], c["upstream_fixes"] + c["runtime_fixes"])
        self.assertGreater(c["upstream_fixes"], 0)

    def test_rfc_skew_expm_figures(self):
        # RFC.md is not built; its figures of the exponential alone are the
        # JSON's that the benchmarks page's Findings are made from.
        rfc = (ROOT / "RFC.md").read_text(encoding="utf-8")
        para = rfc[rfc.index("What sets the floor") : rfc.index("The parametrization around")]
        quoted = re.findall(r"\*\*(\d\.\d\d)\*\* \((\d\.\d\d)-(\d\.\d\d)\)", para)
        rows = N._load("bench_skew_expm.json")["rows"]
        expected = [
            (f"{r['ratio']:.2f}", f"{r['ratio_min']:.2f}", f"{r['ratio_max']:.2f}")
            for r in rows
            if r["name"] == "skew_matrix_exp fwd+bwd"
        ]
        self.assertEqual(quoted, expected)
        self.assertIn(N._load("bench_skew_expm.json")["header"]["date"].split()[1], para)

    def test_bench_findings_are_made_from_the_json(self):
        # The Findings table is generated; its claims hold for the JSON.
        text = N.bench_findings_rst()
        run = N._bench_run(1)
        mx = {m["n"]: m for m in run["maps"] if m["map"] == "matrix_exp" and m["mode"] == "fwd+bwd"}
        self.assertIn(f"{mx[64]['ratio_ours_upstream']:.2f}x (n = 64)", text)
        self.assertNotIn("nan", text)

    def test_check_json_is_what_check_measures(self):
        # The committed report, to the figures the pages show, is today's.
        # The batched cayley row depends on the thread count, so it is left out.
        rows = N.check_rows()
        for row in _check.measure():
            if row.key == "cayley_batched":
                continue
            with self.subTest(row=row.key):
                self.assertEqual(N._err(rows[row.key]["torch"]), N._err(row.torch_error))
                # Ours is round-off: the same order of magnitude.
                self.assertLess(rows[row.key]["ours"], row.tol)
                self.assertLess(row.ours_error, row.tol)


if __name__ == "__main__":
    run_tests()
