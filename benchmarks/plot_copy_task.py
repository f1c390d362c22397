r"""Plot and tabulate the results of ``benchmarks/copy_task.py --json``.

Usage::

    python benchmarks/plot_copy_task.py RESULTS.json [-o copy_task.png] [--rst]

The figure has one panel per cell (GRU, LSTM), one above the other: the held-out loss against the
training step, the mean over seeds as a line and the range over seeds as a band,
with the memoryless baseline. ``--rst`` prints the results tables that
``docs/experiments.rst`` shows (``docs/conf.py`` writes the same at build time).
"""

import argparse
import json
import statistics
import sys

_LABELS = {
    "unconstrained": "unconstrained",
    "orth_init": "orthogonal init only",
    "upstream": "torch orthogonal, stacked",
    "matrix_exp": "blocks, matrix_exp",
    "cayley": "blocks, cayley",
    "householder": "blocks, householder",
}
_STYLES = {
    "unconstrained": ("black", "-"),
    "orth_init": ("gray", "--"),
    "upstream": ("tab:red", "-"),
    "matrix_exp": ("tab:blue", "-"),
    "cayley": ("tab:green", "-"),
    "householder": ("tab:purple", "-"),
}

# 7.5 inches wide, no text under 9 points, 192 dpi: see Note [Figure size] in
# benchmarks/plot.py.
FIGURE_WIDTH = 7.5
FONT_SIZE = 9
DPI = 192


def load(path):
    with open(path) as f:
        data = json.load(f)
    if data.get("format") != 1 or not isinstance(data.get("runs"), list):
        raise ValueError(
            f"Expected the JSON written by `copy_task.py --json` (format 1). Got {path}."
        )
    return data


def groups(data):
    r"""Return ``{(cell, variant): [run, ...]}``, in the order the script ran them."""
    out = {}
    for run in data["runs"]:
        out.setdefault((run["cell"], run["variant"]), []).append(run)
    return out


