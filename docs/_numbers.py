r"""The numbers that the docs and the README quote, made from where they live.

A number measured by a script is read from the JSON file the script wrote
(``docs/_static/*.json``); a count of patches or fixes is read from the stack
itself. Nothing here measures anything.

* ``conf.py`` calls :func:`substitutions` for ``rst_prolog`` (``|n_fixes|`` and
  the like) and :func:`write_includes` for the generated ``.inc`` files that
  the pages include.
* The README is Markdown, which Sphinx does not build, so its numbers sit
  between ``<!-- numbers:NAME -->`` and ``<!-- /numbers -->`` markers and are
  rewritten by ``python docs/_numbers.py --write-readme``;
  ``test/test_docs_numbers.py`` fails when the README is not what this script
  would write.
"""

import argparse
import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
STATIC = DOCS / "_static"
README = ROOT / "README.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def _word(n: int) -> str:
    return _WORDS[n] if n < len(_WORDS) else str(n)


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _load(name: str) -> dict:
    with open(STATIC / name, encoding="utf-8") as f:
        return json.load(f)


# -- the stack ------------------------------------------------------------------


def stack_counts() -> dict[str, int]:
    r"""How many patches the upstream series has, and how many of all fix a fault."""
    from torch_ortho_patch import _stack

    upstream = _stack.upstream_patches()
    runtime = [p for p in _stack.patches() if not p.upstream]
    return {
        "patches": len(upstream),
        "upstream_fixes": sum(p.fix for p in upstream),
        "runtime_fixes": sum(p.fix for p in runtime),
        "fixes": sum(p.fix for p in _stack.patches()),
    }


# -- python -m torch_ortho_patch check --json docs/_static/check.json ----------------


def check_rows() -> dict[str, dict]:
    return {row["key"]: row for row in _load("check.json")["rows"]}


def check_header() -> dict:
    return _load("check.json")["header"]


def _err(value) -> str:
    # The report's own format: a number to two figures, or the exception's name.
    if isinstance(value, str):
        return value
    return f"{value:.1f}" if value >= 0.1 else (f"{value:.1e}" if value else "0.0")


_CHECK_LABELS = {
    "gru": r"GRU ``weight_hh_l0``, :math:`H = 32`: :math:`\max_g \lVert W_g^\top W_g - I \rVert`",
    "lstm": r"LSTM ``weight_hh_l0``, :math:`H = 32`: :math:`\max_g \lVert W_g^\top W_g - I \rVert`",
    "init_gru": r":func:`torch.nn.init.orthogonal_` on GRU ``weight_hh_l0``, :math:`H = 32`: "
    r":math:`\max_g \lVert W_g^\top W_g - I \rVert`",
    "init_lstm": r":func:`torch.nn.init.orthogonal_` on LSTM ``weight_hh_l0``, :math:`H = 32`: "
    r":math:`\max_g \lVert W_g^\top W_g - I \rVert`",
    "householder_adamw": r"householder on a :math:`6 \times 3` weight after one AdamW step: "
    r":math:`\lVert Q^\top Q - I \rVert`",
    "cayley_batched": r"cayley on a :math:`(3, 256, 256)` batch, 2 threads: "
    r":math:`\max \lvert \text{batched} - \text{per matrix} \rvert`",
}


def check_table_rst() -> str:
    r"""The landing page's table of errors, from ``check.json``."""
    h = check_header()
    rows = check_rows()
    out = [
        f".. list-table:: Errors in float32, Frobenius norms, measured with torch {h['torch']},",
        f"   Python {h['python']}, {h['threads']} threads ({h['date']})",
        "   :header-rows: 1",
        "   :widths: 60 20 20",
        "   :class: values",
        "",
        "   * - Case",
        "     - torch",
        "     - ours",
    ]
    for key, label in _CHECK_LABELS.items():
        row = rows[key]
        out += [f"   * - {label}", f"     - {_err(row['torch'])}", f"     - {_err(row['ours'])}"]
    return "\n".join(out) + "\n"


# -- benchmarks (python -m torch_ortho_patch bench --json) ---------------------------


def _bench_run(threads: int) -> dict:
    runs = _load("bench_results.json")["runs"]
    return next(r for r in runs if r["header"]["threads"] == threads)


