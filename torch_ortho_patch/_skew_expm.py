# mypy: allow-untyped-defs
r"""The matrix exponential of skew-symmetric and skew-Hermitian matrices.

:func:`skew_matrix_exp` computes ``torch.matrix_exp(A)`` for a skew ``A`` and, when
a derivative may be taken, takes the value and its derivatives of every order
from one eigendecomposition: of the real symmetric ``A^T A`` for a real ``A``,
of the Hermitian ``-iA`` for a complex one. See
Note [Skew matrix exponential via eigh].
"""

import math

import torch
from torch import Tensor


__all__ = ["skew_matrix_exp"]


# Note [Skew matrix exponential via eigh]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# Splitting the power series of exp into its even and odd terms gives, for
# every square A,
#
#     exp(A) = C(A^2) + A Sn(A^2),   C(t) = cos(sqrt(-t)),  Sn(t) = sinc(sqrt(-t)),
#
# with C and Sn entire (sinc(x) = sin(x) / x). If A^H = -A, then A^2 = -S for
# the Hermitian positive semidefinite S = A^H A, so with S = U diag(mu) U^H
# from eigh and sigma = sqrt(mu),
#
#     exp(A) = (U diag(cos sigma) + (A U) diag(sinc sigma)) U^H.
#
# For a real A, S, U and every product are real: one real symmetric eigh and
# three real matrix products, where the eigenvectors of A itself would be
# complex. This holds for any orthonormal eigenbasis U, so eigenvalues that
# coincide or vanish, as every skew matrix of odd size has and every A at the
# trivialization origin does, need no pairing or special case.
#
# For a complex A the split gains nothing: A^H A is then complex Hermitian, and
# its eigh costs as much as one of the Hermitian -iA, which gives the
# eigenvectors of A itself, A = V diag(i lam) V^H. So a complex A takes that
# route: exp(A) = V diag(exp(i lam)) V^H, and the derivative of a function of
# a normal matrix acts entrywise in its eigenbasis,
# L(A, E) = V ((V^H E V) o F) V^H with F_jk = h_j h_k sinc((lam_j - lam_k) / 2)
# and h = exp(i lam / 2), conjugated for the adjoint (_frechet_eig): one
# complex product forward and four backward, no cancellation, and F_jj =
# exp(i lam_j) on repeated eigenvalues. The rest of this Note is about the split.
#
# The derivatives follow from the same split. For a Hermitian T = U diag(t) U^H
# and a real function f, the Frechet derivative of f at T in any direction D is
# L_f(T, D) = U ((U^H D U) o F_f) U^H with the divided differences
# F_f[j, k] = (f(t_j) - f(t_k)) / (t_j - t_k), and f'(t_j) where t_j = t_k.
# With T = A^2 and D = A E + E A,
#
#     L(A, E) = L_C(T, D) + E Sn(T) + A L_Sn(T, D),
#
# and the backward L(A^H, G), the adjoint of E -> L(A, E), is
#
#     A^H K + K A^H + G Sn(T),   K = L_C(T, G) + L_Sn(T, A^H G).
#
# Both are linear in E (in G) for any E, skew or not, so the gradient is the
# unprojected gradient of torch.matrix_exp at A; the projection onto skew
# matrices happens through autograd in the caller, which builds A = X - X^H
# differentiably. Each costs seven matrix products; see _frechet_split.
#
# The divided differences are evaluated without cancellation. With
# a = sigma_j, b = sigma_k, s = (a + b) / 2 and d = (a - b) / 2,
# F_C[j, k] = sinc(s) sinc(d) / 2 exactly, and F_Sn, a divided difference of
# sinc, takes a different form near its diagonal than away from it
# (_divided_differences). In single precision a cheaper scheme, accurate to a
# few eps in absolute terms, which is all the products can use, takes a
# third of the elementwise work (_divided_differences_single); at n = 64 that
# work is as costly as the products.
#
# Accuracy. eigh is backward stable for S, whose norm is ||A||^2, so exp(A)
# carries errors of order eps ||A||^2 rather than the eps ||A|| of an
# eigendecomposition of A itself. At the ||A||_2 of order one of training the
# two agree. Measured in float32 for (3, 64, 64) against float64
# torch.matrix_exp, the orthogonality error max |Q^T Q - I| was 1.6e-6 at
# ||A||_2 = 3, 3.7e-6 at 10, 3.1e-5 at 30 and 1.5e-4 at 100. A complex eigh
# of the Hermitian -iA, which gives the eigenvectors of A itself, keeps it
# below 2e-6 up to 100, but costs 2.1 to 2.5 times as much as this one (for
# n = 64 to 256), and its eigenvectors make every product complex.
#
# Why the forward uses eigh rather than torch.matrix_exp. On one CPU thread,
# for A of shape (3, 256, 256) in float32, torch.matrix_exp cost 17 ms forward
# and 150 ms forward + backward, because its backward exponentiates a 2n x 2n
# block matrix. The factorisation (A^T A, its eigh and A U) cost 10 ms, and
# the forward from it 12 ms: less than torch.matrix_exp's forward from n = 128
# on. Keeping torch.matrix_exp in the forward, for values bitwise equal to it,
# would pay for both, 40 ms forward + backward against 22 ms. So the forward
# uses the factorisation that the backward reuses, and exp(A) agrees with
# torch.matrix_exp to round-off rather than bitwise (within 10 * n * eps in the
# tests, at ||A||_2 of order one).
#
# When nothing can differentiate the result (grad mode is off or A does not
# require grad, and A carries no forward-mode tangent) the factorisation would
# be wasted. We call torch.matrix_exp then, so inference computes exactly
# torch.matrix_exp(A). Either path is correct in every mode, since
# torch.matrix_exp has derivatives of its own; the check only picks the
# cheaper one.


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
# The factors are not differentiable with respect to A (they are marked
# non-differentiable outputs), and differentiating eigh would be wrong anyway
# on repeated eigenvalues, where its derivative is singular. So the tangent
# L(A, dA) and the cotangent L(A^H, G) are not computed by plain operations on
# the factors, whose graph would silently miss the dependence on A, but by a
# second Function, _SkewExpFrechet(A, E, adjoint, *factors), which states its own
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


