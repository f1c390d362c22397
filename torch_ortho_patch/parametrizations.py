# mypy: allow-untyped-defs
import operator
import warnings
from enum import auto, Enum

import torch
from torch import Tensor
from torch.nn.modules import Module
from torch.nn.utils import parametrize

# Re-exported unchanged: this module only rewrites the orthogonal section.
from torch.nn.utils.parametrizations import spectral_norm, weight_norm


__all__ = [
    "orthogonal",
    "orthogonal_map",
    "matrix_exp_map",
    "cayley_map",
    "householder_map",
    "spectral_norm",
    "weight_norm",
]


def _orthogonal_mask(Q, eps=None):
    # One boolean per matrix of the batch: whether Q^H Q = I up to eps.
    n, k = Q.size(-2), Q.size(-1)
    if eps is None:
        # Loose enough for a product of n rotations in this dtype, tight enough
        # to tell a random matrix apart from an orthogonal one.
        eps = 10.0 * n * torch.finfo(Q.dtype).eps
    Id = torch.eye(k, dtype=Q.dtype, device=Q.device)
    # The tolerance of torch.allclose(Q^H Q, Id, atol=eps), matrix by matrix.
    return ((Q.mH @ Q) - Id).abs().le(eps + 1e-5 * Id.abs()).all(dim=-1).all(dim=-1)


def _is_orthogonal(Q, eps=None):
    return bool(_orthogonal_mask(Q, eps).all())


def _make_orthogonal(A):
    """Return the Q factor of the QR decomposition of the tall matrix A.

    The factor is normalised so that the diagonal of R is real and non-negative,
    which makes it unique when A has full rank. A may be complex.
    """
    H, tau = torch.geqrf(A)
    Q = torch.linalg.householder_product(H, tau)
    # diag(R) sits on the diagonal of H. Scaling column j of Q by sgn(R_jj)
    # moves that phase out of R.
    return Q * H.diagonal(dim1=-2, dim2=-1).sgn().unsqueeze(-2)


def _check_blocks(blocks, shape):
    # Returns ``blocks`` as an int after checking that it splits dim -2 of ``shape``.
    if blocks is None:
        return None
    if isinstance(blocks, bool):
        raise TypeError(
            f"Expected blocks to be a positive int. Got blocks={blocks!r} of type bool."
        )
    try:
        blocks = operator.index(blocks)
    except TypeError:
        raise TypeError(
            "Expected blocks to be a positive int. "
            f"Got blocks={blocks!r} of type {type(blocks).__name__}."
        ) from None
    if blocks < 1:
        raise ValueError(f"Expected blocks to be a positive int. Got blocks={blocks}.")
    rows = shape[-2]
    if rows % blocks != 0:
        raise ValueError(
            "Expected blocks to divide the number of rows (dim -2) of the tensor. "
            f"Got blocks={blocks} for a tensor of shape {tuple(shape)} with {rows} rows."
        )
    return blocks


def _split_blocks(X, blocks):
    # (..., blocks * n, k) -> (..., blocks, n, k). See Note [Row blocks].
    # One block is the tensor itself: no extra batch dimension, so blocks=1 runs
    # the same batched operations on the same shapes as blocks=None.
    return X if blocks is None or blocks == 1 else X.unflatten(-2, (blocks, -1))


def _merge_blocks(Q, blocks):
    # Inverse of _split_blocks.
    return Q if blocks is None or blocks == 1 else Q.flatten(-3, -2)


# Note [Row blocks]
# ~~~~~~~~~~~~~~~~~
# nn.RNN, nn.GRU and nn.LSTM keep the matrices of their gates stacked by rows:
# weight_hh_l0 is [W_hr; W_hz; W_hn] for a GRU, of shape (3 * H, H), and
# [W_hi; W_hf; W_hg; W_ho] for an LSTM, of shape (4 * H, H) (or (4 * H, P) with
# proj_size=P). ``blocks=k`` reads a (..., k * n, m) tensor as k matrices of
# shape (n, m) each. Rows of one gate are contiguous, so the split is a view:
# (..., k * n, m) -> (..., k, n, m), and the k gates become k more batch
# elements of one batched computation. No Python loop over gates, one kernel
# launch per op, and the trivialization base has shape (..., k, N, N) with
# N = max(n, m).


def _householder_sign(X):
    # +1 or -1 per column. See Note [Householder sign].
    d = X.diagonal(dim1=-2, dim2=-1)
    return torch.where(d >= 0, 1.0, -1.0).to(X.dtype).unsqueeze(-2)


# Note [Householder sign]
# ~~~~~~~~~~~~~~~~~~~~~~~
# The householder map reads a sign per column from the diagonal of X, which
# right_inverse sets to exactly +1 or -1 and which gets no gradient. Reading it
# with ``.int()`` truncates: weight decay shrinks -1 to -0.99, ``int`` makes it
# 0, and the column becomes 0. AdamW at its defaults zeroes the whole weight in
# one step. We read the sign instead, with 0 counted as +1, so the map gives
# orthonormal columns for every X, and the same values as before whenever the
# diagonal is exactly +-1.


# Note [CPU batched LU]
# ~~~~~~~~~~~~~~~~~~~~~
# On CPU with two or more threads, torch 2.13's batched LU (linalg.solve, inv,
# lu_factor, and so the backward of solve) returns garbage or raises for a
# batch of 2 or more matrices of size about 150 and above (pytorch#142815).
# The Cayley map is batched exactly there once blocks=k turns gates into batch
# elements. Solving one matrix at a time is correct at any size and thread
# count, gives bit for bit what the batched kernel gives where that kernel is
# right, and costs a Python loop over the batch. A Cholesky solve of
# (I - A^2/4) Q = (I + A/2)^2 is correct too (I - A^2/4 = I + A^H A/4 is
# positive definite), but forward + backward at (3, 256, 256) with 2 threads
# measured 14.5 ms for the loop and 30.6 ms for Cholesky
# (benchmarks/bench_cayley_solve.py). We take the loop only where the fault
# can occur: it was seen from n = 159 on, never at n <= 144; 128 leaves room.
# Under torch.vmap the batch is not in A.shape and a loop cannot split it, so
# there we take the Cholesky route, written as the normal equations of A.
_LU_UNSAFE_MIN_SIZE = 128