def rnn_steps(threads: int = 1) -> dict[str, dict]:
    r"""Per RNN, the training-step ratios of the bench run with ``threads`` threads."""
    run = _bench_run(threads)
    return {r["rnn"]: r for r in run["rnn"]}


def rnn_step_rst(threads: int = 1) -> str:
    r"""The installing page's paragraph on what reading a weight once saves."""
    run = _bench_run(threads)
    h = run["header"]
    steps = rnn_steps(threads)
    gru, lstm = steps["GRU"], steps["LSTM"]

    def r(row, key):
        return f"{row['ratio_vs_unconstrained'][key]:.2f}"

    evals = gru["evals_per_forward"]
    return (
        "What a training step costs, with a block-orthogonal ``weight_hh_l0`` "
        f"(``\"matrix_exp\"``; sequence {gru['seq']}, batch {gru['batch']}), as a "
        "multiple of the unconstrained step: "
        f"``GRU({gru['hidden']}, {gru['hidden']})`` took {r(gru, 'upstream_stacked')} "
        f"times with torch's ``orthogonal`` on the stacked weight (evaluated "
        f"{_times(evals['upstream_stacked'])} per forward) and {r(gru, 'ours_installed')} "
        f"times with this package installed (evaluated {_times(evals['ours_installed'])} "
        f"per forward, ``blocks=3``); ``LSTM({lstm['hidden']}, {lstm['hidden']})`` "
        f"took {r(lstm, 'upstream_stacked')} and {r(lstm, 'ours_installed')} times. "
        "Both figures of a pair include everything that differs between the two: "
        "the number of evaluations, ``blocks`` and the map's backward. Measured "
        f"on {h['threads']} thread{'s' if h['threads'] > 1 else ''} of an "
        f"{h['cpu']} CPU with torch {h['torch']} on {h['date']}; :doc:`benchmarks` "
        "has the tables.\n"
    )


def _x(r: float) -> str:
    # A ratio as the Findings quote it: two decimals, or none from 10 on.
    return f"{r:.0f}x" if r >= 10 else f"{r:.2f}x"


def _x1(r: float) -> str:
    # A ratio to one decimal, or none from 10 on (headlines and goals).
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def _map_rows(threads: int, name: str, mode: str = "fwd+bwd") -> dict[int, dict]:
    run = _bench_run(threads)
    return {m["n"]: m for m in run["maps"] if m["map"] == name and m["mode"] == mode}


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _claim(ok: bool, what: str) -> None:
    # Note [Findings that the data must bear out]: the Findings prose makes
    # claims (a goal missed, a loop faster than the batch). When a new run no
    # longer bears one out, the build stops here instead of publishing it.
    if not ok:
        raise ValueError(
            f"Expected the benchmark JSON to bear out the finding that {what}. "
            "Got data that does not: rewrite that finding in docs/_numbers.py."
        )


