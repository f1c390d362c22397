r"""Time ``skew_matrix_exp`` against :func:`torch.matrix_exp` on skew inputs.

Run with::

    python benchmarks/bench_skew_expm.py [--sizes 64 128 256 512] [--threads 1] [--json OUT]

For A skew of shape (3, n, n) it times forward + backward of
``torch.matrix_exp`` and of ``skew_matrix_exp`` (whose forward is
``torch.matrix_exp`` itself, see Note [Backward of the skew matrix exponential]),
and the parts of the latter's backward: the double precision eigh of A^T A, and
the whole eigh backward (eigh, divided differences, seven products). The
candidates are interleaved for ``--rounds`` rounds in one process; each ratio
is reported as the median over the rounds with its range, each time as the
median over the rounds. ``--json`` also writes them to a file; the
benchmarks page quotes ``docs/_static/bench_skew_expm.json``.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys

import torch
from torch.utils.benchmark import Timer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch_ortho_patch._skew_expm as P  # noqa: E402
from torch_ortho_patch._bench import _cpu_model  # noqa: E402


def _fwd_bwd(f, A, G):
    return torch.autograd.grad(f(A), A, G)


def _eigh(A):
    A64 = A.double()
    return torch.linalg.eigh(A64.mT @ A64)


def _eigh_backward(A, G):
    return P._backward_split(A, G) if A.dtype == torch.float32 else P._backward_eig(A, G)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {dtype}, "
        "A = X - X^T with X of N(0, 1/n) entries, shape (3, n, n), "
        f"{args.rounds} rounds"
    )
    print(f"{'n':>5} {'':<34} {'ms':>9} {'/ matrix_exp fwd+bwd':>22}")
    rows = []
    for n in args.sizes:
        X = torch.randn(3, n, n, dtype=dtype) / n**0.5
        A = (X - X.mT).requires_grad_()
        G = torch.randn_like(A)
        candidates = {
            "torch.matrix_exp fwd+bwd": ("g(torch.matrix_exp, A, G)", {}),
            "skew_matrix_exp fwd+bwd": ("g(P.skew_matrix_exp, A, G)", {}),
            "  of which the forward": ("torch.matrix_exp(A)", {}),
            "  of which the eigh backward": ("b(A, G)", {}),
            "    of which the eigh": ("e(A)", {}),
        }
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.rounds):
            for name, (stmt, _) in candidates.items():
                g = {"g": _fwd_bwd, "b": _eigh_backward, "e": _eigh, "P": P,
                     "torch": torch, "A": A if "fwd+bwd" in name else A.detach(), "G": G}
                timer = Timer(stmt, globals=g)
                times[name].append(timer.blocked_autorange(min_run_time=args.min_run_time).median)
        base = times["torch.matrix_exp fwd+bwd"]
        for name, t in times.items():
            ratios = [x / b for x, b in zip(t, base)]
            rows.append(
                {
                    "n": n,
                    "name": name.strip(),
                    "median_s": statistics.median(t),
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                }
            )
            print(
                f"{n:>5} {name:<34} {statistics.median(t) * 1e3:>9.2f} "
                f"{statistics.median(ratios):>10.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
    if args.json:
        header = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpu": _cpu_model(),
            "dtype": args.dtype,
            "rounds": args.rounds,
            "min_run_time": args.min_run_time,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"header": header, "rows": rows}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
