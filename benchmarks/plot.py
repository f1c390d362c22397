r"""Plot and tabulate the results of ``python -m torch_ortho_patch bench --json``.

Usage::

    python benchmarks/plot.py RESULTS.json [MORE.json ...] [-o bench.png]
        [--combine ALL.json] [--rst]

Each input holds one or more runs (``{"format": 1, "runs": [...]}``), for
example one at 1 thread and one at 2 threads. The plot has two panels: the
forward + backward time of our block-orthogonal maps over torch's batched
``orthogonal``, per map and size, and the time of an RNN training step over
the unconstrained step. ``--combine`` writes all runs into one file and
``--rst`` prints reStructuredText tables of them for ``docs/benchmarks.rst``.
"""

import argparse
import json
import sys

_MAP_ORDER = ("matrix_exp", "cayley", "householder", "stacked")
_RNN_VARIANTS = ("ours_installed", "ours_direct", "upstream_stacked")
_RNN_LABELS = {
    "ours_installed": "ours,\ninstall()",
    "ours_direct": "ours,\ndirect",
    "upstream_stacked": "torch\ntoday",
}
_TICKS = (0.05, 0.1, 0.2, 0.33, 0.5, 1, 2, 3, 5, 10, 20, 50, 100)

# Note [Figure size]
# The docs show a figure at the width of their text column, about 7.5 inches on
# a desktop screen (Furo's 46em). Drawn at that width, a 9-point label is 9
# points on the page; drawn at twice the width and scaled down, as before, it
# was about 5 pixels. So the figure is 7.5 inches wide, no text is smaller than
# 9 points, and it is saved at 192 dpi for sharp text on dense screens.
# test/test_docs_figures.py checks all three on the committed PNGs' sources.
FIGURE_WIDTH = 7.5
FONT_SIZE = 9
DPI = 192


def load_runs(paths):
    runs = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        if data.get("format") != 1 or not isinstance(data.get("runs"), list):
            raise ValueError(
                f"Expected the JSON written by `bench --json` (format 1). Got {path}."
            )
        runs += data["runs"]
    if not runs:
        raise ValueError("Expected at least one run. Got none.")
    return runs


def _label(run):
    h = run["header"]
    threads = h["threads"]
    label = f"{threads} thread{'s' if threads != 1 else ''}"
    return label + (" (quick)" if run["config"]["quick"] else "")


def _median(result):
    return result["median"] if isinstance(result, dict) else None


def _value(ax, x, ratio):
    # Bars grow from 1: up when ours is slower, down when it is faster.
    up = ratio >= 1
    ax.annotate(
        f"{ratio:.2f}", (x, ratio), xytext=(0, 2 if up else -2),
        textcoords="offset points", ha="center", va="bottom" if up else "top",
        fontsize=FONT_SIZE, rotation=90,
    )
    ax._ratios = [*getattr(ax, "_ratios", []), ratio]