def bench_findings_rst() -> str:
    r"""The benchmarks page's Findings table, its figures read from the JSON."""
    mx1, mx2 = _map_rows(1, "matrix_exp"), _map_rows(2, "matrix_exp")
    r1 = [mx1[n]["ratio_ours_upstream"] for n in sorted(mx1)]
    r2 = [mx2[n]["ratio_ours_upstream"] for n in sorted(mx2)]
    goals1 = {g["name"]: g for g in _bench_run(1)["goals"]}
    r1_goals = [g for name, g in goals1.items() if name.startswith("R1-")]
    misses = [g["value"] - g["target"] for g in r1_goals]
    _claim(all(g["status"] == "MISS" for g in r1_goals), "every goal R1 is missed")
    skew = _load("bench_skew_expm.json")
    sk = {(row["n"], row["name"]): row["ratio"] for row in skew["rows"]}
    sizes = sorted({n for n, _ in sk})
    fwd = [sk[n, "of which the forward"] for n in sizes]
    eigh = [sk[n, "of which the eigh"] for n in sizes]

    cay2 = _map_rows(2, "cayley")
    exc = cay2[128]
    _claim(exc["ratio_ours_upstream"] > 1, "our cayley is slower at n = 128 on two threads")
    raised = {n: m["gate_error"]["upstream"] for n, m in cay2.items() if "upstream" in m["wrong"]}
    _claim(
        all(isinstance(e, str) for e in raised.values()) and len(raised) == 1,
        "PyTorch's batched cayley raised at exactly one size on two threads",
    )
    ((raised_n, raised_error),) = raised.items()

    st1 = [1 / m["ratio_ours_upstream"] for m in _map_rows(1, "stacked").values()]
    st2 = [1 / m["ratio_ours_upstream"] for m in _map_rows(2, "stacked").values()]

    rnn1, rnn2 = rnn_steps(1), rnn_steps(2)

    def step(rnn: dict, key: str) -> str:
        return _x(rnn["ratio_vs_unconstrained"][key])

    r2_met = {
        rnn: all(goals1[f"R2-{rnn}-{how}"]["status"] == "PASS" for how in ("installed", "direct"))
        for rnn in ("GRU", "LSTM")
    }
    _claim(
        r2_met == {"GRU": False, "LSTM": True},
        "R2 is met for the LSTM on one thread and missed for the GRU",
    )

    hh = _map_rows(1, "householder")[512]
    loop_over_batch = hh["times"]["loop"]["median"] / hh["times"]["upstream"]["median"]
    _claim(loop_over_batch < 1, "three householder parametrizations beat the batch at n = 512")

    goal_list = ", ".join(f"{g['target']:g}x at {g['name'].split('-')[1]}" for g in r1_goals)
    rows = [
        (
            "matrix_exp: the same values, a cheaper backward; the map's forward + "
            f"backward takes {_x(min(r1))} to {_x(max(r1))} PyTorch's",
            "Forward + backward of the map is "
            + _list([f"{_x(r)} (n = {n})" for n, r in zip(sorted(mx1), r1)])
            + " of PyTorch's on one thread, "
            + _list([_x(r) for r in r2])
            + " on two. The value is :func:`torch.matrix_exp` itself in every mode "
            "(see :doc:`maps`), so its forward costs what PyTorch's does; only the "
            "backward changes, to one float64 eigendecomposition and seven products. "
            f"Goals R1 ({goal_list}) are missed by {min(misses):.2f} to {max(misses):.2f}. "
            "The exponential alone (``benchmarks/bench_skew_expm.py``, "
            f"{skew['header']['date']}) takes "
            + _list([_x(sk[n, "skew_matrix_exp fwd+bwd"]) for n in sizes])
            + " of :func:`torch.matrix_exp`'s forward + backward, of which the forward is "
            f"{_x(min(fwd))} to {_x(max(fwd))} and the float64 ``eigh`` "
            f"{_x(min(eigh))} to {_x(max(eigh))}.",
        ),
        (
            "cayley and householder cost what PyTorch's do, with one exception",
            "Mostly within the spread of the rounds. On two threads at n = 128, our "
            f"cayley took {_x(exc['ratio_ours_upstream'])} (rounds "
            f"{_x(min(exc['ratio_ours_upstream_rounds']))} to "
            f"{_x(max(exc['ratio_ours_upstream_rounds']))}) PyTorch's: the batched-LU "
            "workaround solves matrix by matrix from 128 on (see :doc:`maps`), and "
            "PyTorch's batched solve, which has not failed at that size, uses both "
            f"threads better. At n = {raised_n} on two threads PyTorch's batched cayley "
            f"raised ``{raised_error}``.",
        ),
        (
            "Today's path is slow and wrong",
            "PyTorch's ``orthogonal`` on a stacked :math:`(3n, n)` weight takes "
            f"{_x1(min(st1))} to {_x1(max(st1))} our forward + backward on one thread "
            f"(up to {_x1(max(st2))} on two), and no gate is orthogonal.",
        ),
        (
            f"A training step: {_x1(rnn1['GRU']['ratio_vs_unconstrained']['ours_direct'])} "
            f"(GRU) and {_x1(rnn1['LSTM']['ratio_vs_unconstrained']['ours_direct'])} (LSTM) "
            "the unconstrained step",
            f"GRU({rnn1['GRU']['hidden']}) {step(rnn1['GRU'], 'ours_direct')} called directly "
            f"and {step(rnn1['GRU'], 'ours_installed')} with :func:`install` on one thread "
            f"({step(rnn2['GRU'], 'ours_direct')} and {step(rnn2['GRU'], 'ours_installed')} "
            f"on two), LSTM({rnn1['LSTM']['hidden']}) {step(rnn1['LSTM'], 'ours_direct')} and "
            f"{step(rnn1['LSTM'], 'ours_installed')} ({step(rnn2['LSTM'], 'ours_direct')} and "
            f"{step(rnn2['LSTM'], 'ours_installed')}): R2 (at most "
            f"{_x1(goals1['R2-GRU-direct']['target'])} and "
            f"{_x1(goals1['R2-LSTM-direct']['target'])}) is met for the LSTM on one thread and "
            "missed for the GRU, whose map costs about "
            "as much as its unconstrained step. PyTorch's stacked weight: "
            f"{_x1(rnn1['GRU']['ratio_vs_unconstrained']['upstream_stacked'])} and "
            f"{_x1(rnn1['LSTM']['ratio_vs_unconstrained']['upstream_stacked'])}, reading the "
            f"weight {_word(rnn1['GRU']['evals_per_forward']['upstream_stacked'])} times per forward.",
        ),
        (
            "A loop over gates beats the batch for householder",
            "Three :math:`(n, n)` parametrizations run forward + backward in "
            f"{_x(loop_over_batch)} (n = 512, one thread) of the time of one batched "
            ":math:`(3, n, n)`: the batched backward of "
            ":func:`torch.linalg.householder_product` is slow on this CPU. Worth a look "
            "upstream.",
        ),
    ]
    out = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 30 70",
        "",
        "   * - Finding",
        "     - Evidence (1 thread unless stated)",
    ]
    for finding, evidence in rows:
        out += [f"   * - {finding}", f"     - {evidence}"]
    return "\n".join(out) + "\n"


