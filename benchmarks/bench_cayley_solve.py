r"""What the batched-LU workaround of the Cayley map costs, on CPU.

See Note [CPU batched LU] in ``torch_ortho_patch/_patches/cayley_batched_lu.py``.
Torch's batched LU is wrong on CPU with two or more threads for batches of
matrices of size 150 and larger, so the runtime's Cayley map solves one matrix
at a time from ``_LU_UNSAFE_MIN_SIZE`` on. This script times, side by side in
one run, forward + backward of the Cayley system :math:`(I - A/2) Q = I + A/2`
solved by

* ``batched``: one ``torch.linalg.solve`` on the whole batch (torch's own
  route; timed only below size 150, where it is right),
* ``loop``: one ``torch.linalg.solve`` per matrix (what the workaround does),
* ``cholesky``: :math:`(I - A^2/4)\, Q = (I + A/2)^2` with a Cholesky solve,
  also correct, since :math:`I - A^2/4 = I + A^{H}A/4` is positive definite
  for skew :math:`A`,

and prints each one's time over ``batched``'s (or over ``loop``'s, where
``batched`` is not timed) and its orthogonality error. Run with::

    python benchmarks/bench_cayley_solve.py [--n 96 128 144 149 256] [--threads 2]

With ``--probe`` it times nothing and instead finds where the batched solve
fails: for each size it solves ``--tries`` random batches in a child process
(the faulty kernel can hang, so each size gets ``--timeout`` seconds) and
prints how many of them were wrong, raised, or whether it hung::

    python benchmarks/bench_cayley_solve.py --probe --n 144 149 150 151 --threads 2 4 8
"""

import argparse
import subprocess
import sys

import torch
from torch.utils import benchmark


# The smallest size at which torch's batched LU has been seen to fail.
_FIRST_FAULTY_SIZE = 150


def batched(A, Id):
    return torch.linalg.solve(Id - A / 2, Id + A / 2)


def loop(A, Id):
    return torch.stack([torch.linalg.solve(Id - a / 2, Id + a / 2) for a in A.unbind(0)])


def cholesky(A, Id):
    L = torch.linalg.cholesky(Id - A @ A / 4)
    B = Id + A / 2
    return torch.cholesky_solve(B @ B, L)


def _probe_one(n, batch, threads, dtype, tries):
    # In the child process: how many of ``tries`` batched solves are wrong.
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dtype = getattr(torch, dtype)
    bad = 0
    for _ in range(tries):
        X = torch.randn(batch, n, n, dtype=dtype) / n**0.5
        A = torch.eye(n, dtype=dtype) + (X - X.mT) / 2
        B = torch.randn(batch, n, n, dtype=dtype)
        ref = torch.stack([torch.linalg.solve(a, b) for a, b in zip(A, B)])
        try:
            bad += not torch.allclose(torch.linalg.solve(A, B), ref, atol=1e-4, rtol=1e-4)
        except RuntimeError:
            bad += 1
    print(f"RESULT {bad}", flush=True)


def probe(args):
    print(f"torch {torch.__version__}, batch of {args.batch}, {args.tries} tries each")
    for dtype in args.dtype:
        for threads in args.threads:
            for n in args.n:
                cmd = [sys.executable, __file__, "--_child", str(n), str(args.batch),
                       str(threads), dtype, str(args.tries)]
                try:
                    out = subprocess.run(
                        cmd, capture_output=True, text=True, timeout=args.timeout, check=False
                    ).stdout
                    # MKL writes its own errors to stdout; the count is the last line.
                    found = [line for line in out.splitlines() if line.startswith("RESULT ")]
                    verdict = f"{found[-1].split()[1]} of {args.tries} wrong" if found else "crashed"
                except subprocess.TimeoutExpired:
                    verdict = f"hung (> {args.timeout} s)"
                print(f"{dtype:8s} {threads:2d} threads  n = {n:4d}: {verdict}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[96, 128, 144, 149, 256])
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--probe", action="store_true", help="find where the batched solve fails")
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--_child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        n, batch, threads, dtype, tries = args._child
        return _probe_one(int(n), int(batch), int(threads), dtype, int(tries))
    if args.probe:
        return probe(args)
    torch.set_num_threads(args.threads[0])
    print(f"torch {torch.__version__}, {args.threads[0]} threads, batch of {args.batch}")
    print(f"{'n':>5s} {'route':9s} {'fwd+bwd ms':>11s} {'ratio':>6s}  max|Q^T Q - I|")
    for n in args.n:
        torch.manual_seed(0)
        X = torch.randn(args.batch, n, n) / n**0.5
        A = (X - X.mT).requires_grad_()
        Id = torch.eye(n)
        routes = [loop, cholesky] if n >= _FIRST_FAULTY_SIZE else [batched, loop, cholesky]
        base = None
        for fn in routes:
            with torch.no_grad():
                Q = fn(A, Id)
            err = (Q.mT @ Q - Id).abs().max().item()

            def step(fn=fn):
                A.grad = None
                fn(A, Id).sum().backward()

            t = benchmark.Timer("step()", globals={"step": step}).blocked_autorange(
                min_run_time=args.min_run_time
            )
            base = base or t.median
            print(
                f"{n:5d} {fn.__name__:9s} {t.median * 1e3:11.2f} {t.median / base:6.2f}  {err:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