def _no_autocast(fn):
    # The products of the skew exponential must run in the dtype of A, as
    # torch.matrix_exp does: autocast would cast some of them to a lower
    # precision and lose the orthogonality that they compute.
    # The device comes from the first tensor argument.
    def wrapper(*args, **kwargs):
        device_type = args[0].device.type
        if not torch.is_autocast_enabled(device_type):
            return fn(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


@_no_autocast
def _factorize(A: Tensor) -> tuple[Tensor, ...]:
    # The factors of A that the rest takes: (sigma, U, A U) of the even/odd
    # split for a real A, (lam, V) of an eigendecomposition of A for a complex
    # one. See Note [Skew matrix exponential via eigh].
    if A.dtype.is_complex:
        return _factorize_eig(A)
    return _factorize_split(A)


def _factorize_split(A: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    # S = A^H A = U diag(sigma^2) U^H; returns sigma, U and A U. See
    # Note [Skew matrix exponential via eigh]. eigh reads one triangle of S.
    # eigh raises on NaN or inf, where torch.matrix_exp returns NaN, which is
    # what code that watches for a diverged step expects. S has a non-finite
    # entry exactly when A has one (S_jj sums |A_ij|^2 over the column j) or
    # when A is so large that torch.matrix_exp overflows as well, and the
    # sum of S is non-finite exactly then, up to an overflow of that sum at
    # the same scale. Such matrices reach eigh as zeros, and their sigma is
    # NaN, which makes their exp(A) and all their derivatives NaN.
    finite, S = _finite_or_zero(A.mH @ A)
    mu, U = torch.linalg.eigh(S)
    # eigh may return -eps * ||S|| for a zero eigenvalue
    sigma = torch.where(finite.unsqueeze(-1), mu.clamp(min=0).sqrt(), torch.nan)
    return sigma, U, A @ U


def _finite_or_zero(M: Tensor) -> tuple[Tensor, Tensor]:
    # Which matrices of the batch are finite (their sum is), and M with the
    # others set to zero, for eigh; see _factorize_split.
    finite = torch.isfinite(M.sum((-2, -1)))
    return finite, torch.where(finite.unsqueeze(-1).unsqueeze(-1), M, 0.0)


def _factorize_eig(A: Tensor) -> tuple[Tensor, Tensor]:
    # A = V diag(i lam) V^H from the Hermitian -iA, whose eigh reads one
    # triangle. Non-finite matrices as in _factorize_split.
    finite, A = _finite_or_zero(A)
    lam, V = torch.linalg.eigh(A * -1j)
    return torch.where(finite.unsqueeze(-1), lam, torch.nan), V


def _has_tangent(T: Tensor) -> bool:
    return torch.autograd.forward_ad.unpack_dual(T).tangent is not None


def _sinc(x: Tensor) -> Tensor:
    # sin(x) / x, and 1 at 0; a NaN stays NaN
    return torch.where(x == 0, 1.0, torch.sin(x) / x)


def _series(x2: Tensor, coefficients: list[float]) -> Tensor:
    # sum_k coefficients[k] * x2^k, by Horner's rule
    out = torch.full_like(x2, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * x2 + c
    return out


# _BESSEL_SERIES[k][m] = (-1/2)^m / (m! (2m + 2k + 1)!!), the Taylor coefficients
# in x^2 of j_k(x) / x^k, for k <= 3 and m < 16.
_BESSEL_SERIES = [
    [
        (-0.5) ** m / (math.factorial(m) * math.prod(range(1, 2 * m + 2 * k + 2, 2)))
        for m in range(16)
    ]
    for k in range(4)
]


def _bessel_ratios(sigma: Tensor, kmax: int) -> Tensor:
    # u_k(x) = j_k(x) / x^k for x >= 0 and k = 0, ..., kmax along a new last
    # dimension, with j_k the spherical Bessel functions, in double precision:
    # u_0 = sinc, and u_k(0) = 1 / (2k + 1)!!. Up to x = 2 we sum the Taylor series
    # u_k(x) = sum_m (-x^2 / 2)^m / (m! (2m + 2k + 1)!!), whose 16 terms leave
    # out less than 1e-22 and whose largest term is 1; above, the upward
    # recurrence j_{k+1} = (2k + 1) / x j_k - j_{k-1}, which for k <= 3
    # amplifies rounding by at most 15 / 8 there.
    x = sigma.double()
    small = x <= 2
    xs = torch.where(small, x, 0.0)
    xl = torch.where(small, 2.0, x)
    coefficients = torch.tensor(
        _BESSEL_SERIES[: kmax + 1], dtype=torch.float64, device=x.device
    ).mT
    m = torch.arange(coefficients.size(-2), dtype=torch.float64, device=x.device)
    series = (xs * xs).unsqueeze(-1).pow(m) @ coefficients
    j_prev, j = torch.cos(xl) / xl, torch.sin(xl) / xl
    recurrence = [j]
    for order in range(1, kmax + 1):
        j_prev, j = j, (2 * order - 1) / xl * j - j_prev
        recurrence.append(j / xl**order)
    return torch.where(small.unsqueeze(-1), series, torch.stack(recurrence, dim=-1))


# Taylor coefficients in x^2 of omega(x) = (1 - sinc x) / x^2,
# (-1)^(k+1) / (2k+1)! for k >= 1. Below |x| = 1, where the quotient cancels,
# the first term left out after 9 is below double precision eps relative to
# omega(0) = 1/6.
_OMEGA_SERIES = [(-1) ** (k + 1) / math.factorial(2 * k + 1) for k in range(1, 10)]


def _omega(x: Tensor) -> Tensor:
    # The series below |x| = 1, the quotient above.
    x2 = x * x
    small = x2 < 1
    safe = torch.where(small, 1.0, x)
    return torch.where(
        small, _series(x2, _OMEGA_SERIES), (1 - _sinc(safe)) / (safe * safe)
    )


def _psi(x: Tensor) -> Tensor:
    # (sinc(x) - cos(x)) / x^2 = j_1(x) / x, even in x and 1/3 at 0
    return _bessel_ratios(x.abs(), 1)[..., 1].to(x.dtype)


def _divided_differences(sigma: Tensor) -> tuple[Tensor, Tensor]:
    # F_C and F_Sn of Note [Skew matrix exponential via eigh], at t = -sigma^2,
    # to the relative accuracy of double precision:
    #   F_C[j, k]  = (cos a - cos b) / (b^2 - a^2)   = sinc(s) sinc(d) / 2,
    #   F_Sn[j, k] = (sinc a - sinc b) / (b^2 - a^2),
    # with a = sigma_j, b = sigma_k, s = (a + b) / 2 and d = (a - b) / 2, so that
    # a = s + d, b = s - d and b^2 - a^2 = -4 s d. For F_Sn two forms avoid the
    # cancellation of its quotient:
    #   * near the diagonal, |d| <= s / 2 (a and b within a factor 3), the
    #     quotient equals (s^2 psi(s) cos d - d^2 psi(d) cos s) / (2 a b) with
    #     psi(x) = (sinc x - cos x) / x^2, whose denominator is at least 3 s^2 / 2;
    #     divided by s^2 it stays finite at s = 0, where F_Sn = psi(0) / 2 = 1/6;
    #   * away from it, sinc x = 1 - x^2 omega(x) with omega(x) = (1 - sinc x) / x^2
    #     gives (b^2 omega(b) - a^2 omega(a)) / (b^2 - a^2), whose two terms
    #     differ by a factor of more than 9 for small a and b, and whose
    #     denominator is at least max(a, b)^2 / 2.
    a = sigma.unsqueeze(-1)
    b = sigma.unsqueeze(-2)
    s = (a + b) / 2
    d = (a - b) / 2
    F_C = _sinc(s) * _sinc(d) / 2
    near = 2 * d.abs() <= s
    r = torch.where(s == 0, 0.0, d / torch.where(s == 0, 1.0, s))
    F_near = (_psi(s) * torch.cos(d) - r * r * _psi(d) * torch.cos(s)) / (
        2 * (1 - r * r)
    )
    wa = a * a * _omega(a)
    wb = b * b * _omega(b)
    den = torch.where(near, 1.0, b * b - a * a)
    F_far = (wb - wa) / den
    return F_C, torch.where(near, F_near, F_far)


def _divided_differences_single(sigma: Tensor) -> tuple[Tensor, Tensor]:
    # F_C and F_Sn of Note [Skew matrix exponential via eigh] to absolute
    # accuracy, which is what the products need, in a third of the elementwise
    # work of _divided_differences. For f in {C, Sn}, with t = -sigma^2:
    #   * where |t_j - t_k| > 1/2, the quotient of f(t_j) - f(t_k), both of
    #     modulus at most 1 and rounded once, is within 4 eps of F;
    #   * where |t_j - t_k| <= 1/2, the mean of f' at t_j and t_k, corrected by
    #     -(t_j - t_k)^2 / 12 times the mean of f''', leaves out
    #     (2/15) f^(5) ((t_j - t_k) / 2)^4, below 2e-8 since |f^(5)| <= 1 / 30240.
    # C' = Sn / 2, and Sn^(k)(t) = u_k(sigma) / 2^k with u_k of _bessel_ratios.
    # t_j - t_k = (sigma_k - sigma_j) (sigma_k + sigma_j) keeps its relative
    # accuracy for large sigma, where t_j itself has rounded away most of it.
    u = _bessel_ratios(sigma, 3)
    cos = torch.cos(sigma.double())
    # along the new dimension -2: C, then Sn
    f = torch.stack([cos, u[..., 0]], dim=-2).to(sigma.dtype)
    first = (torch.stack([u[..., 0], u[..., 1]], dim=-2) / 4).to(sigma.dtype)
    third = (torch.stack([u[..., 2], u[..., 3]], dim=-2) / 192).to(sigma.dtype)
    a = sigma.unsqueeze(-1)
    b = sigma.unsqueeze(-2)
    dt = ((b - a) * (b + a)).unsqueeze(-3)
    near = dt.abs() <= 0.5
    F_far = (f.unsqueeze(-1) - f.unsqueeze(-2)) / torch.where(near, 1.0, dt)
    F_near = (first.unsqueeze(-1) + first.unsqueeze(-2)) - dt * dt * (
        third.unsqueeze(-1) + third.unsqueeze(-2)
    )
    F = torch.where(near, F_near, F_far)
    return F[..., 0, :, :], F[..., 1, :, :]


@_no_autocast
def _exp_from_factors(*factors: Tensor) -> Tensor:
    if len(factors) == 2:
        # V diag(exp(i lam)) V^H
        lam, V = factors
        return (V * torch.complex(torch.cos(lam), torch.sin(lam)).unsqueeze(-2)) @ V.mH
    # (U diag(cos sigma) + A U diag(sinc sigma)) U^H
    sigma, U, AU = factors
    c = torch.cos(sigma).unsqueeze(-2)
    sn = _sinc(sigma).unsqueeze(-2)
    return (U * c + AU * sn) @ U.mH


@_no_autocast
def _frechet(E: Tensor, factors: tuple[Tensor, ...], adjoint: bool) -> Tensor:
    # L(A, E), or L(A^H, E) if adjoint, given the factors of _factorize.
    if len(factors) == 2:
        return _frechet_eig(*factors, E, adjoint)
    return _frechet_split(*factors, E, adjoint)


def _frechet_eig(lam: Tensor, V: Tensor, E: Tensor, adjoint: bool) -> Tensor:
    # V ((V^H E V) o F) V^H with F_jk = h_j h_k sinc((lam_j - lam_k) / 2) and
    # h = exp(i lam / 2), conjugated if adjoint; see the Note.
    half = lam / 2
    h = torch.complex(torch.cos(half), -torch.sin(half) if adjoint else torch.sin(half))
    F = _sinc(half.unsqueeze(-1) - half.unsqueeze(-2)) * (
        h.unsqueeze(-1) * h.unsqueeze(-2)
    )
    return V @ ((V.mH @ (E @ V)) * F) @ V.mH


def _frechet_split(
    sigma: Tensor, U: Tensor, AU: Tensor, E: Tensor, adjoint: bool
) -> Tensor:
    # L(A, E), or L(A^H, E) if adjoint, from the formulas of
    # Note [Skew matrix exponential via eigh], in seven matrix products each.
    # U^H A = -(A U)^H and A^H = -A, as A is skew.
    if sigma.dtype == torch.float32:
        F_C, F_Sn = _divided_differences_single(sigma)
    else:
        F_C, F_Sn = _divided_differences(sigma)
    sn = _sinc(sigma).unsqueeze(-2)
    EU = E @ U
    if adjoint:
        # A^H K + K A^H + E Sn with K = U M U^H and
        # M = (U^H E U) o F_C + ((A U)^H E U) o F_Sn:
        #   A^H K = -(A U) M U^H,   K A^H = (U M) (A U)^H.
        M = (U.mH @ EU) * F_C + (AU.mH @ EU) * F_Sn
        return (EU * sn - AU @ M) @ U.mH + (U @ M) @ AU.mH
    # D = A E + E A, and U^H D U = -(A U)^H (E U) + (U^H E) (A U); then
    # L_C(T, D) + A L_Sn(T, D) + E Sn = (U M_C + (A U) M_Sn + (E U) diag(sinc)) U^H.
    D = (E.mH @ U).mH @ AU - AU.mH @ EU
    return (U @ (D * F_C) + AU @ (D * F_Sn) + EU * sn) @ U.mH


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
    # L(A, E), or L(A^H, E) if adjoint, given the factors of A (_factorize).
    # See Note [Higher order derivatives of the skew matrix exponential].
    generate_vmap_rule = True

    @staticmethod
    def forward(A: Tensor, E: Tensor, adjoint: bool, *factors: Tensor) -> Tensor:
        return _frechet(E, factors, adjoint)

    @staticmethod
    def setup_context(ctx, inputs, output):
        A, E, adjoint, *factors = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(A, E, *factors)
        ctx.save_for_forward(A, E, *factors)
        ctx.adjoint = adjoint

    @staticmethod
    def backward(ctx, W):
        A, E, *factors = ctx.saved_tensors
        none = (None,) * (1 + len(factors))
        if W is None:
            return (None, None) + none
        gA = gE = None
        if ctx.needs_input_grad[1]:
            gE = _SkewExpFrechet.apply(A, W, not ctx.adjoint, *factors)
        if ctx.needs_input_grad[0]:
            # y = L(X, E) with X = A^H or A; the cotangent of X is L2(X^H; W, E^H)
            gX = _expm_frechet2(A if ctx.adjoint else A.mH, W, E.mH)
            gA = gX.mH if ctx.adjoint else gX
        return (gA, gE) + none

    @staticmethod
    def jvp(ctx, dA, dE, dadjoint, *dfactors):
        A, E, *factors = ctx.saved_tensors
        out = None
        if dE is not None:
            out = _SkewExpFrechet.apply(A, dE, ctx.adjoint, *factors)
        if dA is not None:
            X, dX = (A.mH, dA.mH) if ctx.adjoint else (A, dA)
            dy = _expm_frechet2(X, dX, E)
            out = dy if out is None else out + dy
        return out


class _SkewMatrixExp(torch.autograd.Function):
    # Returns exp(A) and the factors of _factorize, which are non-differentiable
    # outputs that exist so that setup_context can save them, which is how
    # torch.func wants intermediates saved when generate_vmap_rule is set.
    # See Note [Forward AD under torch.compile] for why jvp lives in a subclass.
    generate_vmap_rule = True

    @staticmethod
    def forward(A: Tensor) -> tuple[Tensor, ...]:
        factors = _factorize(A)
        return (_exp_from_factors(*factors), *factors)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (A,) = inputs
        factors = output[1:]
        ctx.mark_non_differentiable(*factors)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(A, *factors)
        ctx.save_for_forward(A, *factors)

    @staticmethod
    def backward(ctx, gQ, *gfactors):
        if gQ is None:
            return None
        A, *factors = ctx.saved_tensors
        if torch.compiler.is_compiling():
            # Compiled graphs support first derivatives only, so there is
            # nothing for _SkewExpFrechet to add, and Dynamo could not trace its jvp.
            return _frechet(gQ, tuple(factors), adjoint=True)
        if not torch.is_grad_enabled() and not _has_tangent(gQ) and not _has_tangent(A):
            # A first derivative only (no create_graph, no forward AD over it):
            # nothing will differentiate the result, so skip the Function that
            # would state its derivatives. It costs more than the products at
            # small n.
            return _frechet(gQ, tuple(factors), adjoint=True)
        return _SkewExpFrechet.apply(A, gQ, True, *factors)


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
        A, *factors = ctx.saved_tensors
        return (_SkewExpFrechet.apply(A, dA, False, *factors),) + (None,) * len(factors)


def skew_matrix_exp(A: Tensor) -> Tensor:
    r"""Return ``torch.matrix_exp(A)`` for a skew-symmetric or skew-Hermitian ``A``.

    On the devices of Note [Devices for the eigh path], ``exp(A)`` and its
    derivatives of every order come from one eigendecomposition (of
    :math:`A^T A` for a real ``A``, of :math:`-iA` for a complex one) when a
    derivative may be taken, and from :func:`torch.matrix_exp` otherwise. ``A``
    must be skew: the eigh path relies on :math:`A^2 = -A^H A` and reads one
    triangle. See Note [Skew matrix exponential via eigh].
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
