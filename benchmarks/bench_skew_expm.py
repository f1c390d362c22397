r"""Compare :func:`torch.matrix_exp` with ``skew_matrix_exp`` on skew inputs.

Benchmark of the skew matrix exponential in ``torch_ortho_patch.parametrizations``. Run with::

    python benchmarks/bench_skew_expm.py [--min-run-time 1.0] [--sizes 64 256 512]

It times, on one thread, for A skew of shape (3, n, n), the forward without
grad (inference), the forward with A requiring grad (training), and forward +
backward, of

* ``torch.matrix_exp``,
* ``skew_matrix_exp``,
* ``torch.matrix_exp`` forward with ``skew_matrix_exp``'s eigh backward, the
  bitwise-equal-forward design that Note [Skew matrix exponential via eigh]
  rejects,
* the eigendecomposition that ``skew_matrix_exp`` starts from, alone: the part
  of its cost that no change to the rest can remove,
* the complex Hermitian eigendecomposition of ``-iA``, alone, which
  ``skew_matrix_exp`` takes for a complex ``A`` and took for a real one before,

all in one process so that the ratios are comparable on a noisy machine: the
candidates are interleaved for ``--rounds`` rounds and each cell reports the
smallest median over the rounds.
"""

import argparse
import os
import sys
import time

import torch
from torch.utils.benchmark import Timer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from torch_ortho_patch._skew_expm import (  # noqa: E402
    _factorize,
    _frechet,
    skew_matrix_exp,
)


class _ExpmThenEigh(torch.autograd.Function):
    # The alternative design: forward with torch.matrix_exp, eigh in backward.
    @staticmethod
    def forward(A):
        return torch.matrix_exp(A)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, G):
        (A,) = ctx.saved_tensors
        return _frechet(G, _factorize(A), adjoint=True)


def _eigh_only(A):
    # The decomposition that skew_matrix_exp starts from, and nothing else: the
    # floor of its cost. It returns A (through a view) so that every column of
    # the table can time it; their backward is then the identity.
    _factorize(A.detach())
    return A.view_as(A)


def _complex_eigh_only(A):
    # The eigendecomposition of the Hermitian -iA, which gives the
    # eigenvectors of A itself, complex even for a real A: what
    # skew_matrix_exp starts from for a complex A, and did for a real one.
    torch.linalg.eigh(A.detach() * -1j)
    return A.view_as(A)


def _fwd_bwd(f, A, G):
    return torch.autograd.grad(f(A), A, G)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with time.process_time, which other processes on a busy "
        "machine disturb less than wall-clock time (meaningful with --threads 1)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="A = scale * (X - X^H) with X standard normal; torch.matrix_exp "
        "takes fewer squarings for small A, eigh costs the same",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    candidates = {
        "matrix_exp": torch.matrix_exp,
        "skew_matrix_exp": skew_matrix_exp,
        "matrix_exp+eigh bwd": _ExpmThenEigh.apply,
        "eigh alone": _eigh_only,
        "complex eigh alone": _complex_eigh_only,
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {dtype}, "
        f"A = {args.scale:g} * (X - X^H), shape ({args.batch}, n, n), "
        f"{'CPU' if args.cpu_time else 'wall-clock'} time"
    )
    print(
        f"{'n':>5} {'function':<22} {'infer ms':>9} {'train fwd ms':>13} {'fwd+bwd ms':>11}"
        f" {'infer x':>8} {'train fwd x':>12} {'fwd+bwd x':>10}"
    )
    for n in args.sizes:
        X = torch.randn(args.batch, n, n, dtype=dtype)
        A = (args.scale * (X - X.mH)).requires_grad_()
        G = torch.randn_like(A)
        times = {name: [float("inf")] * 3 for name in candidates}
        for _ in range(args.rounds):
            for name, f in candidates.items():
                stmts = [
                    ("f(A)", {"f": f, "A": A.detach()}),
                    ("f(A)", {"f": f, "A": A}),
                    ("g(f, A, G)", {"g": _fwd_bwd, "f": f, "A": A, "G": G}),
                ]
                for i, (stmt, g) in enumerate(stmts):
                    kwargs = {"timer": time.process_time} if args.cpu_time else {}
                    timer = Timer(stmt, globals=g, **kwargs)
                    median = timer.blocked_autorange(min_run_time=args.min_run_time).median
                    times[name][i] = min(times[name][i], median * 1e3)
        base = times["matrix_exp"]
        for name, t in times.items():
            print(
                f"{n:>5} {name:<22} {t[0]:>9.2f} {t[1]:>13.2f} {t[2]:>11.2f}"
                f" {t[0] / base[0]:>8.2f} {t[1] / base[1]:>12.2f} {t[2] / base[2]:>10.2f}"
            )


if __name__ == "__main__":
    main()
