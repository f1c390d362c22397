r"""Accuracy of ``skew_matrix_exp`` and of ``torch.matrix_exp``, side by side.

Run with::

    python benchmarks/accuracy_skew_expm.py [--dtype float32] [--json PATH]

For skew ``A`` of shape (3, n, n), n in {8, 64, 65, 256}, scaled to
||A||_2 in {0.1, 1, 10, 100, 1000}, random (``X - X^T``) and of rank 2
(``u v^T - v u^T``), it checks that the value of ``skew_matrix_exp`` is
``torch.matrix_exp``'s, bit for bit, with and without grad, prints its
orthogonality error ``max |Q^T Q - I|`` and its error against a reference, and
the error of the gradient for a random cotangent, relative in the Frobenius
norm, for both functions.

The reference is ``torch.matrix_exp`` in float64 for a float32 input. For a
float64 input it is mpmath's ``expm`` at 40 digits, for n = 8 only (larger n
take too long there). ``ratio`` is our gradient error over
``torch.matrix_exp``'s; ``--json`` writes every row.

For float64, ``skew_matrix_exp`` keeps ``torch.matrix_exp``'s backward (Note
[Dtypes of the eigh backward]), so "ours" is its eigh backward called
directly: this is the measurement behind that choice.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch_ortho_patch._skew_expm as P  # noqa: E402
from torch_ortho_patch._skew_expm import skew_matrix_exp  # noqa: E402


def _ours(dtype):
    # See the module's docstring for float64.
    return skew_matrix_exp if dtype in P._EIGH_DTYPES else P._SkewMatrixExpWithJvp.apply

NORMS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _skew(n, norm, kind, g):
    if kind == "random":
        X = torch.randn(3, n, n, generator=g, dtype=torch.float64)
        A = X - X.mT
    else:
        u, v = torch.randn(2, 3, n, 1, generator=g, dtype=torch.float64)
        A = u @ v.mT - v @ u.mT
    return norm * A / torch.linalg.matrix_norm(A, ord=2, keepdim=True)


def _mp_expm_and_grad(A, G):
    # exp(A) and the upper right block of exp([[A^T, G], [0, A^T]]), the
    # gradient of <exp(A), G>, at 40 digits.
    import mpmath

    mpmath.mp.dps = 40
    values, grads = [], []
    for a, g in zip(A, G):
        n = a.size(-1)
        M = mpmath.zeros(2 * n, 2 * n)
        for i in range(n):
            for j in range(n):
                M[i, j] = M[n + i, n + j] = mpmath.mpf(a[j, i].item())
                M[i, n + j] = mpmath.mpf(g[i, j].item())
        E = mpmath.expm(M)
        grads.append([[float(E[i, n + j]) for j in range(n)] for i in range(n)])
        expA = mpmath.expm(mpmath.matrix(a.tolist()))
        values.append([[float(expA[i, j]) for j in range(n)] for i in range(n)])
    return torch.tensor(values, dtype=torch.float64), torch.tensor(grads, dtype=torch.float64)


def _row(n, norm, kind, dtype, g):
    A64 = _skew(n, norm, kind, g)
    G64 = torch.randn(A64.shape, generator=g, dtype=torch.float64)
    if dtype == torch.float64:
        if n > 8:
            return None
        ref, gref = _mp_expm_and_grad(A64, G64)
    else:
        leaf = A64.clone().requires_grad_()
        ref = torch.matrix_exp(leaf)
        (gref,) = torch.autograd.grad(ref, leaf, G64)
        ref = ref.detach()
    A, G = A64.to(dtype), G64.to(dtype)
    out = {"n": n, "norm": norm, "kind": kind, "dtype": str(dtype).split(".")[1]}
    Id = torch.eye(n, dtype=torch.float64)
    with torch.no_grad():
        no_grad = _ours(A.dtype)(A)
    for name, f in (("ours", _ours(A.dtype)), ("matrix_exp", torch.matrix_exp)):
        leaf = A.clone().requires_grad_()
        Q = f(leaf)
        (grad,) = torch.autograd.grad(Q, leaf, G)
        Q, grad = Q.detach(), grad.double()
        if name == "ours":
            out["bitwise"] = torch.equal(Q, torch.matrix_exp(A)) and torch.equal(Q, no_grad)
        Q = Q.double()
        out[f"orth_{name}"] = (Q.mT @ Q - Id).abs().max().item()
        out[f"value_{name}"] = (Q - ref).abs().max().item()
        out[f"grad_{name}"] = ((grad - gref).norm() / gref.norm()).item()
    out["ratio"] = out["grad_ours"] / out["grad_matrix_exp"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 64, 65, 256])
    parser.add_argument("--json", help="write the rows as JSON to this path")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.dtype}; errors of the value against the reference")
    print(
        f"{'kind':<7} {'n':>4} {'||A||_2':>8} {'bitwise':>8} {'orth':>9} {'value':>9}"
        f" {'grad ours':>10} {'grad torch':>11} {'ratio':>6}"
    )
    rows = []
    for n in args.sizes:
        for kind in ("random", "rank2"):
            for norm in NORMS:
                row = _row(n, norm, kind, dtype, g)
                if row is None:
                    continue
                rows.append(row)
                print(
                    f"{kind:<7} {n:>4} {norm:>8g} {str(row['bitwise']):>8}"
                    f" {row['orth_ours']:>9.1e} {row['value_ours']:>9.1e}"
                    f" {row['grad_ours']:>10.1e} {row['grad_matrix_exp']:>11.1e}"
                    f" {row['ratio']:>6.2f}",
                    flush=True,
                )
    worst = max(r["ratio"] for r in rows)
    print(f"largest ratio of gradient errors, ours / torch.matrix_exp: {worst:.2f}")
    print(f"value bitwise equal to torch.matrix_exp in every row: {all(r['bitwise'] for r in rows)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "dtype": args.dtype, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