# -- for conf.py ----------------------------------------------------------------------


def substitutions() -> dict[str, str]:
    r"""The ``|name|`` substitutions of every page."""
    c = stack_counts()
    return {
        "n_patches": _word(c["patches"]),
        "n_upstream_fixes": _word(c["upstream_fixes"]),
        "n_runtime_fixes": _word(c["runtime_fixes"]),
        "n_fixes": _word(c["fixes"]),
    }


def rst_prolog() -> str:
    return "".join(f".. |{k}| replace:: {v}\n" for k, v in substitutions().items())


def write_includes(out: Path) -> None:
    r"""Write the generated ``.inc`` files into ``out``, each only if it changed."""
    out.mkdir(exist_ok=True)
    for name, text in (
        ("check_table.inc", check_table_rst()),
        ("rnn_step.inc", rnn_step_rst()),
        ("bench_findings.inc", bench_findings_rst()),
    ):
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


# -- the README ---------------------------------------------------------------------------


def readme_values() -> dict[str, str]:
    r"""The text of each ``<!-- numbers:NAME -->`` region of the README."""
    c = stack_counts()
    rows = check_rows()
    h = check_header()
    return {
        "n_patches": _word(c["patches"]),
        "n_upstream_fixes": _word(c["upstream_fixes"]),
        "check_version": f"torch {h['torch']}",
        "gru": f"{_err(rows['gru']['torch'])} vs {_err(rows['gru']['ours'])}",
        "lstm": f"{_err(rows['lstm']['torch'])} vs {_err(rows['lstm']['ours'])}",
        "init": (
            f"{_err(rows['init_gru']['torch'])} and {_err(rows['init_lstm']['torch'])} vs "
            f"{_err(rows['init_gru']['ours'])} and {_err(rows['init_lstm']['ours'])}"
        ),
    }


_REGION = re.compile(r"<!-- numbers:(\w+) -->(.*?)<!-- /numbers -->", re.S)


def update_readme(text: str) -> str:
    r"""Return ``text`` with every numbers region filled in from :func:`readme_values`."""
    values = readme_values()

    def fill(m):
        if m.group(1) not in values:
            raise KeyError(f"README.md has a numbers region {m.group(1)!r} that _numbers.py lacks")
        return f"<!-- numbers:{m.group(1)} -->{values[m.group(1)]}<!-- /numbers -->"

    return _REGION.sub(fill, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Fill in the README's numbers.")
    parser.add_argument("--write-readme", action="store_true", help="rewrite README.md")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = update_readme(text)
    if args.write_readme:
        README.write_text(new, encoding="utf-8")
        return 0
    sys.stdout.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
