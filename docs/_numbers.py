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