def plot(data, output):
    r"""Write the figure of ``data`` to ``output`` (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": FONT_SIZE}):
        fig = figure(data)
        fig.savefig(output, dpi=DPI)
    plt.close(fig)


def figure(data):
    r"""Return the figure of ``data``: one panel per cell, one legend for all."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    by_group = groups(data)
    cells = list(dict.fromkeys(cell for cell, _ in by_group))
    fig, axes = plt.subplots(
        len(cells), 1, figsize=(FIGURE_WIDTH, 1.25 + 3.25 * len(cells)), squeeze=False,
        sharex=True,
    )
    c = data["config"]
    for ax, cell in zip(axes[:, 0], cells):
        for (g_cell, variant), runs in by_group.items():
            if g_cell != cell:
                continue
            steps = runs[0]["curve"]["step"]
            losses = list(zip(*(r["curve"]["eval_loss"] for r in runs)))
            color, ls = _STYLES.get(variant, (None, "-"))
            ax.plot(steps, [statistics.fmean(v) for v in losses], color=color, ls=ls,
                    lw=1.4, label=_LABELS.get(variant, variant))
            ax.fill_between(steps, [min(v) for v in losses], [max(v) for v in losses],
                            color=color, alpha=0.15, lw=0)
        ax.axhline(data["baseline"], color="orange", lw=1.2, ls=":",
                   label=f"memoryless baseline {data['baseline']:.3f}")
        ax.set_yscale("log")
        # Plain numbers on the log axis: the losses span less than a decade.
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylabel("held-out loss (log)")
        ax.set_title(f"{cell}, hidden {c['hidden']}: mean and range of "
                     f"{len(c['seeds'])} seeds", fontsize=FONT_SIZE)
        ax.grid(True, which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("training step")
    # One legend under the panels: inside a panel it would hide the curves.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=FONT_SIZE,
               frameon=False)
    h = data["header"]
    fig.suptitle(
        f"Copying memory task, T = {c['T']} (sequences of {c['length']}), batch "
        f"{c['batch']}, {c['optimizer']} lr {c['lr']:g}\ntorch {h['torch']}, "
        f"{h['threads']} thread(s), {h['date'][:10]}",
        fontsize=FONT_SIZE,
    )
    # Room at the bottom for the legend: its rows of text, about 1.4 lines high
    # each, and a margin.
    rows = -(-len(labels) // 2)
    legend_inches = rows * 1.4 * FONT_SIZE / 72 + 0.15
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    return fig


def _spread(values, fmt):
    mean = statistics.fmean(values)
    if len(values) == 1:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


# A run has left the memoryless baseline once its held-out loss is below this
# fraction of it.
LEFT_BASELINE = 0.95


def _left_baseline(runs, base):
    r"""Return the median first evaluation step below ``LEFT_BASELINE`` x baseline."""
    firsts = []
    for r in runs:
        c = r["curve"]
        firsts.append(next(
            (s for s, loss in zip(c["step"], c["eval_loss"]) if loss < LEFT_BASELINE * base),
            None,
        ))
    reached = [f for f in firsts if f is not None]
    if not reached:
        return "never"
    cell = f"{statistics.median(reached):.0f}"
    if len(reached) < len(firsts):
        cell += f" ({len(reached)} of {len(firsts)} seeds)"
    return cell


def rst(data):
    r"""Return the results as reStructuredText tables, one per cell."""
    c = data["config"]
    by_group = groups(data)
    base = data["baseline"]
    times = {}
    for (cell, variant), runs in by_group.items():
        times[cell, variant] = tuple(
            statistics.median(r[k] for r in runs if k in r)
            for k in ("step_time_median", "step_cpu_time_median")
        )

    def per_step(cell, variant, i):
        t, ref = times[cell, variant][i], times.get((cell, "unconstrained"))
        if ref is None or variant == "unconstrained":
            return f"{t * 1e3:.1f}"
        return f"{t * 1e3:.1f} ({t / ref[i]:.2f}x)"

    header = ["weight_hh_l0", "final loss / baseline", "recall (%)",
              f"step below {LEFT_BASELINE:g} x baseline", "gate error",
              "CPU ms / step", "wall ms / step"]
    lines = []
    # One table per cell: narrower than one table with a cell column.
    for cell in dict.fromkeys(cell for cell, _ in by_group):
        rows = []
        for (g_cell, variant), runs in by_group.items():
            if g_cell != cell:
                continue
            gate = max(r["gate_error"] for r in runs)
            rows.append([
                _LABELS.get(variant, variant),
                _spread([r["final_loss"] / base for r in runs], ".2f"),
                _spread([100 * r["recall_accuracy"] for r in runs], ".0f"),
                _left_baseline(runs, base),
                f"{gate:.0e}".replace("e-0", "e-").replace("e+0", "e+"),
                per_step(cell, variant, 1),
                per_step(cell, variant, 0),
            ])
        lines += [
            f".. list-table:: {cell}, hidden {c['hidden']}: copying task, T = {c['T']}, "
            f"{c['steps']} steps, baseline {base:.3f}; mean (min-max) over seeds "
            f"{', '.join(map(str, c['seeds']))}",
            "   :header-rows: 1",
            "   :widths: 19 17 11 12 8 17 16",
            # A smaller font, so that "0.79 (0.76-0.83)" fits its cell (custom.css).
            "   :class: results",
            "",
        ]
        for row in [header, *rows]:
            for i, text in enumerate(row):
                lines.append(f"   {'* -' if i == 0 else '  -'} {text}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Plot and tabulate `benchmarks/copy_task.py --json` results."
    )
    parser.add_argument("input", metavar="RESULTS.json")
    parser.add_argument("-o", "--output", metavar="PNG", help="write the figure here")
    parser.add_argument("--rst", action="store_true", help="print the reStructuredText tables")
    args = parser.parse_args(argv)
    data = load(args.input)
    if args.output:
        plot(data, args.output)
    if args.rst:
        sys.stdout.write(rst(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
