# mypy: allow-untyped-defs
r"""``python -m torch_ortho_patch check``: a short, live report on this machine.

Everything printed is measured when the command runs: torch's own
:func:`~torch.nn.utils.parametrizations.orthogonal` and ours are applied to the same
weights and their errors are compared. The exit status is non-zero when one of
*our* errors is above its tolerance; torch's errors are only reported.
"""

import contextlib
import ctypes
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
import torch.nn as nn


__all__: list[str] = []

_HIDDEN = 32  # hidden size of the GRU and LSTM that are checked
_CAYLEY_SHAPE = (3, 256, 256)
_CAYLEY_THREADS = 2


class Row(NamedTuple):
    what: str
    torch_error: float | str  # a number, or the exception torch raised
    ours_error: float | str
    tol: float
    key: str = ""  # names the row in the JSON of as_json

    @property
    def ok(self) -> bool:
        return isinstance(self.ours_error, float) and self.ours_error <= self.tol


def _tol(n: int, dtype: torch.dtype = torch.float32) -> float:
    # The Frobenius norm of an n x n error whose entries are a few ulps each is
    # about n * eps; allow a factor 100 for the maps' own rounding.
    return 100.0 * n * torch.finfo(dtype).eps


def _gram_error(Q: torch.Tensor) -> float:
    r"""Return max over the batch of ``||Q^H Q - I||_F`` (``Q`` tall or square)."""
    Q = Q.detach()
    if Q.size(-2) < Q.size(-1):
        Q = Q.mT
    Id = torch.eye(Q.size(-1), dtype=Q.dtype, device=Q.device)
    return torch.linalg.matrix_norm(Q.mH @ Q - Id).max().item()


def _torch_orthogonal() -> Callable:
    from . import _install

    return _install._torch_orthogonal()


def _ours() -> Callable:
    from .parametrizations import orthogonal

    return orthogonal


def _torch_init_orthogonal() -> Callable:
    from . import _install

    return _install._torch_init_orthogonal()


def _ours_init() -> Callable:
    from .init import orthogonal_

    return orthogonal_


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    r"""Send file descriptor 1 to the null device (LAPACK prints its errors there)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


@contextlib.contextmanager
def _num_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _guard(fn: Callable[[], float]) -> float | str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn())
    except Exception as e:  # report what torch (or we) raised, do not stop
        return f"{type(e).__name__}"


def _gates(orthogonal: Callable, cls: type, k: int, blocks: int | None) -> float:
    torch.manual_seed(0)
    rnn = cls(_HIDDEN, _HIDDEN)
    if blocks is None:
        orthogonal(rnn, "weight_hh_l0")
    else:
        orthogonal(rnn, "weight_hh_l0", blocks=blocks)
    with torch.no_grad():
        W = rnn.weight_hh_l0.unflatten(0, (k, -1))
    return _gram_error(W)


def _init_gates(orthogonal_: Callable, cls: type, k: int, blocks: int | None) -> float:
    # The common idiom: nn.init.orthogonal_ on the stacked gate weight itself.
    torch.manual_seed(0)
    rnn = cls(_HIDDEN, _HIDDEN)
    if blocks is None:
        orthogonal_(rnn.weight_hh_l0)
    else:
        orthogonal_(rnn.weight_hh_l0, blocks=blocks)
    return _gram_error(rnn.weight_hh_l0.unflatten(0, (k, -1)))


def _householder_adamw(orthogonal: Callable) -> float:
    # One AdamW step with its default weight decay moves the diagonal of the
    # unconstrained householder weight off +-1.
    torch.manual_seed(0)
    layer = orthogonal(nn.Linear(3, 6), orthogonal_map="householder")
    opt = torch.optim.AdamW(layer.parameters())
    layer(torch.randn(8, 3)).pow(2).sum().backward()
    opt.step()
    return _gram_error(layer.weight)


def _batched_cayley(orthogonal: Callable) -> float:
    # Compare one batched evaluation with the same map applied matrix by matrix.
    torch.manual_seed(0)
    module = nn.Module()
    module.weight = nn.Parameter(torch.randn(*_CAYLEY_SHAPE))
    orthogonal(module, "weight", "cayley", use_trivialization=False)
    X = module.parametrizations.weight.original.detach()
    parametrization = module.parametrizations.weight[0]
    with torch.no_grad(), _num_threads(_CAYLEY_THREADS), _quiet_stdout():
        Q = parametrization(X)
        reference = torch.stack([parametrization(x) for x in X])
    error = (Q - reference).abs().max().item()
    return error if math.isfinite(error) else float("inf")


def measure() -> list[Row]:
    r"""Measure torch's ``orthogonal`` and ours on the cases of the report."""
    upstream, ours = _torch_orthogonal(), _ours()
    upstream_init, ours_init = _torch_init_orthogonal(), _ours_init()
    n = _CAYLEY_SHAPE[-1]
    return [
        Row(
            f"GRU weight_hh_l0, H={_HIDDEN}, 3 gates: max_g ||W_g^T W_g - I||",
            _guard(lambda: _gates(upstream, nn.GRU, 3, None)),
            _guard(lambda: _gates(ours, nn.GRU, 3, 3)),
            _tol(_HIDDEN),
            "gru",
        ),
        Row(
            f"LSTM weight_hh_l0, H={_HIDDEN}, 4 gates: max_g ||W_g^T W_g - I||",
            _guard(lambda: _gates(upstream, nn.LSTM, 4, None)),
            _guard(lambda: _gates(ours, nn.LSTM, 4, 4)),
            _tol(_HIDDEN),
            "lstm",
        ),
        Row(
            f"nn.init.orthogonal_ GRU weight_hh_l0, H={_HIDDEN}: max_g ||W_g^T W_g - I||",
            _guard(lambda: _init_gates(upstream_init, nn.GRU, 3, None)),
            _guard(lambda: _init_gates(ours_init, nn.GRU, 3, 3)),
            _tol(_HIDDEN),
            "init_gru",
        ),
        Row(
            f"nn.init.orthogonal_ LSTM weight_hh_l0, H={_HIDDEN}: max_g ||W_g^T W_g - I||",
            _guard(lambda: _init_gates(upstream_init, nn.LSTM, 4, None)),
            _guard(lambda: _init_gates(ours_init, nn.LSTM, 4, 4)),
            _tol(_HIDDEN),
            "init_lstm",
        ),
        Row(
            "householder (6, 3), one AdamW step: ||Q^T Q - I||",
            _guard(lambda: _householder_adamw(upstream)),
            _guard(lambda: _householder_adamw(ours)),
            _tol(6),
            "householder_adamw",
        ),
        Row(
            f"cayley {_CAYLEY_SHAPE}, {_CAYLEY_THREADS} threads: "
            "max |batched - per matrix|",
            _guard(lambda: _batched_cayley(upstream)),
            _guard(lambda: _batched_cayley(ours)),
            _tol(n),
            "cayley_batched",
        ),
    ]