def _solve(A, B):
    # torch.linalg.solve(A, B) for square A. See Note [CPU batched LU].
    n = A.size(-1)
    # Static facts first: torch.get_num_threads() breaks a torch.compile graph.
    if n >= _LU_UNSAFE_MIN_SIZE and A.device.type == "cpu":
        # vmap hides its batch dimension from A.shape, and a loop cannot split it.
        vmapped = torch._C._functorch.is_batchedtensor(A)
        if (vmapped or A.shape[:-2].numel() > 1) and torch.get_num_threads() > 1:
            if vmapped:
                # Normal equations A^H A X = A^H B by Cholesky, which has no LU.
                # They square the condition number of A, which is fine for the
                # Cayley map: I - A/2 has all its singular values >= 1.
                return torch.cholesky_solve(A.mH @ B, torch.linalg.cholesky(A.mH @ A))
            As = A.reshape(-1, n, n).unbind(0)
            Bs = B.reshape(-1, n, B.size(-1)).unbind(0)
            X = torch.stack([torch.linalg.solve(a, b) for a, b in zip(As, Bs)])
            return X.reshape(B.shape)
    return torch.linalg.solve(A, B)


# Note [Skew matrix exponential via eigh]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# If A^H = -A then H = -iA is Hermitian, so A = V diag(i lam) V^H with lam real
# and V unitary, and
#
#     exp(A) = V diag(exp(i lam)) V^H.
#
# For a normal matrix the Frechet derivative of exp acts entrywise in the
# eigenbasis:
#
#     L(A, E) = V ((V^H E V) o F) V^H,   F_jk = (e^{mu_j} - e^{mu_k}) / (mu_j - mu_k),
#
# with mu = i lam and F_jj = e^{mu_j}. The backward of a holomorphic map is the
# adjoint L(A^H, G), and A^H = V diag(conj(mu)) V^H, so the vjp is the same
# expression with conj(F). Both are linear in E for *any* E, skew or not, so
# the gradient is the unprojected gradient of torch.matrix_exp at A; the
# projection onto skew matrices happens through autograd in the caller, which
# builds A = X - X^H differentiably.
#
# F is evaluated without cancellation. Writing h = exp(i lam / 2),
#
#     F_jk = h_j h_k sin(d) / d,   d = (lam_j - lam_k) / 2,
#
# which is torch.sinc up to a factor pi, is exactly e^{mu_j} on repeated
# eigenvalues and at A = 0, and has modulus at most one. The last fact keeps
# the derivatives as well conditioned as exp itself: a backward error of eigh
# of size eps * ||A|| moves them by at most that much. A real A has real
# exp(A) and real derivatives; we take the real part of the last product and
# never form the imaginary one.
#
# Why the forward uses eigh rather than torch.matrix_exp. On one CPU thread,
# for A of shape (3, 256, 256) in float32, torch.matrix_exp costs 12 to 18 ms
# forward (fewer squarings for smaller ||A||) and 135 to 155 ms forward +
# backward, because its backward exponentiates a 2n x 2n block matrix. A
# complex Hermitian eigh costs 25 ms, and the rest is four matrix products for
# the backward and one for the forward. Keeping torch.matrix_exp in the
# forward, for values bitwise equal to upstream, and calling eigh in the
# backward pays for both: 52 to 60 ms, 0.38x to 0.39x. Computing exp(A) from
# the eigh that the backward reuses pays for one: 43 to 44 ms, 0.28x to 0.32x.
# Only the latter meets the 0.33x budget of the orthogonal map, so we take it,
# and exp(A) agrees with torch.matrix_exp to round-off rather than bitwise;
# the tests bound the difference by 10 * n * eps. Run
# benchmarks/bench_skew_expm.py to time both designs.
#
# When nothing can differentiate the result (grad mode is off or A does not
# require grad, and A carries no forward-mode tangent) the factorisation would
# be wasted, and torch.matrix_exp alone is 1.4 to 2 times faster than eigh.
# We call it then, so inference costs and returns exactly what upstream does.
# Either path is correct in every mode, since torch.matrix_exp has derivatives
# of its own; the check only picks the cheaper one.
#
# On CUDA the balance may differ (matrix products are cheap there and eigh is
# not), which is why skew_matrix_exp has the signature of torch.matrix_exp: a
# caller can pick either per device.


# Note [Higher order derivatives of the skew matrix exponential]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# lam and V are not differentiable with respect to A (they are marked
# non-differentiable outputs), and differentiating eigh would be wrong anyway
# on repeated eigenvalues, where its derivative is singular. So the tangent
# L(A, dA) and the cotangent L(A^H, G) are not computed by plain operations on
# lam and V, whose graph would silently miss the dependence on A, but by a
# second Function, _SkewExpFrechet(A, lam, V, E), which states its own
# derivatives:
#
#   * in E it is linear, and its adjoint is L(A, .) <-> L(A^H, .), computed by
#     _SkewExpFrechet again, so every order in E stays fast;
#   * in A it needs the second derivative
#         L2(Y; P, R) = K(P, R) + K(R, P),
#         K(P, R) = [exp([[Y, P, 0], [0, Y, R], [0, 0, Y]])]_{13},
#     computed with torch.matrix_exp on 3n x 3n blocks, whose derivatives of
#     every order are torch's own. With y = L(X, E) the tangent in X is
#     L2(X; dX, E) and the cotangent is L2(X^H; W, E^H).
#
# This holds for every composition of modes (double backward, forward over
# reverse, reverse over forward, forward over forward, torch.func transforms)
# without asking which one is running, and first derivatives cost a few
# matrix products in all of them. Only a second derivative in A pays for
# exponentials of 3n x 3n blocks.


