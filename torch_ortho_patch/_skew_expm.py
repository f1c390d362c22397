# mypy: allow-untyped-defs
r"""The matrix exponential of a skew-symmetric or skew-Hermitian matrix, with a cheaper backward.

:func:`skew_matrix_exp` returns ``torch.matrix_exp(A)`` itself, in every mode,
and replaces only its backward. See Note [Backward of the skew matrix exponential].
"""

import torch
from torch import Tensor


__all__ = ["skew_matrix_exp"]


# Note [Backward of the skew matrix exponential]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The forward is torch.matrix_exp(A), so the value never depends on grad mode,
# on whether A requires grad, or on tracing. Only the first-order backward
# changes. torch.matrix_exp's backward exponentiates the 2n x 2n block matrix
# [[A^H, G], [0, A^H]]; for a normal A the adjoint of the Frechet derivative,
# L(A^H, G), is diagonal in an eigenbasis of A instead (Daleckii-Krein). With
# A = V diag(i lam) V^H from the Hermitian eigh of -iA and h = exp(-i lam / 2),
#
#     L(A^H, G) = V ((V^H G V) o F) V^H,   F_jk = h_j h_k sinc((lam_j - lam_k) / 2),
#
# which needs no case for repeated eigenvalues (F_jj = h_j^2).
#
# A real A has complex eigenvectors. For it we split the series of exp into its
# even and odd terms, exp(A) = C(A^2) + A Sn(A^2) with C(t) = cos(sqrt(-t)) and
# Sn(t) = sinc(sqrt(-t)). As A^2 = -A^T A, one real symmetric eigh,
# A^T A = U diag(sigma^2) U^T, serves any orthonormal eigenbasis U, and with
# K = U ((U^T G U) o F_C + ((A U)^T G U) o F_Sn) U^T
#
#     L(A^T, G) = A^T K + K A^T + G Sn(A^2),
#
# where F_C and F_Sn are the divided differences of C and Sn at t = -sigma^2
# (_divided_differences): seven real matrix products.
#
# Accuracy. An eigh of A^T A is backward stable for a matrix of norm ||A||^2,
# so it runs in double precision: the gradient of a float32 A is then accurate
# to about eps ||A|| or better, as torch.matrix_exp's own is. A complex64 A
# takes the eigh of -iA in complex128. float64 and complex128 keep
# torch.matrix_exp's backward: see Note [Dtypes of the eigh backward].
#
# Only first derivatives use the eigenbasis. When the backward is itself
# differentiated (create_graph), it computes torch.matrix_exp's own formula from
# differentiable operations, so derivatives of every order are torch's. Forward
# AD is torch.matrix_exp's too, and tracing with torch.jit records
# torch.matrix_exp itself.


# Note [Devices for the eigh backward]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The trade-off between an eigh and the matrix products of torch.matrix_exp's
# backward depends on the device: on a GPU products are cheap and eigh is not.
# On a device type outside this set the backward is torch.matrix_exp's; a type
# joins the set once the trade-off has been measured there.
_EIGH_DEVICES = frozenset({"cpu"})

# Note [Dtypes of the eigh backward]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The eigh backward must never be less accurate than torch.matrix_exp's. It is
# more accurate where its eigh runs in a wider type than A (float32 in float64,
# complex64 in complex128). A float64 or complex128 A has no wider type, and
# there the eigh of -iA in complex128 is about as accurate as torch.matrix_exp's
# backward, and against a high-precision reference sometimes a little less, so
# those dtypes keep torch.matrix_exp's backward. _backward_split and
# _backward_eig accept them too, so that gradcheck can check their formulas in
# double precision.
_EIGH_DTYPES = (torch.float32, torch.complex64)


def _sinc(x: Tensor) -> Tensor:
    # sin(x) / x, and 1 at 0
    return torch.where(x == 0, 1.0, torch.sin(x) / torch.where(x == 0, 1.0, x))


def _divided_differences(sigma: Tensor) -> tuple[Tensor, Tensor]:
    # F_C and F_Sn of Note [Backward of the skew matrix exponential] for a
    # double precision sigma, to an absolute accuracy of 1e-11, far below the
    # single precision that the products run in. For f in {C, Sn} and
    # t = -sigma^2, F_f[j, k] = (f(t_j) - f(t_k)) / (t_j - t_k) where
    # |t_j - t_k| > 1e-4, which loses at most 2 eps / 1e-4 there, and the mean
    # of f'(t_j) and f'(t_k) closer to it, which leaves out at most
    # (t_j - t_k)^2 max |f^(3)| / 12 < 1e-11. Only vectors take sines:
    #   C(t) = cos(sigma),    C'(t) = sinc(sigma) / 2,
    #   Sn(t) = sinc(sigma),  Sn'(t) = (sinc(sigma) - cos(sigma)) / (2 sigma^2),
    # and below sigma^2 = 1e-2, where that quotient cancels, its series.
    t = -sigma * sigma
    cos, sinc = torch.cos(sigma), _sinc(sigma)
    small = t > -1e-2
    series = 1 / 6 + t / 60 + t * t / 1680
    dSn = torch.where(small, series, (sinc - cos) / torch.where(small, 1.0, -2 * t))
    dt = t.unsqueeze(-1) - t.unsqueeze(-2)
    near = dt.abs() <= 1e-4
    dt = torch.where(near, 1.0, dt)

    def divided(f: Tensor, df: Tensor) -> Tensor:
        quotient = (f.unsqueeze(-1) - f.unsqueeze(-2)) / dt
        return torch.where(near, (df.unsqueeze(-1) + df.unsqueeze(-2)) / 2, quotient)

    return divided(cos, sinc / 2), divided(sinc, dSn)