def _fmt(value: float | str) -> str:
    return f"{value:.1e}" if isinstance(value, float) else value


def report(rows: list[Row]) -> str:
    r"""Format the rows of :func:`measure` as a table."""
    width = max(len(r.what) for r in rows)
    head = f"{'':{width}}  {'torch':>12}  {'ours':>12}  {'tol':>7}"
    lines = [
        "Errors in float32, Frobenius norms. torch: torch's orthogonal and "
        "nn.init.orthogonal_; ours: torch_ortho_patch (blocks=3 and 4 for the RNN "
        "gates).",
        head,
    ]
    for r in rows:
        lines.append(
            f"{r.what:{width}}  {_fmt(r.torch_error):>12}  {_fmt(r.ours_error):>12}  "
            f"{r.tol:>7.1e}  {'ok' if r.ok else 'FAIL'}"
        )
    return "\n".join(lines)


def applicability() -> list[str]:
    r"""Say whether :func:`install` would patch this torch, and which parts of it.

    The same checks as :func:`install`: the version floor, then what this torch has.
    """
    from . import _install, _rnn

    try:
        _install._check_torch_version()
    except RuntimeError as e:
        return [f"patch applies to this torch: no. {e}"]
    if _install._torch_has_blocks():
        return ["patch applies to this torch: no, torch's orthogonal already takes `blocks`"]
    if _rnn.applies():
        rnn = "yes"
    else:
        rnn = "no, RNNBase does not have the methods it replaces in the form it expects"
    if _install._takes_blocks(_install._torch_init_orthogonal()):
        init = "no, torch's nn.init.orthogonal_ already takes `blocks`"
    else:
        init = "yes"
    return [
        "patch applies to this torch: yes",
        f"RNN read-once fix applies: {rnn}",
        f"nn.init.orthogonal_ with blocks applies: {init}",
    ]


def as_json(rows: list[Row]) -> dict:
    r"""The report as a JSON object: where it ran, and each row's errors."""
    from . import __version__

    return {
        "format": 1,
        "header": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "torch": torch.__version__,
            "torch_ortho_patch": __version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        "rows": [
            {"key": r.key, "what": r.what, "torch": r.torch_error, "ours": r.ours_error, "tol": r.tol, "ok": r.ok}
            for r in rows
        ],
    }


def main(json_path: str | None = None) -> int:
    r"""Print the report and return 0 when all of our errors are within tolerance.

    With ``json_path``, also write :func:`as_json` of the rows there.
    """
    from . import __version__, _install

    print(f"torch_ortho_patch {__version__}")
    print(
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"{torch.get_num_threads()} threads"
    )
    print("\n".join(applicability()))
    print(f"installed: {'yes' if _install.is_installed() else 'no'}")
    print()
    rows = measure()
    print(report(rows))
    if json_path is not None:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(as_json(rows), f, indent=1)
            f.write("\n")
    bad = [r for r in rows if not r.ok]
    print()
    if bad:
        print(f"FAIL: {len(bad)} of our errors above tolerance")
        return 1
    print("OK: all of our errors within tolerance")
    return 0