def _check_skew_input(A: Tensor) -> None:
    if A.dim() < 2 or A.size(-1) != A.size(-2):
        raise ValueError(
            "Expected a batch of square matrices of shape (*, n, n). "
            f"Got a tensor of shape {tuple(A.shape)}."
        )
    if A.dtype not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        raise ValueError(
            "Expected a floating point or complex tensor of dtype float32, float64, "
            f"complex64 or complex128. Got {A.dtype}."
        )


def _factorize(A: Tensor) -> tuple[Tensor, Tensor]:
    # A = V diag(i lam) V^H. eigh reads one triangle of H = -iA only, which is
    # why A must be skew: see Note [Skew matrix exponential via eigh].
    # eigh raises on NaN or inf, where torch.matrix_exp returns NaN, which is
    # what code that watches for a diverged step expects. So eigh sees only
    # finite entries, and lam is NaN for the matrices that had others, which
    # makes their exp(A) and all their derivatives NaN.
    finite = torch.isfinite(A).flatten(-2).all(-1)
    lam, V = torch.linalg.eigh(A.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0) * -1j)
    lam = torch.where(finite.unsqueeze(-1), lam, torch.nan)
    # row-major, for _interleaved
    return lam, V.contiguous()


def _no_autocast(fn):
    # The products of the skew exponential mix real and complex operands and
    # must run in the dtype of A, as torch.matrix_exp does: autocast would cast
    # some of them to a lower precision and then refuse the mixed dtypes.
    # The device comes from the first tensor argument.
    def wrapper(*args, **kwargs):
        with torch.autocast(args[0].device.type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def _interleaved(Z: Tensor) -> Tensor:
    # The (*, n, 2m) real matrix [Re z_11, Im z_11, Re z_12, ...] of a complex
    # (*, n, m) one; a view when Z is row-major. For real E,
    #     _interleaved(E @ Z) = E @ _interleaved(Z)   and
    #     Re(P U^H) = _interleaved(P) @ _interleaved(U)^T,
    # one real product each, at about half the cost of a complex one.
    return torch.view_as_real(Z).reshape(*Z.shape[:-1], 2 * Z.size(-1))


def _times_adjoint(P: Tensor, U: Tensor, real: bool) -> Tensor:
    # P U^H, or its real part when the result is known to be real
    if real:
        return _interleaved(P) @ _interleaved(U).mT
    return P @ U.mH


@_no_autocast
def _exp_from_factors(lam: Tensor, V: Tensor, real: bool) -> Tensor:
    # V diag(exp(i lam)) V^H
    e = torch.complex(torch.cos(lam), torch.sin(lam))
    return _times_adjoint(V * e.unsqueeze(-2), V, real)


@_no_autocast
def _frechet(lam: Tensor, V: Tensor, E: Tensor, adjoint: bool) -> Tensor:
    # L(A, E), or L(A^H, E) if adjoint, as V ((V^H E V) o F) V^H with
    # F = (h h^T) o S, h = exp(i lam / 2) and S_jk = sinc((lam_j - lam_k) / 2pi);
    # conj(F) = (conj(h) conj(h)^T) o S gives the adjoint. See
    # Note [Skew matrix exponential via eigh]. A real E means a real A, and then
    # a real L(A, E).
    real = not E.is_complex()
    half = lam / 2
    h = torch.complex(torch.cos(half), -torch.sin(half) if adjoint else torch.sin(half))
    S = torch.sinc((lam.unsqueeze(-1) - lam.unsqueeze(-2)) / (2 * torch.pi))
    F = S * (h.unsqueeze(-1) * h.unsqueeze(-2))
    if real:
        EV = E @ _interleaved(V)
        EV = torch.view_as_complex(EV.reshape(*EV.shape[:-1], EV.size(-1) // 2, 2))
    else:
        EV = E @ V
    return _times_adjoint(V @ ((V.mH @ EV) * F), V, real)


@_no_autocast
def _expm_frechet2(Y: Tensor, P: Tensor, R: Tensor) -> Tensor:
    # L2(Y; P, R). See Note [Higher order derivatives of the skew matrix exponential].
    shape = torch.broadcast_shapes(Y.shape, P.shape, R.shape)
    Y, P, R = Y.expand(shape), P.expand(shape), R.expand(shape)
    n = Y.size(-1)
    Z = torch.zeros_like(Y)

    def block(B, C):
        return torch.cat(
            [
                torch.cat([Y, B, Z], dim=-1),
                torch.cat([Z, Y, C], dim=-1),
                torch.cat([Z, Z, Y], dim=-1),
            ],
            dim=-2,
        )

    T = torch.stack([block(P, R), block(R, P)])
    K = torch.matrix_exp(T)[..., :n, 2 * n :]
    return K[0] + K[1]


class _SkewExpFrechet(torch.autograd.Function):
    # L(A, E), or L(A^H, E) if adjoint, given the factorisation (lam, V) of A.
    # See Note [Higher order derivatives of the skew matrix exponential].
    generate_vmap_rule = True

    @staticmethod
    def forward(A: Tensor, lam: Tensor, V: Tensor, E: Tensor, adjoint: bool) -> Tensor:
        return _frechet(lam, V, E, adjoint)

    @staticmethod
    def setup_context(ctx, inputs, output):
        A, lam, V, E, adjoint = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(A, lam, V, E)
        ctx.save_for_forward(A, lam, V, E)
        ctx.adjoint = adjoint

    @staticmethod
    def backward(ctx, W):
        if W is None:
            return None, None, None, None, None
        A, lam, V, E = ctx.saved_tensors
        gA = gE = None
        if ctx.needs_input_grad[3]:
            gE = _SkewExpFrechet.apply(A, lam, V, W, not ctx.adjoint)
        if ctx.needs_input_grad[0]:
            # y = L(X, E) with X = A^H or A; the cotangent of X is L2(X^H; W, E^H)
            gX = _expm_frechet2(A if ctx.adjoint else A.mH, W, E.mH)
            gA = gX.mH if ctx.adjoint else gX
        return gA, None, None, gE, None

    @staticmethod
    def jvp(ctx, dA, dlam, dV, dE, dadjoint):
        A, lam, V, E = ctx.saved_tensors
        out = None
        if dE is not None:
            out = _SkewExpFrechet.apply(A, lam, V, dE, ctx.adjoint)
        if dA is not None:
            X, dX = (A.mH, dA.mH) if ctx.adjoint else (A, dA)
            dy = _expm_frechet2(X, dX, E)
            out = dy if out is None else out + dy
        return out


class _SkewMatrixExp(torch.autograd.Function):
    # Returns (exp(A), lam, V); lam and V are non-differentiable outputs that
    # exist so that setup_context can save them, which is how torch.func wants
    # intermediates saved when generate_vmap_rule is set.
    # See Note [Forward AD under torch.compile] for why jvp lives in a subclass.
    generate_vmap_rule = True

    @staticmethod
    def forward(A: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lam, V = _factorize(A)
        Q = _exp_from_factors(lam, V, real=not A.is_complex())
        return Q, lam, V

    @staticmethod
    def setup_context(ctx, inputs, output):
        (A,) = inputs
        _, lam, V = output
        ctx.mark_non_differentiable(lam, V)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(A, lam, V)
        ctx.save_for_forward(A, lam, V)

    @staticmethod
    def backward(ctx, gQ, glam, gV):
        if gQ is None:
            return None
        A, lam, V = ctx.saved_tensors
        if torch.compiler.is_compiling():
            # Compiled graphs support first derivatives only, so there is
            # nothing for _SkewExpFrechet to add, and Dynamo could not trace its jvp.
            return _frechet(lam, V, gQ, adjoint=True)
        return _SkewExpFrechet.apply(A, lam, V, gQ, True)


# Note [Forward AD under torch.compile]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# Dynamo refuses to trace an autograd.Function that defines jvp, and the
# resulting graph break would split every compiled graph that contains the
# orthogonal map. Forward AD is therefore defined in a subclass that eager
# mode uses. Compiled code uses the base class for reverse mode only, and
# torch.matrix_exp, whose forward AD Dynamo supports, whenever a tangent is
# visible. (Dynamo does not show tangents to the traced code today, so a
# compiled call under forward AD takes torch.matrix_exp anyway.)
class _SkewMatrixExpWithJvp(_SkewMatrixExp):
    @staticmethod
    def jvp(ctx, dA):
        A, lam, V = ctx.saved_tensors
        return _SkewExpFrechet.apply(A, lam, V, dA, False), None, None


def _skew_matrix_exp(A: Tensor) -> Tensor:
    r"""torch.matrix_exp for skew-symmetric or skew-Hermitian A, with cheap derivatives.

    exp(A) and its derivatives of every order come from one eigendecomposition
    of the Hermitian -iA when a derivative may be taken, and from
    torch.matrix_exp otherwise. A must be skew; only one triangle is read.
    See Note [Skew matrix exponential via eigh].
    """
    _check_skew_input(A)
    # torch.func.grad, vjp, jvp, jacrev and jacfwd wrap A in tensors that
    # report requires_grad or a tangent. torch.func.vmap hides requires_grad
    # of the tensors it maps over, so autograd through a vmap takes
    # torch.matrix_exp: correct, at upstream's cost.
    wants_grad = torch.is_grad_enabled() and A.requires_grad
    has_tangent = torch.autograd.forward_ad.unpack_dual(A).tangent is not None
    if torch.compiler.is_compiling():
        # See Note [Forward AD under torch.compile]
        if wants_grad and not has_tangent:
            return _SkewMatrixExp.apply(A)[0]
    elif wants_grad or has_tangent:
        return _SkewMatrixExpWithJvp.apply(A)[0]
    # Nothing differentiates exp(A); see Note [Skew matrix exponential via eigh]
    return torch.matrix_exp(A)


def _skew(X):
    # X is tall (..., n, k). Returns the (..., n, n) skew-Hermitian matrix
    # built from the n * k - k * (k - 1) / 2 entries on and below the diagonal.
    n, k = X.size(-2), X.size(-1)
    X = X.tril()
    if n != k:
        X = torch.cat([X, X.new_zeros(n, n - k).expand(*X.shape[:-2], -1, -1)], dim=-1)
    return X - X.mH


def _tall_matrix_exp(X):
    Q = _skew_matrix_exp(_skew(X))
    return Q[..., : X.size(-1)]


def _tall_cayley(X):
    A = _skew(X)
    n = A.size(-1)
    Id = torch.eye(n, dtype=A.dtype, device=A.device)
    # (I + A/2)(I - A/2)^{-1}; the two factors commute.
    Q = _solve(torch.add(Id, A, alpha=-0.5), torch.add(Id, A, alpha=0.5))
    return Q[..., : X.size(-1)]


def _tall_householder(X):
    A = X.tril(diagonal=-1)
    # Reflector j is I - tau_j v_j v_j^H with v_j = e_j + A[:, j], hence
    # tau_j = 2 / |v_j|^2 makes it an exact reflection.
    tau = 2.0 / (1.0 + (A * A).sum(dim=-2))
    Q = torch.linalg.householder_product(A, tau)
    return Q * _householder_sign(X)


class _OrthMaps(Enum):
    matrix_exp = auto()
    cayley = auto()
    householder = auto()


_TALL_MAPS = {
    _OrthMaps.matrix_exp: _tall_matrix_exp,
    _OrthMaps.cayley: _tall_cayley,
    _OrthMaps.householder: _tall_householder,
}


def _check_map_input(X, fn_name):
    if not isinstance(X, Tensor):
        raise TypeError(f"{fn_name}: Expected X to be a Tensor. Got {type(X).__name__}.")
    if X.ndim < 2:
        raise ValueError(
            f"{fn_name}: Expected a matrix or batch of matrices. "
            f"Got a tensor of {X.ndim} dimensions."
        )
    if not (X.is_floating_point() or X.is_complex()):
        raise TypeError(
            f"{fn_name}: Expected a floating point or complex tensor. Got {X.dtype}."
        )


def _apply_map(X, orth_enum):
    # X is (..., n, k) with any n, k. Returns Q of the same shape and dtype.
    if orth_enum == _OrthMaps.householder and X.is_complex():
        raise ValueError(
            "The householder parametrization does not support complex tensors."
        )
    dtype = X.dtype
    if dtype in (torch.float16, torch.bfloat16):
        # The maps lose orthogonality in half precision, and CPU matrix_exp
        # returns inf for small half inputs. Compute in float32.
        X = X.float()
    transposed = X.size(-2) < X.size(-1)
    if transposed:
        X = X.mT
    # X is tall here.
    Q = _TALL_MAPS[orth_enum](X)
    if transposed:
        Q = Q.mT
    return Q.to(dtype)


def matrix_exp_map(X: Tensor) -> Tensor:
    r"""Map a tensor to an orthogonal or unitary one with the matrix exponential.

    For a tall :math:`X \in \mathbb{K}^{n \times k}` (:math:`n \geq k`), the entries
    on and below the diagonal of :math:`X`, padded with zeros to an
    :math:`n \times n` matrix :math:`L`, define the skew-symmetric (skew-Hermitian)
    matrix :math:`A = L - L^{\text{H}}`, and

    .. math::

        Q = \exp(A)\,\mathrm{I}_{n \times k}

    are the first :math:`k` columns of :math:`\exp(A)`. A wide :math:`X` is mapped
    through its transpose, so :math:`Q` has orthonormal rows.

    .. note::
        The map is differentiable (backward, double backward and forward AD) and
        batched over all leading dimensions. It is the map used by
        :func:`orthogonal` with ``orthogonal_map="matrix_exp"``, without the
        trivialization base.

    Args:
        X (Tensor): tensor of shape `(*, n, k)` of floating point or complex dtype.
            ``float16`` and ``bfloat16`` are computed in ``float32``.

    Returns:
        A tensor of the shape and dtype of :attr:`X` with orthonormal columns
        when :math:`n \geq k` and orthonormal rows otherwise.

    Raises:
        TypeError: if :attr:`X` is not a floating point or complex tensor.
        ValueError: if :attr:`X` has fewer than 2 dimensions.

    Example::

        >>> X = torch.randn(3, 5, 5)
        >>> Q = matrix_exp_map(X)
        >>> torch.allclose(Q.mT @ Q, torch.eye(5).expand(3, 5, 5), atol=1e-5)
        True
        >>> matrix_exp_map(torch.zeros(4, 2))
        tensor([[1., 0.],
                [0., 1.],
                [0., 0.],
                [0., 0.]])
    """
    _check_map_input(X, "matrix_exp_map")
    return _apply_map(X, _OrthMaps.matrix_exp)


def cayley_map(X: Tensor) -> Tensor:
    r"""Map a tensor to an orthogonal or unitary one with the Cayley map.

    With the skew-symmetric (skew-Hermitian) :math:`A` built from :math:`X` as in
    :func:`matrix_exp_map`,

    .. math::

        Q = \left(\mathrm{I}_n + \tfrac{1}{2}A\right)
            \left(\mathrm{I}_n - \tfrac{1}{2}A\right)^{-1}\mathrm{I}_{n \times k}.

    .. note::
        On CPU with more than one thread, batched LU factorizations in some torch
        releases return wrong results for batches of large matrices
        (pytorch#142815). This function solves one matrix at a time there (by
        Cholesky under :func:`torch.vmap`, which hides the batch), so its result
        is correct for every batch size, matrix size and thread count.

    Args:
        X (Tensor): tensor of shape `(*, n, k)` of floating point or complex dtype.

    Returns:
        A tensor of the shape and dtype of :attr:`X` with orthonormal columns
        when :math:`n \geq k` and orthonormal rows otherwise.

    Raises:
        TypeError: if :attr:`X` is not a floating point or complex tensor.
        ValueError: if :attr:`X` has fewer than 2 dimensions.

    Example::

        >>> X = torch.randn(2, 3, 6, dtype=torch.complex128)
        >>> Q = cayley_map(X)
        >>> torch.allclose(Q @ Q.mH, torch.eye(3, dtype=Q.dtype).expand(2, 3, 3))
        True
    """
    _check_map_input(X, "cayley_map")
    return _apply_map(X, _OrthMaps.cayley)


def householder_map(X: Tensor) -> Tensor:
    r"""Map a real tensor to an orthogonal one as a product of Householder reflectors.

    For a tall :math:`X \in \mathbb{R}^{n \times k}`, column :math:`j` below the
    diagonal gives the reflector
    :math:`H_j = \mathrm{I}_n - \tau_j v_j v_j^{\top}` with
    :math:`v_j = e_j + X_{j+1:n,\,j}` and :math:`\tau_j = 2 / \lVert v_j \rVert^2`, and

    .. math::

        Q = H_1 H_2 \cdots H_k \,\mathrm{I}_{n \times k}\, \operatorname{diag}(s),
        \qquad s_j = \begin{cases} -1 & X_{jj} < 0 \\ +1 & X_{jj} \geq 0 \end{cases}

    (see :func:`torch.linalg.householder_product`). The diagonal of :math:`X`
    only chooses the sign of each column and gets no gradient.

    .. note::
        ``torch.nn.utils.parametrizations.orthogonal`` up to torch 2.13 truncates
        the diagonal with ``int()``, so a diagonal entry that weight decay moved
        from :math:`-1` to :math:`-0.99` zeroes its column. This map takes the
        sign instead.

    Args:
        X (Tensor): real tensor of shape `(*, n, k)`.

    Returns:
        A tensor of the shape and dtype of :attr:`X` with orthonormal columns
        when :math:`n \geq k` and orthonormal rows otherwise.

    Raises:
        TypeError: if :attr:`X` is not a floating point tensor.
        ValueError: if :attr:`X` has fewer than 2 dimensions or is complex.

    Example::

        >>> X = torch.randn(6, 3)
        >>> Q = householder_map(X)
        >>> torch.allclose(Q.mT @ Q, torch.eye(3), atol=1e-6)
        True
        >>> # A diagonal that weight decay moved off -1 still gives orthonormal columns.
        >>> Q = householder_map(-0.99 * torch.eye(3, 2))
        >>> torch.allclose(Q.mT @ Q, torch.eye(2))
        True
    """
    _check_map_input(X, "householder_map")
    return _apply_map(X, _OrthMaps.householder)


def orthogonal_map(
    X: Tensor, method: str = "matrix_exp", *, blocks: int | None = None
) -> Tensor:
    r"""Map a tensor to an orthogonal or unitary one, optionally block by block.

    Dispatches to :func:`matrix_exp_map`, :func:`cayley_map` or
    :func:`householder_map`. With ``blocks=k``, a tensor of shape `(*, k n, m)` is
    read as the `k` matrices of shape `(n, m)` stacked along dimension `-2`
    (the layout of the gate weights of :class:`~torch.nn.GRU` and
    :class:`~torch.nn.LSTM`), and each of them is mapped.

    Args:
        X (Tensor): tensor of shape `(*, n, m)`, or `(*, k n, m)` with ``blocks=k``.
        method (str, optional): one of ``"matrix_exp"``, ``"cayley"``,
            ``"householder"``. Default: ``"matrix_exp"``.

    Keyword args:
        blocks (int, optional): number of row blocks of :attr:`X`. ``None`` maps
            :attr:`X` as a whole. Default: ``None``.

    Returns:
        A tensor of the shape and dtype of :attr:`X` whose every block has
        orthonormal columns (tall or square blocks) or rows (wide blocks).

    Raises:
        TypeError: if :attr:`X` is not a floating point or complex tensor or
            ``blocks`` is not an int.
        ValueError: if ``method`` is unknown, or ``blocks`` is not positive or does
            not divide the number of rows of :attr:`X`.

    Example::

        >>> W = torch.randn(3 * 4, 4)  # three stacked 4 x 4 gate matrices
        >>> Q = orthogonal_map(W, "cayley", blocks=3)
        >>> [torch.allclose(G.mT @ G, torch.eye(4), atol=1e-6) for G in Q.split(4)]
        [True, True, True]
    """
    _check_map_input(X, "orthogonal_map")
    orth_enum = getattr(_OrthMaps, method, None) if isinstance(method, str) else None
    if orth_enum is None:
        raise ValueError(
            'Expected method to be one of "matrix_exp", "cayley", "householder". '
            f"Got: {method!r}"
        )
    blocks = _check_blocks(blocks, X.shape)
    return _merge_blocks(_apply_map(_split_blocks(X, blocks), orth_enum), blocks)


class _Orthogonal(Module):
    base: Tensor

    def __init__(
        self,
        weight,
        orthogonal_map: _OrthMaps,
        *,
        use_trivialization=True,
        blocks: int | None = None,
    ) -> None:
        super().__init__()

        # Note [Householder complex]
        # A complex Householder reflector is not determined by its vector alone:
        # tau has a free phase. With the vector below the unit diagonal, an
        # n x n complex X gives n(n-1) real parameters, fewer than the n^2 of the
        # unitary group, and learning tau as a separate tensor breaks the
        # constraint for most (X, tau). The same count rules out rectangular
        # complex matrices. So householder is real only.
        if weight.is_complex() and orthogonal_map == _OrthMaps.householder:
            raise ValueError(
                "The householder parametrization does not support complex tensors."
            )

        self.shape = weight.shape
        self.orthogonal_map = orthogonal_map
        self.blocks = _check_blocks(blocks, weight.shape)
        if use_trivialization:
            self.register_buffer("base", None)

    def extra_repr(self) -> str:
        return "" if self.blocks is None else f"blocks={self.blocks}"

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = _split_blocks(X, self.blocks)
        Q = _apply_map(X, self.orthogonal_map)
        if hasattr(self, "base"):
            # The base acts on the long side: Q <- B Q for tall Q, Q <- Q B^T for wide Q.
            if X.size(-2) < X.size(-1):
                Q = (self.base @ Q.mT).mT
            else:
                Q = self.base @ Q
        return _merge_blocks(Q, self.blocks)

    @torch.autograd.no_grad()
    def right_inverse(self, Q: torch.Tensor) -> torch.Tensor:
        if Q.shape != self.shape:
            raise ValueError(
                f"Expected a matrix or batch of matrices of shape {self.shape}. "
                f"Got a tensor of shape {Q.shape}."
            )

        if Q.dtype in (torch.float16, torch.bfloat16):
            # QR has no half kernels on CPU. Compute in float32, store in Q's dtype.
            X = self.right_inverse(Q.float())
            if hasattr(self, "base"):
                self.base = self.base.to(Q.dtype)
            return X.to(Q.dtype)

        Q = _split_blocks(Q, self.blocks)
        Q_init = Q
        n, k = Q.size(-2), Q.size(-1)
        transpose = n < k
        if transpose:
            Q = Q.mT
            n, k = k, n
        # Q is tall here. Every path below returns a new tensor.

        if not hasattr(self, "base"):
            # Note [right_inverse expm cayley]
            # Without a base, right_inverse has to invert the map itself. For
            # householder the QR decomposition does it. For matrix_exp and cayley
            # one would need an X whose (padded, skew) map has Q as its first k
            # columns, and no closed form is known for that, so we refuse.
            if self.orthogonal_map != _OrthMaps.householder:
                raise NotImplementedError(
                    "It is not possible to assign to the matrix exponential "
                    "or the Cayley parametrizations when use_trivialization=False."
                )

            # Real here; see Note [Householder complex].
            H, tau = torch.geqrf(Q)
            # Q = QR and Q' = (-Q)(-R) are both QR decompositions. The sign kept
            # on the diagonal of H picks, via Note [Householder sign], the one
            # with diag(R) >= 0. LAPACK sets tau exactly to 0 when it skips a
            # reflection, and then the column sign flips.
            H.diagonal(dim1=-2, dim2=-1).sign_()
            H.diagonal(dim1=-2, dim2=-1)[tau == 0.0] *= -1
            if transpose:
                H = H.mT
            return _merge_blocks(H, self.blocks)

        if n == k:
            # Keep the blocks that are orthogonal already, orthogonalize the rest.
            # Both shortcuts keep the memory layout upstream gives the base, so
            # that B @ Q rounds the same way.
            keep = _orthogonal_mask(Q)
            if self.blocks is None or self.blocks == 1:
                # Without blocks a batch is kept or orthogonalized as a whole,
                # as upstream does.
                keep = keep.all().expand_as(keep)
            if bool(keep.all()):
                Q = Q.clone()
            elif not bool(keep.any()):
                Q = _make_orthogonal(Q)
            else:
                Q = torch.where(keep[..., None, None], Q, _make_orthogonal(Q))
        else:
            # Complete the k orthonormal directions to an n x n orthogonal base.
            N = torch.randn(
                *Q.shape[:-2], n, n - k, dtype=Q.dtype, device=Q.device
            )
            Q = _make_orthogonal(torch.cat([Q, N], dim=-1))
        self.base = Q

        # Note [Trivialization origin]
        # The original restarts at -I, where every map is the identity, so the
        # parametrized value starts at the base. matrix_exp and cayley see the
        # skew part of -I, which is 0. householder sees zero reflector vectors,
        # whose reflections (tau = 2) flip the sign of each of the first k
        # columns, and the -1 on the diagonal flips them back.
        neg_Id = torch.zeros_like(Q_init)
        neg_Id.diagonal(dim1=-2, dim2=-1).fill_(-1.0)
        return _merge_blocks(neg_Id, self.blocks)


def _rnn_gate_count(module, name):
    # Number of stacked gate matrices if ``name`` is a gate weight of an RNN module.
    if not isinstance(module, torch.nn.RNNBase):
        return None
    if not (name.startswith("weight_ih_l") or name.startswith("weight_hh_l")):
        return None
    return {"LSTM": 4, "GRU": 3}.get(module.mode, 1)


def _warn_not_square(module, name, shape):
    n, m = shape[-2], shape[-1]
    shape = tuple(shape)
    gates = _rnn_gate_count(module, name)
    if gates is not None and gates > 1:
        kind = type(module).__name__
        msg = (
            f"orthogonal: '{name}' of {kind} has shape {shape} and stacks {gates} gate "
            f"matrices of shape {(n // gates, m)} along dim -2. Without blocks, the "
            f"whole {(n, m)} matrix gets orthonormal "
            f"{'columns' if n > m else 'rows'} and no gate matrix is orthogonal. "
            f"Pass blocks={gates} to make each gate matrix orthogonal."
        )
    else:
        msg = (
            f"orthogonal: '{name}' has shape {shape}, which is not square, so the "
            f"parametrized matrix will have orthonormal "
            f"{'columns' if n > m else 'rows'} but will not be orthogonal. If it "
            "stacks k matrices along dim -2, pass blocks=k to make each of them "
            "orthogonal. Pass blocks=1 to keep this behaviour without this warning."
        )
    warnings.warn(msg, UserWarning, stacklevel=3)


def orthogonal(
    module: Module,
    name: str = "weight",
    orthogonal_map: str | None = None,
    *,
    use_trivialization: bool = True,
    blocks: int | None = None,
) -> Module:
    r"""Apply an orthogonal or unitary parametrization to a matrix, a batch of matrices, or their row blocks.

    With :math:`\mathbb{K}` either :math:`\mathbb{R}` or :math:`\mathbb{C}`, the
    parametrized matrix :math:`Q \in \mathbb{K}^{m \times n}` satisfies

    .. math::

        Q^{\text{H}} Q = \mathrm{I}_n \quad \text{for } m \geq n,
        \qquad
        Q Q^{\text{H}} = \mathrm{I}_m \quad \text{for } m < n,

    where :math:`Q^{\text{H}}` is the conjugate transpose (the transpose for real
    :math:`Q`). So :math:`Q` is orthogonal (unitary) when it is square, and has
    orthonormal columns (tall) or rows (wide) otherwise. A tensor with more than
    two dimensions is a batch of matrices of shape `(..., m, n)`.

    **Blocks.** With ``blocks=k``, a tensor of shape `(..., k m, n)` is read as
    `k` matrices of shape `(m, n)` stacked along dimension `-2`, and each of them
    is constrained as above. This is the layout of the gate weights of
    :class:`~torch.nn.RNN`, :class:`~torch.nn.GRU` (``blocks=3``: :math:`r, z, n`)
    and :class:`~torch.nn.LSTM` (``blocks=4``: :math:`i, f, g, o`). Without
    ``blocks``, such a stacked weight is constrained as one tall matrix, and
    none of its gates is orthogonal; a non-square tensor therefore warns
    unless ``blocks`` is given. ``blocks=1`` is the behaviour without ``blocks``,
    without the warning.

    ``orthogonal_map`` chooses how :math:`Q` is computed from the original
    tensor (see :func:`orthogonal_map`, which exposes the same maps):

    - ``"matrix_exp"``/``"cayley"``: the :func:`~torch.matrix_exp`
      :math:`Q = \exp(A)` or the `Cayley map <https://en.wikipedia.org/wiki/Cayley_transform#Matrix_map>`_
      :math:`Q = (\mathrm{I}_n + A/2)(\mathrm{I}_n - A/2)^{-1}` of a
      skew-symmetric (skew-Hermitian) :math:`A`;
    - ``"householder"``: a product of Householder reflectors
      (:func:`~torch.linalg.householder_product`), real tensors only.

    ``"matrix_exp"``/``"cayley"`` often make the parametrized weight converge
    faster than ``"householder"``, but are slower for very thin or very wide
    matrices.

    With ``use_trivialization=True`` (default), the parametrization follows the
    "Dynamic Trivialization Framework": an extra matrix
    :math:`B \in \mathbb{K}^{N \times N}`, :math:`N = \max(m, n)`, per matrix
    (per block) is stored in
    ``module.parametrizations.weight[0].base`` and :math:`Q` is :math:`B` times
    the map of the original tensor. This helps convergence at the cost of some
    memory. See `Lezcano-Casado (2019) <https://arxiv.org/abs/1909.09501>`_.

    Initial value of :math:`Q`: if the tensor is not parametrized yet and
    ``use_trivialization=True``, or ``orthogonal_map="householder"``, each
    matrix (each block) keeps its value if it is orthogonal already and is
    replaced by the Q factor of its QR decomposition (:func:`torch.linalg.qr`,
    normalised to a non-negative diagonal of R) otherwise. Assigning to the
    parametrized tensor does the same. Otherwise, the initial value is the
    composition of all registered parametrizations applied to the original tensor.

    .. note::
        The constraint is registered with
        :func:`~torch.nn.utils.parametrize.register_parametrization`, so the
        unconstrained tensor lives in ``module.parametrizations[name].original``.


    Args:
        module (nn.Module): the module that holds the tensor.
        name (str, optional): name of the parameter or buffer to constrain.
            Default: ``"weight"``.
        orthogonal_map (str, optional): one of ``"matrix_exp"``, ``"cayley"``,
            ``"householder"``. Default: ``"matrix_exp"`` if the matrix (the block,
            with ``blocks``) is square or complex, ``"householder"`` otherwise.

    Keyword args:
        use_trivialization (bool, optional): whether to use the dynamic
            trivialization framework. Default: ``True``.
        blocks (int, optional): number of matrices stacked along dimension `-2`,
            each of which is made orthogonal. ``3`` for the gate weights of
            :class:`~torch.nn.GRU`, ``4`` for :class:`~torch.nn.LSTM`.
            Default: ``None`` (the tensor is one matrix or a batch of matrices).

    Returns:
        The original module with an orthogonal parametrization registered to the
        specified tensor.

    Raises:
        ValueError: if the module has no tensor ``name``, the tensor has fewer
            than 2 dimensions, ``orthogonal_map`` is unknown, householder is asked
            for a complex tensor, or ``blocks`` does not divide dimension `-2`.
        TypeError: if ``blocks`` is not an int.

    Warns:
        UserWarning: if ``blocks`` is not given and the matrix is not square.

    Example::

        >>> orth_linear = orthogonal(nn.Linear(20, 20))
        >>> Q = orth_linear.weight
        >>> # xdoctest: +IGNORE_WANT
        >>> torch.dist(Q.T @ Q, torch.eye(20))
        tensor(4.9332e-07)
        >>> gru = orthogonal(nn.GRU(8, 8), "weight_hh_l0", blocks=3)
        >>> W_hr, W_hz, W_hn = gru.weight_hh_l0.detach().split(8)
        >>> torch.allclose(W_hn.T @ W_hn, torch.eye(8), atol=1e-5)
        True
    """
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(
            f"Module '{module}' has no parameter or buffer with name '{name}'"
        )

    # 1-d tensors could use maps onto the sphere, but a silent reinterpretation
    # of a vector would surprise more users than it would help.
    if weight.ndim < 2:
        raise ValueError(
            "Expected a matrix or batch of matrices. "
            f"Got a tensor of {weight.ndim} dimensions."
        )

    blocks = _check_blocks(blocks, weight.shape)
    n = weight.size(-2) // (1 if blocks is None else blocks)
    k = weight.size(-1)
    if blocks is None and n != k:
        _warn_not_square(module, name, weight.shape)

    if orthogonal_map is None:
        orthogonal_map = "matrix_exp" if n == k or weight.is_complex() else "householder"

    orth_enum = getattr(_OrthMaps, orthogonal_map, None)
    if orth_enum is None:
        raise ValueError(
            'orthogonal_map has to be one of "matrix_exp", "cayley", "householder". '
            f"Got: {orthogonal_map}"
        )
    orth = _Orthogonal(
        weight, orth_enum, use_trivialization=use_trivialization, blocks=blocks
    )
    parametrize.register_parametrization(module, name, orth, unsafe=True)
    return module