def _backward_split(A: Tensor, G: Tensor) -> Tensor:
    # L(A^T, G) for a real single precision A; see the Note.
    A64 = A.double()
    mu, U = torch.linalg.eigh(A64.mT @ A64)
    # eigh may return -eps ||A||^2 for a zero eigenvalue
    sigma = mu.clamp(min=0).sqrt()
    F_C, F_Sn = (F.to(A.dtype) for F in _divided_differences(sigma))
    sn = _sinc(sigma).to(A.dtype).unsqueeze(-2)
    U = U.to(A.dtype)
    AU = A @ U
    GU = G @ U
    M = (U.mT @ GU) * F_C + (AU.mT @ GU) * F_Sn
    # A^T K = -(A U) M U^T and K A^T = (U M) (A U)^T, as A^T = -A
    return (GU * sn - AU @ M) @ U.mT + (U @ M) @ AU.mT


def _backward_eig(A: Tensor, G: Tensor) -> Tensor:
    # L(A^H, G) from the eigenvectors of A; see the Note.
    lam, V = torch.linalg.eigh(A.to(torch.complex128) * -1j)
    half = lam / 2
    h = torch.complex(torch.cos(half), -torch.sin(half))
    F = _sinc(half.unsqueeze(-1) - half.unsqueeze(-2)) * (
        h.unsqueeze(-1) * h.unsqueeze(-2)
    )
    dtype = A.dtype if A.dtype.is_complex else torch.complex128
    V, F = V.to(dtype), F.to(dtype)
    out = V @ ((V.mH @ (G.to(dtype) @ V)) * F) @ V.mH
    return out if A.dtype.is_complex else out.real


def _matrix_exp_frechet(A: Tensor, E: Tensor) -> Tensor:
    # L(A, E) as torch.matrix_exp's derivatives compute it, from differentiable
    # operations: the upper right block of exp([[A, E], [0, A]]).
    n = A.size(-1)
    A = A.expand_as(E)
    block = torch.cat(
        [torch.cat([A, E], dim=-1), torch.cat([torch.zeros_like(E), A], dim=-1)],
        dim=-2,
    )
    return torch.matrix_exp(block)[..., :n, n:]


class _SkewMatrixExp(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(A: Tensor) -> Tensor:
        return torch.matrix_exp(A)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output)
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, G):
        A, Q = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _matrix_exp_frechet(A.mH, G)
        # eigh raises on a non-finite matrix. Where torch.matrix_exp returned
        # a non-finite value, as it does for every non-finite A, eigh sees
        # zeros instead and the gradient is NaN, as torch.matrix_exp's is.
        finite = torch.isfinite(Q.sum((-2, -1), keepdim=True))
        A = torch.where(finite, A, 0.0)
        backward = _backward_split if A.dtype == torch.float32 else _backward_eig
        # The products run in the dtypes chosen above, as torch.matrix_exp's
        # backward runs in the dtype of A, also when the backward is called
        # inside an autocast region.
        with torch.autocast(A.device.type, enabled=False):
            return torch.where(finite, backward(A, G), torch.nan)


# Note [Forward AD of the skew matrix exponential]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# Dynamo does not trace an autograd.Function that defines jvp, so jvp lives in
# a subclass that eager mode uses; compiled code gets the base class. The
# tangent is torch.matrix_exp's. A visible forward-AD tangent takes
# torch.matrix_exp directly; the jvp serves torch.func.jvp and jacfwd, whose
# tangents the input does not show.
class _SkewMatrixExpWithJvp(_SkewMatrixExp):
    @staticmethod
    def jvp(ctx, dA):
        (A,) = ctx.saved_tensors
        return _matrix_exp_frechet(A, dA)


def skew_matrix_exp(A: Tensor) -> Tensor:
    r"""Return ``torch.matrix_exp(A)`` for a skew-symmetric or skew-Hermitian ``A``.

    The value is that of :func:`torch.matrix_exp`. Where a gradient may be
    taken of a float32 or complex64 ``A``, its first-order backward comes from
    an eigendecomposition of ``A`` in double precision, which requires ``A`` to
    be skew. See Note [Backward of the skew matrix exponential].
    """
    if (
        torch.is_grad_enabled()
        and A.requires_grad
        and A.device.type in _EIGH_DEVICES
        and A.dtype in _EIGH_DTYPES
        and not torch.jit.is_tracing()
        and torch.autograd.forward_ad.unpack_dual(A).tangent is None
    ):
        if torch.compiler.is_compiling():
            return _SkewMatrixExp.apply(A)
        return _SkewMatrixExpWithJvp.apply(A)
    return torch.matrix_exp(A)
