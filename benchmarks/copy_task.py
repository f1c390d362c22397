r"""Train GRUs and LSTMs on the copying memory task, with and without orthogonal gates.

The task is the one of Arjovsky, Shah and Bengio (2016), "Unitary evolution
recurrent neural networks", which expRNN (Lezcano-Casado and Martinez-Rubio,
2019) also reports on. An input sequence has length ``T + 20``
over 10 symbols (0 blank, 1-8 data, 9 delimiter)::

    input   d1 ... d10   0 ... 0 (T - 1)   9   0 ... 0 (10)
    target  0 ... 0 (T + 10)                   d1 ... d10

The ten data symbols are drawn uniformly from 1-8. The loss is the
cross-entropy averaged over all ``T + 20`` positions. A model without memory
can emit blanks with certainty for the first ``T + 10`` positions, since the
delimiter tells it where it is, and can only guess uniformly among the 8 data
symbols for the last 10, so its best loss is ``10 log(8) / (T + 20)``: the
baseline the runs are compared with.

Each configuration trains one ``nn.GRU`` or ``nn.LSTM`` layer of hidden size H
with one-hot inputs and a linear read-out, for the same number of steps, with
the same optimizer, learning rate, data and seeds:

``unconstrained``  PyTorch's default initialization, no constraint.
``orth_init``      unconstrained, each gate of ``weight_hh_l0`` initialized
                   orthogonal: separates the effect of the start from that of
                   the constraint.
``upstream``       ``torch.nn.utils.parametrizations.orthogonal`` on the stacked
                   ``weight_hh_l0`` (its default map for a non-square matrix,
                   householder): the whole stack has orthonormal columns and no
                   gate is orthogonal.
``MAP``            ``torch_ortho_patch.orthogonal(rnn, "weight_hh_l0", MAP,
                   blocks=3 | 4)``, for each of matrix_exp, cayley and
                   householder: every gate matrix is orthogonal.

Only ``weight_hh_l0`` is constrained. Every step runs inside
``torch.nn.utils.parametrize.cached()``, so a parametrized weight is computed once
per step whatever the RNN module does. The script uses one thread by default and
runs the configurations one after another.

Usage::

    python benchmarks/copy_task.py --json docs/_static/copy_task.json   # the docs run
    python benchmarks/copy_task.py --quick --json /tmp/copy.json        # seconds, for CI

``benchmarks/plot_copy_task.py`` turns the JSON into the docs figure and table.
"""

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

# Run from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch_ortho_patch  # noqa: E402


N_DATA = 10  # symbols to remember
N_SYMBOLS = 8  # data alphabet, 1..8
BLANK, DELIMITER = 0, 9
N_INPUTS = 10  # blank, 8 data symbols, delimiter
N_OUTPUTS = 9  # blank, 8 data symbols: the delimiter is never a target

CELLS = {"GRU": (nn.GRU, 3), "LSTM": (nn.LSTM, 4)}
VARIANTS = ("unconstrained", "orth_init", "upstream", "matrix_exp", "cayley", "householder")
MAPS = ("matrix_exp", "cayley", "householder")

# Take PyTorch's own function now, whatever is installed later.
_torch_orthogonal = torch.nn.utils.parametrizations.orthogonal


def baseline(T):
    r"""Return the loss of the best memoryless strategy, ``10 log 8 / (T + 20)``."""
    return N_DATA * math.log(N_SYMBOLS) / (T + 2 * N_DATA)


def make_batch(T, batch, generator):
    r"""Return one-hot inputs of shape ``(T + 20, batch, 10)`` and targets ``(T + 20, batch)``."""
    L = T + 2 * N_DATA
    data = torch.randint(1, N_SYMBOLS + 1, (N_DATA, batch), generator=generator)
    x = torch.full((L, batch), BLANK, dtype=torch.long)
    x[:N_DATA] = data
    x[T + N_DATA - 1] = DELIMITER
    y = torch.full((L, batch), BLANK, dtype=torch.long)
    y[-N_DATA:] = data
    return nn.functional.one_hot(x, N_INPUTS).float(), y


class CopyModel(nn.Module):
    def __init__(self, cell, hidden):
        super().__init__()
        self.rnn = CELLS[cell][0](N_INPUTS, hidden)
        self.out = nn.Linear(hidden, N_OUTPUTS)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.out(h)


