r"""Compare two correct ways to solve the Cayley system on CPU with 2 threads.

See Note [CPU batched LU] in ``torch_ortho_patch/_patches/cayley_batched_lu.py``. Torch's
batched LU is wrong there for batches of large matrices, so the Cayley map
needs another route. This script times, side by side, forward + backward of

* ``loop``: one ``torch.linalg.solve`` per matrix (what the map does), and
* ``cholesky``: :math:`(I - A^2/4)\, Q = (I + A/2)^2` with a Cholesky solve,
  which is also correct because :math:`I - A^2/4 = I + A^{H}A/4` is positive
  definite for skew :math:`A`,

and prints their orthogonality errors. Run with::

    python benchmarks/bench_cayley_solve.py [--n 256] [--threads 2]
"""

import argparse

import torch
from torch.utils import benchmark


def loop(A, Id):
    return torch.stack([torch.linalg.solve(Id - a / 2, Id + a / 2) for a in A.unbind(0)])


def cholesky(A, Id):
    L = torch.linalg.cholesky(Id - A @ A / 4)
    B = Id + A / 2
    return torch.cholesky_solve(B @ B, L)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time", type=float, default=2.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    X = torch.randn(args.batch, args.n, args.n)
    A = (X - X.mT).requires_grad_()
    Id = torch.eye(args.n)
    print(f"torch {torch.__version__}, {args.threads} threads, A of shape {tuple(A.shape)}")
    for fn in (loop, cholesky):
        Q = fn(A, Id)
        err = (Q.mT @ Q - Id).abs().max().item()

        def step():
            A.grad = None
            fn(A, Id).sum().backward()

        t = benchmark.Timer("step()", globals={"step": step}).blocked_autorange(
            min_run_time=args.min_run_time
        )
        print(f"{fn.__name__:9s} fwd+bwd {t.median * 1e3:8.2f} ms   max|Q^T Q - I| {err:.1e}")


if __name__ == "__main__":
    main()
