r"""Accuracy of ``skew_matrix_exp`` against ``torch.matrix_exp`` in double precision.

Run with::

    python benchmarks/accuracy_skew_expm.py [--n 64] [--dtype float32]

For skew ``A`` of shape (3, n, n) scaled to several spectral norms, and for
the zero matrix, a matrix with all eigenvalues repeated and one of odd size,
it prints the largest entrywise error of ``exp(A)`` against
``torch.matrix_exp`` of ``A`` in float64, the orthogonality error
``max |Q^H Q - I|``, and the error of the gradient for a random cotangent
relative to its largest entry. Note [Skew matrix exponential via eigh]
quotes these numbers: the errors grow like ``eps ||A||^2``.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from torch_ortho_patch._skew_expm import skew_matrix_exp  # noqa: E402


def _cases(n, g):
    def random(size, norm):
        X = torch.randn(3, size, size, generator=g, dtype=torch.float64)
        A = X - X.mT
        return A / torch.linalg.matrix_norm(A, ord=2, keepdim=True) * norm

    J = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    for norm in (0.01, 1.0, 3.0, 10.0, 30.0, 100.0):
        yield "random", norm, random(n, norm)
        yield "odd size", norm, random(n + 1, norm)
        yield (
            "repeated",
            norm,
            (norm * torch.block_diag(*[J] * (n // 2))).expand(3, n, n),
        )
    yield "zero", 0.0, torch.zeros(3, n, n, dtype=torch.float64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    print(
        f"torch {torch.__version__}, {args.dtype}, errors against float64 torch.matrix_exp"
    )
    print(f"{'case':<10} {'n':>4} {'||A||_2':>8} {'value':>9} {'orth':>9} {'grad':>9}")
    for name, norm, A64 in _cases(args.n, g):
        A64 = A64.contiguous().requires_grad_()
        G = torch.randn(A64.shape, generator=g, dtype=torch.float64)
        ref = torch.matrix_exp(A64)
        (gref,) = torch.autograd.grad(ref, A64, G)
        A = A64.detach().to(dtype).requires_grad_()
        Q = skew_matrix_exp(A)
        (grad,) = torch.autograd.grad(Q, A, G.to(dtype))
        Q, grad = Q.double(), grad.double()
        Id = torch.eye(A.size(-1), dtype=torch.float64)
        value = (Q - ref).abs().max().item()
        orth = (Q.mT @ Q - Id).abs().max().item()
        gerr = ((grad - gref).abs().max() / gref.abs().max()).item()
        print(
            f"{name:<10} {A.size(-1):>4} {norm:>8g} {value:>9.1e} {orth:>9.1e} {gerr:>9.1e}"
        )


if __name__ == "__main__":
    main()
