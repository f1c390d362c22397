r"""Print the one summary table of ``benchmarks/device_check.sh``.

Usage::

    python benchmarks/device_table.py DIR

DIR holds what device_check.sh wrote there: ``tests.xml`` (pytest's JUnit XML),
``tests.status`` and ``bench.status`` (exit statuses), ``bench.json`` (from
``bench --json``) and ``env.json`` (torch, Python, device). Any of them may be
missing, for example when a step timed out; the table then says so. Standard
library only, so that it runs wherever the script does.
"""

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


_TIMED_OUT = (124, 137)


def _read(path):
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _ms(result):
    if not isinstance(result, dict):
        return "-" if result is None else str(result)
    return f"{result['median'] * 1e3:.3g} ms"


def _ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def _status_note(status):
    if status is None:
        return "did not run"
    code = int(status)
    if code in _TIMED_OUT:
        return f"timed out (status {code})"
    return "ok" if code == 0 else f"failed (status {code})"


def test_rows(out):
    r"""Rows for the test run, from pytest's JUnit XML."""
    status = _read(out / "tests.status")
    try:
        root = ET.parse(out / "tests.xml").getroot()
    except (FileNotFoundError, ET.ParseError):
        return [("tests", _read(out / "tests.selection") or "-", "-", "-", "-",
                 f"no report: {_status_note(status)}")]
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    seconds = sum(float(s.get("time", 0.0)) for s in suites)
    notes = f"{total - failed - skipped} passed, {failed} failed, {skipped} skipped"
    if status is not None and int(status) in _TIMED_OUT:
        notes += "; stopped at the time limit"
    rows = [("tests", _read(out / "tests.selection") or "-", f"{seconds:.0f} s",
             "-", "-", notes)]
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
            rows.append(("tests", "FAILED", "-", "-", "-", name))
    return rows


def bench_rows(out):
    r"""Rows for the benchmark, from ``bench --json``."""
    status = _read(out / "bench.status")
    data = _load_json(out / "bench.json")
    if data is None:
        return [("bench", "-", "-", "-", "-", f"no results: {_status_note(status)}")]
    (run,) = data["runs"]
    rows = []
    for row in run.get("maps", []):
        times = row["times"]
        notes = []
        if row.get("wrong"):
            notes.append("wrong: " + ", ".join(row["wrong"]))
        rows.append((
            "map",
            f"{row['map']} n={row['n']} {row['mode']}",
            _ms(times.get("ours")),
            # The stacked row's reference is torch's orthogonal on the stacked weight.
            _ms(times.get("upstream", times.get("upstream_stacked"))),
            _ratio(row.get("ratio_ours_upstream")),
            "; ".join(notes),
        ))
    for row in run.get("rnn", []):
        times = row["times"]
        ratios = row.get("ratio_vs_unconstrained", {})
        evals = row.get("evals_per_forward", {})
        # Every variant the bench measured, in its order, against the unconstrained step.
        for variant in [v for v in times if v != "unconstrained"]:
            rows.append((
                "rnn step",
                f"{row['rnn']}({row['hidden']}) {variant}",
                _ms(times.get(variant)),
                _ms(times.get("unconstrained")),
                _ratio(ratios.get(variant)),
                f"evaluations per forward: {evals.get(variant)}",
            ))
    for goal in run.get("goals", []):
        value = "-" if goal["value"] is None else f"{goal['value']:.2f}"
        rows.append(("goal", goal["name"], value, f"<= {goal['target']}", "-",
                     goal["status"]))
    if status is not None and int(status) != 0:
        rows.append(("bench", "-", "-", "-", "-", _status_note(status)))
    return rows


def format_table(out):
    out = Path(out)
    env = _load_json(out / "env.json") or {}
    bench = _load_json(out / "bench.json")
    bench_header = bench["runs"][0]["header"] if bench else {}
    via = bench_header.get("ours_matrix_exp")
    device = bench_header.get("device", env.get("device", "?"))
    header = [
        f"== device_check: {env.get('mode', '?')} on {device}; "
        f"torch {env.get('torch', '?')} (CUDA {env.get('cuda') or '-'}), "
        f"Python {env.get('python', '?')} ==",
    ]
    if via:
        header.append(f"our matrix_exp map under autograd: {via}")
    if bench and bench["runs"][0]["config"].get("quick"):
        header.append("bench --quick: tiny sizes, the times mean nothing")
    header.append(
        "map rows: ours = blocks=3 on (3n, n), reference = torch's orthogonal on "
        "(3, n, n); rnn rows: reference = the unconstrained step"
    )
    rows = [("section", "case", "time", "reference", "ratio", "notes")]
    rows += test_rows(out) + bench_rows(out)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for i, row in enumerate(rows):
        cells = [str(c).ljust(w) for c, w in zip(row, widths)] + [str(row[-1])]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    return "\n".join(header + [""] + lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(format_table(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
