"""Checks of block-orthogonal parametrizations that run against any module.

``run_block_checks(P)`` takes a module with the API of
``torch.nn.utils.parametrizations`` (``orthogonal`` with ``blocks``, and the
public maps) and raises ``AssertionError`` on the first failure. Our suite runs
it against ``torch_ortho_patch.parametrizations``, and shows that torch's own
module fails it. The tests that go upstream with each patch are in
``upstream_tests.py``.
"""

import torch
from torch import nn


GATES = {nn.RNN: 1, nn.GRU: 3, nn.LSTM: 4}


class Counting(nn.Module):
    """Identity parametrization that counts its evaluations."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, X):
        self.calls += 1
        return X * 1.0


def block_orthogonality_error(Q, blocks=None):
    """Largest entry of Q_b^H Q_b - I (tall blocks) or Q_b Q_b^H - I (wide) over all blocks."""
    Q = Q.detach()
    if blocks is not None:
        Q = Q.unflatten(-2, (blocks, -1))
    if Q.numel() == 0:
        return 0.0
    if Q.size(-2) < Q.size(-1):
        Q = Q.mH
    Id = torch.eye(Q.size(-1), dtype=Q.dtype, device=Q.device)
    return (Q.mH @ Q - Id).abs().max().item()


def orthogonality_tol(Q, blocks=None):
    # A product of n rotations accumulates about n roundings of size eps.
    n = max(Q.size(-2) // (blocks or 1), Q.size(-1))
    return 10.0 * max(n, 1) * torch.finfo(Q.dtype).eps


def check_blocks_orthogonal(Q, blocks, what=""):
    err = block_orthogonality_error(Q, blocks)
    tol = orthogonality_tol(Q, blocks)
    if not err <= tol:
        raise AssertionError(f"{what}: block orthogonality error {err} > {tol}")


def rnn_gate_weights(rnn):
    """Names of the gate weights of an RNN module (weight_ih_l*, weight_hh_l*)."""
    return [
        name
        for name in rnn._flat_weights_names
        if name.startswith("weight_ih") or name.startswith("weight_hh")
    ]


def check_rnn(P, cls, orthogonal_map=None, **kwargs):
    """Parametrize every gate weight of an RNN module and check it end to end."""
    torch.manual_seed(0)
    rnn = cls(**kwargs)
    blocks = GATES[cls]
    names = rnn_gate_weights(rnn)
    for name in names:
        P.orthogonal(rnn, name, orthogonal_map, blocks=blocks)
    for name in names:
        check_blocks_orthogonal(getattr(rnn, name), blocks, f"{cls.__name__}.{name}")

    # The forward really uses the parametrized weights: a plain copy of the module
    # with the parametrized values as parameters gives the same output.
    plain = cls(**kwargs)
    with torch.no_grad():
        for name in rnn._flat_weights_names:
            getattr(plain, name).copy_(getattr(rnn, name))
    x = torch.randn(5, 2, kwargs["input_size"])
    out, _ = rnn(x)
    expected, _ = plain(x)
    if not torch.allclose(out, expected, atol=1e-6):
        raise AssertionError(f"{cls.__name__}: forward does not use the parametrized weights")

    # Gradients reach the unconstrained originals.
    out.square().sum().backward()
    for name in names:
        grad = getattr(rnn.parametrizations, name).original.grad
        if grad is None or not grad.abs().sum() > 0:
            raise AssertionError(f"{cls.__name__}.{name}: no gradient reached original")
    return rnn


def check_adamw_householder(P):
    """Weight decay must not zero a non-square householder weight (the householder-sign patch)."""
    torch.manual_seed(0)
    for use_trivialization in (True, False):
        m = nn.Linear(3, 7)
        P.orthogonal(m, orthogonal_map="householder", use_trivialization=use_trivialization, blocks=1)
        opt = torch.optim.AdamW(m.parameters())  # weight_decay=1e-2 by default
        for _ in range(3):
            opt.zero_grad()
            m(torch.randn(4, 3)).square().sum().backward()
            opt.step()
        check_blocks_orthogonal(m.weight, 1, "householder after AdamW")


def check_cayley_two_threads(P, n=256):
    """The batched Cayley map must be right where CPU batched LU is not. See Note [CPU batched LU]."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        X = torch.randn(3 * n, n, requires_grad=True)
        Q = P.cayley_map(X.unflatten(0, (3, n)))
        check_blocks_orthogonal(Q, None, "cayley_map, batch 3, 2 threads")
        Qb = P.orthogonal_map(X, "cayley", blocks=3)
        # One matrix at a time is the reference: unbatched LU is not affected.
        for i, Xi in enumerate(X.detach().split(n)):
            if not torch.allclose(Qb[i * n : (i + 1) * n], P.cayley_map(Xi), atol=1e-6):
                raise AssertionError("batched cayley differs from per-matrix cayley")
        Qb.sum().backward()
        if not torch.isfinite(X.grad).all():
            raise AssertionError("cayley backward is not finite with 2 threads")
        # Under vmap the batch is hidden from the map, and still must not reach
        # the batched LU.
        Xs = X.detach().unflatten(0, (3, n))
        Qv = torch.vmap(P.cayley_map)(Xs)
        check_blocks_orthogonal(Qv, None, "vmap(cayley_map), 2 threads")
        if not torch.allclose(Qv, P.cayley_map(Xs), atol=1e-5):
            raise AssertionError("vmap(cayley_map) differs from cayley_map")
    finally:
        torch.set_num_threads(threads)


def run_block_checks(P):
    """Run every check against the parametrizations module ``P``."""
    for orthogonal_map in ("matrix_exp", "cayley", "householder"):
        check_rnn(P, nn.GRU, orthogonal_map, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    check_rnn(P, nn.LSTM, None, input_size=5, hidden_size=4, proj_size=2)
    check_rnn(P, nn.RNN, None, input_size=4, hidden_size=4)
    check_adamw_householder(P)
    check_cayley_two_threads(P)
    W = torch.randn(2, 12, 3)
    for method in ("matrix_exp", "cayley", "householder"):
        check_blocks_orthogonal(P.orthogonal_map(W, method, blocks=4), 4, method)