def build(cell, variant, hidden, seed):
    r"""Return the model of one configuration, initialized from ``seed``."""
    torch.manual_seed(seed)
    model = CopyModel(cell, hidden)
    k = CELLS[cell][1]
    rnn = model.rnn
    if variant == "orth_init":
        with torch.no_grad():
            for gate in rnn.weight_hh_l0.split(hidden):
                nn.init.orthogonal_(gate)
    elif variant == "upstream":
        _torch_orthogonal(rnn, "weight_hh_l0")
    elif variant in MAPS:
        torch_ortho_patch.orthogonal(rnn, "weight_hh_l0", variant, blocks=k)
    elif variant != "unconstrained":
        raise ValueError(f"Expected one of {VARIANTS}. Got {variant!r}.")
    return model


def gate_error(model, cell):
    r"""Return :math:`\max_g \lVert W_g^\top W_g - I \rVert_F` over the gates of ``weight_hh_l0``."""
    with torch.no_grad():
        W = model.rnn.weight_hh_l0
        H = W.size(-1)
        G = W.unflatten(0, (CELLS[cell][1], H))
        return torch.linalg.matrix_norm(G.mT @ G - torch.eye(H)).max().item()


def skew_norm(model, cell, variant):
    r"""Return :math:`\max_g \lVert A_g \rVert_2` over the gates, for the matrix_exp and cayley maps.

    Each gate's map takes the skew :math:`A_g = L_g - L_g^\top` of the lower
    triangle :math:`L_g` of its block of the original tensor (its rows, as the
    gates are stacked); ``None`` for the other variants.
    """
    if variant not in ("matrix_exp", "cayley"):
        return None
    with torch.no_grad():
        X = model.rnn.parametrizations.weight_hh_l0.original
        L = X.unflatten(0, (CELLS[cell][1], X.size(-1))).tril()
        return torch.linalg.matrix_norm(L - L.mT, ord=2).max().item()


def evaluate(model, x, y):
    with torch.no_grad(), parametrize.cached():
        logits = model(x)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    # Accuracy on the ten recalled symbols, the part a memoryless model guesses.
    recalled = logits[-N_DATA:].argmax(-1) == y[-N_DATA:]
    return loss, recalled.float().mean().item()


def train(cell, variant, *, T, hidden, batch, steps, lr, seed, eval_every, eval_batch):
    model = build(cell, variant, hidden, seed)
    opt = torch.optim.RMSprop(model.parameters(), lr=lr)
    # The same training and evaluation data for every configuration of a seed.
    data = torch.Generator().manual_seed(10_000 + seed)
    x_eval, y_eval = make_batch(T, eval_batch, torch.Generator().manual_seed(seed))
    curve = {"step": [], "eval_loss": [], "train_loss": []}
    step_times, cpu_times, window = [], [], []
    # The largest ||A_g||_2 of any step; see skew_norm.
    max_skew_norm = skew_norm(model, cell, variant)
    for step in range(1, steps + 1):
        x, y = make_batch(T, batch, data)
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        with parametrize.cached():
            logits = model(x)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        step_times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        window.append(loss.item())
        if max_skew_norm is not None:
            max_skew_norm = max(max_skew_norm, skew_norm(model, cell, variant))
        if step % eval_every == 0 or step == steps:
            curve["step"].append(step)
            curve["eval_loss"].append(evaluate(model, x_eval, y_eval)[0])
            curve["train_loss"].append(statistics.fmean(window))
            window = []
    final_loss, accuracy = evaluate(model, x_eval, y_eval)
    return {
        "cell": cell,
        "variant": variant,
        "seed": seed,
        "final_loss": final_loss,
        "recall_accuracy": accuracy,
        "gate_error": gate_error(model, cell),
        "max_skew_norm": max_skew_norm,
        # The first steps warm up allocators and caches. The CPU time of the
        # process is less sensitive than the wall time to other jobs on a
        # shared machine.
        "step_time_median": statistics.median(step_times[min(5, steps - 1):]),
        "step_cpu_time_median": statistics.median(cpu_times[min(5, steps - 1):]),
        "curve": curve,
    }


