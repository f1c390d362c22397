# mypy: allow-untyped-defs
r"""The matrix exponential of skew-symmetric and skew-Hermitian matrices.

:func:`skew_matrix_exp` computes ``torch.matrix_exp(A)`` for a skew ``A`` and, when
a derivative may be taken, takes the value and its derivatives of every order
from one Hermitian eigendecomposition. See Note [Skew matrix exponential via eigh].
"""

import torch
from torch import Tensor


__all__ = ["skew_matrix_exp"]


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
# forward, for values bitwise equal to it, and calling eigh in the backward
# pays for both factorisations: 52 to 60 ms in all. Computing exp(A) from the
# eigh that the backward reuses pays for one: 43 to 44 ms. So the forward uses
# eigh too, and exp(A) agrees with torch.matrix_exp to round-off rather than
# bitwise (within 10 * n * eps in the tests).
#
# When nothing can differentiate the result (grad mode is off or A does not
# require grad, and A carries no forward-mode tangent) the factorisation would
# be wasted, and torch.matrix_exp alone is 1.4 to 2 times faster than eigh.
# We call it then, so inference computes exactly torch.matrix_exp(A).
# Either path is correct in every mode, since torch.matrix_exp has derivatives
# of its own; the check only picks the cheaper one.


# Note [Devices for the eigh path]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The trade-off above was measured on CPU. On CUDA, matrix products are cheap
# and cuSOLVER's eigh is comparatively slow, so the eigh path may lose there,
# and it has not been measured yet. skew_matrix_exp therefore takes the eigh
# path only on the device types in _EIGH_DEVICES and calls torch.matrix_exp
# elsewhere, which can never be slower than torch.matrix_exp. The meta device
# is left out as well: it has no eigh to run. Adding a device type to the set
# is the one switch to flip once it has been measured there.
_EIGH_DEVICES = frozenset({"cpu"})


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
    # A matrix has a non-finite entry exactly when the sum of its entries is
    # non-finite, unless finite entries beyond about 1e34 (in float32) overflow
    # the sum, where torch.matrix_exp overflows as well. One sum costs a third
    # of an isfinite() of every entry at n = 64.
    finite = torch.isfinite(A.sum((-2, -1)))
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
        device_type = args[0].device.type
        if not torch.is_autocast_enabled(device_type):
            return fn(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def _has_tangent(T: Tensor) -> bool:
    return torch.autograd.forward_ad.unpack_dual(T).tangent is not None


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
    # F = (h h^T) o S, h = exp(i lam / 2) and S_jk = sin(d) / d for
    # d = (lam_j - lam_k) / 2, and 1 where d = 0; conj(F) = (conj(h) conj(h)^T) o S
    # gives the adjoint. See Note [Skew matrix exponential via eigh]. A real E
    # means a real A, and then a real L(A, E).
    real = not E.dtype.is_complex
    half = lam / 2
    h = torch.complex(torch.cos(half), -torch.sin(half) if adjoint else torch.sin(half))
    # sin(d) / d is accurate down to d = 0, where it is 0 / 0 and set to 1: the
    # same values as torch.sinc(d / pi), at less than half its cost. A NaN in lam
    # reaches F through h all the same.
    d = half.unsqueeze(-1) - half.unsqueeze(-2)
    S = torch.sin(d).div_(d).nan_to_num_(nan=1.0)
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
        Q = _exp_from_factors(lam, V, real=not A.dtype.is_complex)
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
        if not torch.is_grad_enabled() and not _has_tangent(gQ) and not _has_tangent(A):
            # A first derivative only (no create_graph, no forward AD over it):
            # nothing will differentiate the result, so skip the Function that
            # would state its derivatives. It costs more than the products at
            # small n.
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


def skew_matrix_exp(A: Tensor) -> Tensor:
    r"""Return ``torch.matrix_exp(A)`` for a skew-symmetric or skew-Hermitian ``A``.

    On the devices of Note [Devices for the eigh path], ``exp(A)`` and its
    derivatives of every order come from one eigendecomposition of the
    Hermitian :math:`-iA` when a derivative may be taken, and from
    :func:`torch.matrix_exp` otherwise. ``A`` must be skew: with the eigh path
    only one triangle is read. See Note [Skew matrix exponential via eigh].
    """
    _check_skew_input(A)
    if A.device.type not in _EIGH_DEVICES:
        return torch.matrix_exp(A)
    # torch.func.grad, vjp, jvp, jacrev and jacfwd wrap A in tensors that
    # report requires_grad or a tangent. torch.func.vmap hides requires_grad
    # of the tensors it maps over, so autograd through a vmap takes
    # torch.matrix_exp: correct, at its cost.
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