def _log_axis(ax):
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_yscale("log")
    ratios = getattr(ax, "_ratios", [1.0])
    # Room for the value labels on both sides.
    low, high = min(min(ratios) / 1.8, 0.8), max(max(ratios) * 1.8, 1.25)
    ax.set_ylim(low, high)
    ax.yaxis.set_major_locator(FixedLocator([t for t in _TICKS if low <= t <= high]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _targets(runs):
    # goal name -> target, from the goals each run recorded
    return {g["name"]: g["target"] for run in runs for g in run.get("goals", [])}


def plot(runs, output):
    r"""Write the figure of ``runs`` to ``output`` (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": FONT_SIZE}):
        fig = figure(runs)
        fig.savefig(output, dpi=DPI)
    plt.close(fig)


def figure(runs):
    r"""Return the figure of ``runs``: the maps on top, the RNN step below."""
    import matplotlib.pyplot as plt

    fig, (ax_maps, ax_rnn) = plt.subplots(
        2, 1, figsize=(FIGURE_WIDTH, 9.5), gridspec_kw={"height_ratios": [1.15, 1]}
    )
    width = 0.8 / len(runs)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # Left: fwd+bwd, ours / torch, per (map, n).
    keys = []
    for run in runs:
        for row in run.get("maps", []):
            key = (row["map"], row["n"])
            if row["mode"] == "fwd+bwd" and key not in keys:
                keys.append(key)
    keys.sort(key=lambda key: (_MAP_ORDER.index(key[0]), key[1]))
    wrong_seen = False
    for i, run in enumerate(runs):
        labelled = False
        rows = {
            (r["map"], r["n"]): r for r in run.get("maps", []) if r["mode"] == "fwd+bwd"
        }
        for j, key in enumerate(keys):
            row = rows.get(key)
            if row is None:
                continue
            x = j + (i - (len(runs) - 1) / 2) * width
            ratio = row["ratio_ours_upstream"]
            if ratio is None:
                # torch raised in every round: no ratio to draw.
                ax_maps.annotate(
                    "torch raised", (x, 1.0), xytext=(0, -3),
                    textcoords="offset points", ha="center", va="top",
                    fontsize=FONT_SIZE, rotation=90, color=colors[i % len(colors)],
                )
                continue
            wrong = row["map"] != "stacked" and "upstream" in row["wrong"]
            wrong_seen |= wrong
            ax_maps.bar(
                x,
                ratio - 1,
                width,
                bottom=1,
                color=colors[i % len(colors)],
                hatch="//" if wrong else None,
                edgecolor="black" if wrong else colors[i % len(colors)],
                label=None if labelled else _label(run),
            )
            labelled = True
            _value(ax_maps, x, ratio)
    # One legend entry per run.
    handles, labels = ax_maps.get_legend_handles_labels()
    seen = {}
    for h, lab in zip(handles, labels):
        seen.setdefault(lab, h)
    if wrong_seen:
        from matplotlib.patches import Patch

        seen["torch's result wrong"] = Patch(
            facecolor="white", edgecolor="black", hatch="//"
        )
    ax_maps.axhline(1.0, color="gray", lw=1, ls="--")
    # The targets are the ones the runs recorded with their goals.
    targets = _targets(runs)
    for j, (m, n) in enumerate(keys):
        target = targets.get(f"R1-{n}") if m == "matrix_exp" else None
        if target is not None:
            seen["R1 targets (matrix_exp)"] = ax_maps.hlines(
                target, j - 0.45, j + 0.45, color="red", lw=1.5
            )
    ax_maps.legend(seen.values(), seen.keys(), fontsize=FONT_SIZE, loc="lower center")
    _log_axis(ax_maps)
    ax_maps.set_xticks(range(len(keys)))
    ax_maps.set_xticklabels([str(n) for _, n in keys], fontsize=FONT_SIZE)
    # One label per map, under the sizes.
    for m in dict.fromkeys(m for m, _ in keys):
        js = [j for j, key in enumerate(keys) if key[0] == m]
        ax_maps.annotate(
            "stacked*" if m == "stacked" else m,
            ((min(js) + max(js)) / 2, 0), xycoords=("data", "axes fraction"),
            xytext=(0, -16), textcoords="offset points", ha="center", va="top",
            fontsize=FONT_SIZE,
        )
        if min(js) > 0:
            ax_maps.axvline(min(js) - 0.5, color="lightgray", lw=0.8)
    ax_maps.set_ylabel("time ours / time torch")
    ax_maps.set_title(
        "The map alone, forward + backward, 3 blocks of (n, n)\n"
        "ours on (3n, n) over torch's orthogonal on (3, n, n); below 1, ours is faster\n"
        "stacked*: over torch on the stacked (3n, n), householder",
        fontsize=FONT_SIZE,
    )

    # Right: RNN training step / unconstrained step.
    groups = []
    for run in runs:
        for row in run.get("rnn", []):
            for v in _RNN_VARIANTS:
                key = (row["rnn"], row["hidden"], v)
                if key not in groups:
                    groups.append(key)
    rnn_legend = {}
    for i, run in enumerate(runs):
        rows = {(r["rnn"], r["hidden"]): r for r in run.get("rnn", [])}
        for j, (kind, hidden, v) in enumerate(groups):
            row = rows.get((kind, hidden))
            ratio = None if row is None else row["ratio_vs_unconstrained"].get(v)
            if ratio is None:
                continue
            x = j + (i - (len(runs) - 1) / 2) * width
            bars = ax_rnn.bar(x, ratio - 1, width, bottom=1, color=colors[i % len(colors)])
            rnn_legend.setdefault(_label(run), bars)
            _value(ax_rnn, x, ratio)
    ax_rnn.axhline(1.0, color="gray", lw=1, ls="--")
    for j, (kind, _, v) in enumerate(groups):
        path = {"ours_installed": "installed", "ours_direct": "direct"}.get(v)
        target = targets.get(f"R2-{kind}-{path}")
        if target is not None:
            rnn_legend["R2 targets"] = ax_rnn.hlines(
                target, j - 0.45, j + 0.45, color="red", lw=1.5
            )
    # Each panel has its own legend, so that either can be read alone.
    ax_rnn.legend(rnn_legend.values(), rnn_legend.keys(), fontsize=FONT_SIZE, loc="upper left")
    _log_axis(ax_rnn)
    ax_rnn.set_xticks(range(len(groups)))
    ax_rnn.set_xticklabels(
        [f"{_RNN_LABELS[v]}\n{k}({h})" for k, h, v in groups], fontsize=FONT_SIZE
    )
    ax_rnn.set_ylabel("step time / unconstrained step")
    ax_rnn.set_title(
        "A whole training step, block-orthogonal weight_hh_l0, over the unconstrained step\n"
        "ours: blocks=k, with install() or called directly; torch today: stacked",
        fontsize=FONT_SIZE,
    )

    h = runs[0]["header"]
    fig.suptitle(
        f"torch {h['torch']}, {h['device']}, float32, {h['date'][:10]}",
        fontsize=FONT_SIZE,
    )
    fig.tight_layout()
    return fig


def _ms(result):
    if not isinstance(result, dict):
        return "raised" if result else ""
    ms = result["median"] * 1e3
    # Three significant digits, never in exponent notation: the column stays narrow.
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _ratio(r):
    return "" if r is None else f"{r:.2f}"


def _range(pairs):
    return f"{min(pairs):.2f}-{max(pairs):.2f}" if len(pairs) > 1 else ""


def _list_table(title, header, rows, widths=None):
    lines = [f".. list-table:: {title}", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {' '.join(map(str, widths))}")
    lines.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            lines.append(f"   {'* -' if i == 0 else '  -'} {cell}".rstrip())
    return "\n".join(lines)


# The footnotes the tables may cite; rst() defines only those it cites.
_FOOTNOTES = {
    "raised": "PyTorch's batched cayley raised ``RuntimeError`` in every round "
    "(pytorch#142815, CPU, 2 or more threads, n of about 150 and up). Ours solves "
    "one matrix at a time there.",
    "wrong": "PyTorch's result failed the orthogonality check (error above "
    ":math:`100\\,n\\,\\varepsilon`); it was timed all the same.",
    "ours_wrong": "Our result failed the orthogonality check (error above "
    ":math:`100\\,n\\,\\varepsilon`).",
    "stacked": "*torch today*: PyTorch's ``orthogonal`` on the stacked "
    ":math:`(3n, n)` weight with its default map for a non-square matrix, "
    "householder; no gate is orthogonal. *ours*: ``blocks=3`` on the same weight "
    "with the default map, matrix_exp (columns *fwd+bwd* and *fwd*), or with "
    "householder.",
    "reads": "How often the parametrization runs in one forward of the RNN "
    "module, outside :func:`torch.nn.utils.parametrize.cached`.",
}


def _threads(run):
    return f"{run['header']['threads']} thr."


def _maps_rows(run, mode, *, stacked):
    return {
        (r["map"], r["n"]): r
        for r in run.get("maps", [])
        if r["mode"] == mode and (r["map"] == "stacked") == stacked
    }


def rst(runs):
    r"""Return the benchmark tables of ``runs`` as reStructuredText.

    The tables are narrow on purpose (no more than eight short columns), so that
    they fit the text column of the docs; what does not fit a cell is a footnote.
    ``docs/conf.py`` writes this text at build time to a file that
    ``docs/benchmarks.rst`` includes, so the page follows the JSON.
    """
    cited = []

    def cite(name):
        if name not in cited:
            cited.append(name)
        return f" [#{name}]_"

    out = []

    # The runs: one line each.
    for run in runs:
        h, c = run["header"], run["config"]
        out.append(
            f"- *{_label(run)}*: {h['date']}; torch {h['torch']}, Python "
            f"{h['python']}, {h['device']}, {h['dtype']}; {c['rounds']} interleaved "
            f"rounds of ``blocked_autorange(min_run_time={c['min_run_time']})``."
        )
    out.append("")

    # Goals: one row per goal, one column per run.
    goals = list(dict.fromkeys(g["name"] for run in runs for g in run["goals"]))
    if goals:
        rows = []
        for name in goals:
            per_run = [
                next((g for g in run["goals"] if g["name"] == name), None)
                for run in runs
            ]
            first = next(g for g in per_run if g is not None)
            cells = [
                "" if g is None or g["value"] is None
                else f"{g['value']:.2f} ({g['status']})"
                for g in per_run
            ]
            rows.append([name, first["description"], f"<= {first['target']}", *cells])
        out.append(
            _list_table(
                "Goals",
                ["goal", "what is measured", "target", *(_label(run) for run in runs)],
                rows,
                widths=[8, 52, 10, *([15] * len(runs))],
            )
        )
        out.append("")

    def ratio_cell(row):
        if row is None:
            return ""
        if row["ratio_ours_upstream"] is None:
            return "raised" + cite("raised")
        cell = _ratio(row["ratio_ours_upstream"])
        if "upstream" in row["wrong"]:
            cell += cite("wrong")
        if "ours" in row["wrong"]:
            cell += cite("ours_wrong")
        return cell

    keys = sorted(
        {(r["map"], r["n"]) for run in runs for r in run.get("maps", [])
         if r["map"] != "stacked"},
        key=lambda key: (_MAP_ORDER.index(key[0]), key[1]),
    )
    if keys:
        # Forward + backward, the number that matters for training.
        fb = [_maps_rows(run, "fwd+bwd", stacked=False) for run in runs]
        rows = []
        for key in keys:
            cells = []
            for by_key in fb:
                row = by_key.get(key)
                cells.append(ratio_cell(row))
                cells.append("" if row is None else _ratio(row["ratio_ours_loop"]))
            rows.append([*map(str, key), *cells])
        header = ["map", "n"]
        for run in runs:
            header += [f"ours / torch, {_threads(run)}", f"ours / loop, {_threads(run)}"]
        out.append(_list_table("Maps, forward + backward: time ratios", header, rows))
        out.append("")

        # Forward only (autograd recording) and inference.
        modes = ("fwd", "infer")
        by_mode = {m: [_maps_rows(run, m, stacked=False) for run in runs] for m in modes}
        rows = []
        for key in keys:
            cells = [ratio_cell(by_key.get(key)) for m in modes for by_key in by_mode[m]]
            rows.append([*map(str, key), *cells])
        header = ["map", "n"] + [
            f"{m}, {_threads(run)}" for m in modes for run in runs
        ]
        out.append(
            _list_table("Maps, forward and inference: time ours / torch", header, rows)
        )
        out.append("")

        # Absolute times of forward + backward.
        rows = []
        for key in keys:
            cells = []
            for by_key in fb:
                row = by_key.get(key)
                t = {} if row is None else row["times"]
                cells += [_ms(t.get(v)) for v in ("ours", "upstream", "loop")]
            rows.append([*map(str, key), *cells])
        header = ["map", "n"]
        for run in runs:
            header += [f"{v}, {_threads(run)}" for v in ("ours", "torch", "loop")]
        out.append(
            _list_table("Maps, forward + backward: milliseconds per call", header, rows)
        )
        out.append("")

    # What users get today on a stacked weight.
    sizes = sorted({r["n"] for run in runs for r in run.get("maps", [])
                    if r["map"] == "stacked"})
    if sizes:
        by_mode = {m: [_maps_rows(run, m, stacked=True) for run in runs]
                   for m in ("fwd+bwd", "fwd")}
        rows = []
        for n in sizes:
            cells = []
            for m, field in (("fwd+bwd", "ratio_ours_upstream"),
                             ("fwd+bwd", "ratio_ours_householder_upstream"),
                             ("fwd", "ratio_ours_upstream")):
                for by_key in by_mode[m]:
                    row = by_key.get(("stacked", n))
                    cells.append("" if row is None else _ratio(row[field]))
            rows.append([str(n), *cells])
        header = ["n"]
        for what in ("fwd+bwd", "householder fwd+bwd", "fwd"):
            header += [f"{what}, {_threads(run)}" for run in runs]
        out.append(
            _list_table(
                "Stacked (3n, n) weight: time ours / torch today" + cite("stacked"),
                header, rows,
            )
        )
        out.append("")

    # RNN training steps.
    kinds = list(dict.fromkeys(
        (r["rnn"], r["hidden"]) for run in runs for r in run.get("rnn", [])
    ))
    if kinds:
        first = next(r for run in runs for r in run.get("rnn", []))
        labels = {
            "unconstrained": "unconstrained",
            "ours_installed": "ours, install()",
            "ours_direct": "ours, direct",
            "upstream_stacked": "torch today (stacked)",
        }
        rows = []
        for kind in kinds:
            per_run = [
                next((r for r in run.get("rnn", []) if (r["rnn"], r["hidden"]) == kind),
                     None)
                for run in runs
            ]
            some = next(r for r in per_run if r is not None)
            for name in some["times"]:
                evals = some["evals_per_forward"][name]
                cells = []
                for row in per_run:
                    if row is None:
                        cells += ["", ""]
                        continue
                    ratio = (1.0 if name == "unconstrained"
                             else row["ratio_vs_unconstrained"][name])
                    cells += [_ms(row["times"][name]), _ratio(ratio)]
                rows.append([f"{kind[0]}({kind[1]})", labels.get(name, name),
                             "" if evals is None else str(evals), *cells])
        header = ["RNN", "weight_hh_l0", "reads" + cite("reads")]
        for run in runs:
            header += [f"ms, {_threads(run)}", f"ratio, {_threads(run)}"]
        out.append(
            _list_table(
                f"RNN training step (sequence {first['seq']}, batch {first['batch']}): "
                "time, and ratio to the unconstrained step",
                header, rows,
            )
        )
        out.append("")

    for name in cited:
        out += [f".. [#{name}] {_FOOTNOTES[name]}", ""]
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Plot and tabulate `python -m torch_ortho_patch bench --json` "
        "results."
    )
    parser.add_argument("inputs", nargs="+", metavar="RESULTS.json")
    parser.add_argument("-o", "--output", metavar="PNG", help="write the plot here")
    parser.add_argument(
        "--combine", metavar="PATH", help="write all runs into one JSON file"
    )
    parser.add_argument(
        "--rst", action="store_true", help="print reStructuredText tables"
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.inputs)
    if args.output:
        plot(runs, args.output)
    if args.combine:
        with open(args.combine, "w") as f:
            json.dump({"format": 1, "runs": runs}, f, indent=1)
            f.write("\n")
    if args.rst:
        sys.stdout.write(rst(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