def _header(threads):
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "torch_ortho_patch": torch_ortho_patch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "threads": threads,
    }


def run(*, T, hidden, batch, steps, lr, seeds, cells, variants, eval_every,
        eval_batch, threads, quick, log=print, checkpoint=None):
    r"""Train every configuration and return the results as a dict (the JSON).

    Seeds are the outer loop, so that a change in the machine's load over the run
    falls on all configurations alike, and an interrupted run holds whole seeds.
    ``checkpoint``, if given, is called with the results so far after each run.
    """
    if threads < 1:
        raise ValueError(f"Expected threads to be a positive integer. Got {threads}.")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(T=T, hidden=hidden, batch=batch, steps=steps, lr=lr, seeds=seeds,
                    cells=cells, variants=variants, eval_every=eval_every,
                    eval_batch=eval_batch, threads=threads, quick=quick, log=log,
                    checkpoint=checkpoint)
    finally:
        torch.set_num_threads(previous)


def _run(*, T, hidden, batch, steps, lr, seeds, cells, variants, eval_every,
         eval_batch, threads, quick, log, checkpoint):
    config = {
        "quick": quick, "T": T, "length": T + 2 * N_DATA, "hidden": hidden,
        "batch": batch, "steps": steps, "optimizer": "RMSprop", "lr": lr,
        "seeds": list(seeds), "cells": list(cells), "variants": list(variants),
        "eval_every": eval_every, "eval_batch": eval_batch,
    }
    result = {
        "format": 1,
        "header": _header(threads),
        "config": config,
        "baseline": baseline(T),
        "total_time": 0.0,
        "runs": [],
    }
    t_start = time.perf_counter()
    for seed in seeds:
        for cell in cells:
            for variant in variants:
                t0 = time.perf_counter()
                r = train(cell, variant, T=T, hidden=hidden, batch=batch, steps=steps,
                          lr=lr, seed=seed, eval_every=eval_every, eval_batch=eval_batch)
                r["wall_time"] = time.perf_counter() - t0
                result["runs"].append(r)
                result["total_time"] = time.perf_counter() - t_start
                log(f"{cell:4} {variant:13} seed {seed}: loss {r['final_loss']:.4f} "
                    f"(baseline {baseline(T):.4f}), recall {r['recall_accuracy']:.2f}, "
                    f"gate error {r['gate_error']:.1e}, "
                    + ("" if r["max_skew_norm"] is None
                       else f"max ||A||_2 {r['max_skew_norm']:.2f}, ")
                    + f"{r['step_time_median'] * 1e3:.1f} ms/step "
                    f"({r['step_cpu_time_median'] * 1e3:.1f} CPU), {r['wall_time']:.0f} s")
                if checkpoint is not None:
                    checkpoint(result)
    return result


def _write(path, result):
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Copying memory task: GRU/LSTM with and without orthogonal gates."
    )
    p.add_argument("--T", type=int, default=20, help="delay (default 20)")
    p.add_argument("--hidden", type=int, default=64, help="hidden size (default 64)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    p.add_argument("--lr", type=float, default=3e-3, help="RMSprop learning rate (default 3e-3)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", nargs="+", choices=tuple(CELLS), default=list(CELLS))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--eval-every", type=int, default=25, help="steps between evaluations")
    p.add_argument("--eval-batch", type=int, default=256, help="held-out sequences")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", metavar="PATH", help="write the results here")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test in seconds: T=10, H=8, 4 steps, 1 seed")
    args = p.parse_args(argv)
    if args.quick:
        args.T, args.hidden, args.batch, args.steps = 10, 8, 4, 4
        args.seeds, args.eval_every, args.eval_batch = [0], 2, 8
    checkpoint = None if args.json is None else (lambda result: _write(args.json, result))
    result = run(T=args.T, hidden=args.hidden, batch=args.batch, steps=args.steps,
                 lr=args.lr, seeds=args.seeds, cells=args.cells, variants=args.variants,
                 eval_every=args.eval_every, eval_batch=args.eval_batch,
                 threads=args.threads, quick=args.quick, checkpoint=checkpoint,
                 log=lambda line: print(line, flush=True))
    print(f"total {result['total_time']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
