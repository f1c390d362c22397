# mypy: allow-untyped-defs
r"""``python -m torch_ortho_patch bench``: time block-orthogonal parametrizations.

Everything is measured side by side in one process, with
:mod:`torch.utils.benchmark`, and reported as ratios, which are what survive a
shared, noisy machine. Absolute times are printed too, but on a CPU they only
describe this machine at this moment.

1. **Maps.** For each map and size `n`, a `(k n, n)` weight parametrized with
   ``torch_ortho_patch.orthogonal(m, "weight", map, blocks=k)`` ("ours"), torch's
   ``orthogonal`` on the equivalent `(k, n, n)` parameter ("upstream") and `k`
   separate torch parametrizations of `(n, n)` weights ("loop"). A last row per
   size times what users get today on a stacked `(k n, n)` weight: torch's
   ``orthogonal`` with its default map for non-square matrices (householder).
   Each is timed forward with autograd recording ("fwd"), forward and
   backward ("fwd+bwd") and forward under :func:`torch.no_grad` ("infer").
2. **RNN training step.** One forward, backward and SGD step of an
   :class:`~torch.nn.GRU` and an :class:`~torch.nn.LSTM` whose ``weight_hh_l0``
   is block-orthogonal, against the same step without the constraint.
3. **Start-up.** ``import torch_ortho_patch``, ``install()`` and
   ``uninstall()`` in fresh processes, with the runtime cache filled and empty
   (:mod:`torch_ortho_patch._bench_startup`).
4. **Goals.** R1, R2 and S1 to S4 (see :data:`GOALS`), printed with their targets.

Run ``python -m torch_ortho_patch bench --help`` for the options. The results
can be written as JSON with ``--json`` and plotted with ``benchmarks/plot.py``.
"""

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
import torch.nn as nn
from torch.utils.benchmark import Timer

from ._check import _quiet_stdout


__all__ = ["main", "run", "GOALS"]

_PROG = "python -m torch_ortho_patch bench"
_MAPS = ("matrix_exp", "cayley", "householder")
_BLOCKS = 3  # k of the maps section: the gate count of a GRU
_SIZES = (64, 128, 256, 512)
_QUICK_SIZES = (16,)
# RNN section: (class name, gate count); hidden = input size.
_RNNS = (("GRU", 3), ("LSTM", 4))
_RNN_SHAPE = {"hidden": 256, "seq": 50, "batch": 32}
_QUICK_RNN_SHAPE = {"hidden": 8, "seq": 4, "batch": 2}
_QUICK_MIN_RUN_TIME = 0.002


class Goal(NamedTuple):
    name: str
    description: str
    target: float  # PASS when the measured ratio is at most this


GOALS = (
    Goal(
        "R1-64",
        "ours matrix_exp fwd+bwd, blocks=3 on (192, 64) / torch's orthogonal "
        "matrix_exp on (3, 64, 64)",
        0.5,
    ),
    Goal("R1-128", "the same at n = 128", 0.35),
    Goal("R1-256", "the same at n = 256", 0.3),
    Goal("R1-512", "the same at n = 512", 0.25),
    Goal(
        "R2-GRU-installed",
        "GRU(256, 256) training step with block-orthogonal weight_hh_l0, "
        "install() in effect / unconstrained step",
        1.7,
    ),
    Goal(
        "R2-GRU-direct",
        "the same with tp.orthogonal called directly, no install()",
        1.7,
    ),
    Goal("R2-LSTM-installed", "LSTM(256, 256), install() in effect", 2.3),
    Goal("R2-LSTM-direct", "LSTM(256, 256), tp.orthogonal directly", 2.3),
    # Start-up, in milliseconds: medians over fresh processes.
    Goal(
        "S1-import-warm",
        "ms of import torch_ortho_patch after import torch, runtime cache filled",
        100,
    ),
    Goal("S2-import-cold", "the same with the runtime cache empty", 500),
    Goal("S3-install", "ms of install() in a fresh process, cache filled", 20),
    Goal("S4-uninstall", "ms of uninstall() right after it", 20),
)


# Note [Benchmark inputs]
# ~~~~~~~~~~~~~~~~~~~~~~~
# orthogonal() resets the original tensor to -I (see Note [Trivialization
# origin] in parametrizations.py), where matrix_exp and cayley see a zero skew
# matrix. torch.matrix_exp picks its polynomial degree and number of squarings
# from the norm of its input, so timing at the origin would flatter it. Every
# parametrization timed here gets the same original -I + E instead, with E of
# i.i.d. N(0, 1/n) entries below the diagonal and zeros elsewhere: a skew
# matrix of norm about 2, a rotation by angles of order one, as after some
# training. The diagonal stays at exactly -1 because torch's householder map
# truncates it with int() (see _patches/householder_sign.py): -0.99 there would
# zero a column, and the check of the results would report torch as wrong for
# a reason that has nothing to do with speed. The householder and cayley maps
# cost the same for any input.
#
# "fwd" is the evaluation of the parametrized weight with autograd recording,
# as in a training step; "fwd+bwd" adds the backward of <Q, G> for a fixed
# random G; "infer" is the evaluation under torch.no_grad(), as in inference.
# Our matrix_exp map computes torch.matrix_exp in every mode and changes only
# the backward (see Note [Backward of the skew matrix exponential]), so it
# matches upstream in "fwd" and "infer". Gradients accumulate across calls, which
# costs one addition per parameter for every variant alike.


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({_cpu_model()})"


def _matrix_exp_impl() -> str:
    # What our matrix_exp map runs, read off the autograd graph that it records:
    # torch.matrix_exp, or a custom autograd Function (such as the skew
    # exponential _SkewMatrixExpWithJvp under autograd).
    from .parametrizations import matrix_exp_map

    X = torch.randn(2, 4, 4, requires_grad=True)
    found, seen, stack = [], set(), [matrix_exp_map(X).grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ in ("MatrixExpBackward0", "LinalgMatrixExpBackward0"):
            found.append("torch.matrix_exp")
        forward_cls = getattr(node, "_forward_cls", None)  # a custom Function
        if forward_cls is not None:
            found.append(f"{forward_cls.__module__}.{forward_cls.__qualname__}")
        try:
            inputs = node.next_functions
        except RuntimeError:
            # The node of a custom Function hides its inputs on older torch (2.4);
            # the Function itself has been recorded above.
            continue
        stack += [next_node for next_node, _ in inputs]
    return ", ".join(sorted(set(found))) or "unknown"


def _header(device: torch.device, threads: int) -> dict[str, Any]:
    from . import __version__

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "torch": torch.__version__,
        "torch_ortho_patch": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": threads,
        "cpu": _cpu_model(),
        "device": _device_name(device),
        "dtype": "float32",
        "ours_matrix_exp": _matrix_exp_impl(),
    }


# ---------------------------------------------------------------------------
# Measuring


class _Variant(NamedTuple):
    name: str
    fn: Callable[[], Any]
    # True: run with torch_ortho_patch.install() in effect; False: without it.
    patched: bool = False


@contextlib.contextmanager
def _patch_state(patched: bool) -> Iterator[None]:
    from ._install import install, is_installed, uninstall

    was = is_installed()
    if patched and not was:
        install()
    elif was and not patched:
        uninstall()
    try:
        yield
    finally:
        if is_installed() != was:
            (install if was else uninstall)()


def _stats(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    if len(times) >= 4:
        q = statistics.quantiles(times, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = times[-1] - times[0]
    return {"median": statistics.median(times), "iqr": iqr, "samples": len(times)}


def _measure(
    variants: list[_Variant], *, threads: int, min_run_time: float, rounds: int
) -> dict[str, dict[str, float] | str]:
    r"""Time the variants round-robin and return per-variant statistics.

    Each round times every variant once, alternating the order, so a slow drift
    of the machine's load touches every variant alike: with
    :meth:`~torch.utils.benchmark.Timer.blocked_autorange`, or, for a variant
    whose warm-up call alone took ``min_run_time``, with one call of
    :meth:`~torch.utils.benchmark.Timer.timeit` (blocked_autorange would spend
    a second, unrecorded call estimating its block size). The median is taken
    over the blocks of all rounds. A round in which a variant raises (torch's
    batched LU does, now and then; see pytorch#142815) is dropped and counted
    in ``"raised"``; a variant that raised in every round is reported as
    ``"error: <exception name>"``.
    """
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    per_round: dict[str, list[float | None]] = {v.name: [] for v in variants}
    raised: dict[str, int] = {v.name: 0 for v in variants}
    slow: dict[str, bool] = {v.name: False for v in variants}
    last_error: dict[str, str] = {}
    for v in variants:
        try:
            with _patch_state(v.patched):
                start = time.perf_counter()
                v.fn()  # warm-up, and lazy initialisation
                slow[v.name] = time.perf_counter() - start >= min_run_time
        except Exception as e:
            last_error[v.name] = type(e).__name__
    for r in range(rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            timer = Timer("fn()", globals={"fn": v.fn}, num_threads=threads)
            try:
                with _patch_state(v.patched):
                    if slow[v.name]:
                        m = timer.timeit(number=1)
                    else:
                        m = timer.blocked_autorange(min_run_time=min_run_time)
            except Exception as e:
                raised[v.name] += 1
                last_error[v.name] = type(e).__name__
                per_round[v.name].append(None)
                continue
            times[v.name].extend(m.times)
            per_round[v.name].append(m.median)
    results: dict[str, dict[str, float] | str] = {}
    for v in variants:
        if times[v.name]:
            results[v.name] = {
                **_stats(times[v.name]),
                "raised": raised[v.name],
                "rounds": per_round[v.name],
            }
        else:
            results[v.name] = f"error: {last_error.get(v.name, 'no samples')}"
    return results


def _pairs(result: dict[str, Any], a: str, b: str) -> list[float]:
    # The ratio of the medians of variants a and b in each round where both ran.
    ra, rb = result.get(a), result.get(b)
    if not (isinstance(ra, dict) and isinstance(rb, dict)):
        return []
    return [
        x / y
        for x, y in zip(ra["rounds"], rb["rounds"])
        if x is not None and y is not None and y > 0
    ]


def _ratio(result: dict[str, Any], a: str, b: str) -> float | None:
    r"""Return the time of variant ``a`` over that of ``b``, paired by round.

    The median over rounds of the ratio of the two medians of each round. The
    two variants of a pair ran close together in time, so a change of the
    machine's load that lasts longer than a round cancels out, which it does not
    in the ratio of the overall medians.
    """
    pairs = _pairs(result, a, b)
    return statistics.median(pairs) if pairs else None


# ---------------------------------------------------------------------------
# Section 1: maps


class _Weight(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)


def _torch_orthogonal() -> Callable:
    from ._install import _torch_orthogonal

    return _torch_orthogonal()


def _set_original(module: nn.Module, X: torch.Tensor) -> None:
    with torch.no_grad():
        module.parametrizations.weight.original.copy_(X)


def _original(E: torch.Tensor) -> torch.Tensor:
    # -I + (strictly lower part of E) / sqrt(n). See Note [Benchmark inputs].
    n = E.size(-1)
    Id = torch.eye(n, dtype=E.dtype, device=E.device)
    return E.tril(-1) / math.sqrt(n) - Id


def _gram_error(Q: torch.Tensor) -> float:
    # max over the batch of max |Q^T Q - I| for tall or square Q; nan counts as wrong.
    Q = Q.detach()
    if Q.size(-2) < Q.size(-1):
        Q = Q.mT
    Id = torch.eye(Q.size(-1), dtype=Q.dtype, device=Q.device)
    error = (Q.mT @ Q - Id).abs().max().item()
    return error if math.isfinite(error) else float("inf")


def _checked(fn: Callable[[], torch.Tensor]) -> float | str:
    # The gate error of fn(), or the name of the exception it raised.
    try:
        with torch.no_grad():
            return _gram_error(fn())
    except Exception as e:
        return type(e).__name__


def _is_wrong(error: float | str, tol: float) -> bool:
    return not (isinstance(error, float) and error <= tol)


def _orth_tol(n: int) -> float:
    # A few ulps per entry of a sum of n products, and a factor 100 for the maps'
    # own rounding; a wrong result is off by O(1).
    return 100.0 * n * torch.finfo(torch.float32).eps


def _map_row(
    map_name: str, n: int, k: int, device: torch.device, seed: int
) -> tuple[dict[str, Callable], dict[str, Callable], dict[str, float]]:
    r"""Build the modules of one (map, n) row of the maps section.

    Returns the forward and forward + backward callables per variant, and the
    orthogonality error of each variant's k gate blocks.
    """
    from .parametrizations import orthogonal as ours

    upstream = _torch_orthogonal()
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device)

    # See Note [Benchmark inputs]
    X = _original(randn(k, n, n))
    G = randn(k, n, n)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m_ours = ours(_Weight(randn(k * n, n)), "weight", map_name, blocks=k)
        m_up = upstream(_Weight(randn(k, n, n)), "weight", map_name)
        m_loop = [upstream(_Weight(randn(n, n)), "weight", map_name) for _ in range(k)]
    _set_original(m_ours, X.flatten(0, 1))
    _set_original(m_up, X)
    for i, m in enumerate(m_loop):
        _set_original(m, X[i])
    G_flat = G.flatten(0, 1)

    def ours_fwd():
        return m_ours.weight

    def ours_bwd():
        (m_ours.weight * G_flat).sum().backward()

    def up_fwd():
        return m_up.weight

    def up_bwd():
        (m_up.weight * G).sum().backward()

    def loop_fwd():
        return [m.weight for m in m_loop]

    def loop_bwd():
        sum((m.weight * G[i]).sum() for i, m in enumerate(m_loop)).backward()

    errors = {
        "ours": _checked(lambda: m_ours.weight.unflatten(0, (k, n))),
        "upstream": _checked(lambda: m_up.weight),
        "loop": _checked(lambda: torch.stack([m.weight for m in m_loop])),
    }
    fwd = {"ours": ours_fwd, "upstream": up_fwd, "loop": loop_fwd}
    bwd = {"ours": ours_bwd, "upstream": up_bwd, "loop": loop_bwd}
    return fwd, bwd, errors


def _stacked_row(
    n: int, k: int, device: torch.device, seed: int
) -> tuple[dict[str, Callable], dict[str, Callable], dict[str, float]]:
    r"""Build what a user gets today on a stacked (k n, n) weight, next to ours.

    ``ours`` is our default map with ``blocks=k`` (matrix_exp, the blocks are
    square), ``ours_householder`` the same with householder, and
    ``upstream_stacked`` torch's ``orthogonal`` on the (k n, n) weight with its
    default map (householder, as the weight is not square).
    """
    from .parametrizations import orthogonal as ours

    upstream = _torch_orthogonal()
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device)

    X = _original(randn(k, n, n)).flatten(0, 1)
    G = randn(k * n, n)
    W = randn(k * n, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m_ours = ours(_Weight(W.clone()), "weight", blocks=k)
        m_hh = ours(_Weight(W.clone()), "weight", "householder", blocks=k)
        m_up = upstream(_Weight(W.clone()), "weight")
    _set_original(m_ours, X)
    _set_original(m_hh, X)

    modules = {"ours": m_ours, "ours_householder": m_hh, "upstream_stacked": m_up}

    def fwd_of(m):
        return lambda: m.weight

    def bwd_of(m):
        return lambda: (m.weight * G).sum().backward()

    # The error of the k gate blocks; upstream only gives the whole (k n, n)
    # matrix orthonormal columns, so its gates are not expected to pass.
    errors = {
        name: _checked(lambda m=m: m.weight.unflatten(0, (k, n)))
        for name, m in modules.items()
    }
    fwd = {name: fwd_of(m) for name, m in modules.items()}
    bwd = {name: bwd_of(m) for name, m in modules.items()}
    return fwd, bwd, errors


def _without_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
    def call():
        with torch.no_grad():
            return fn()

    return call


def _bench_maps(sizes, k, device, threads, min_run_time, rounds, log) -> list[dict]:
    rows = []
    for n in sizes:
        for map_name in (*_MAPS, "stacked"):
            seed = 1000 * n + len(rows)
            if map_name == "stacked":
                fwd, bwd, errors = _stacked_row(n, k, device, seed)
            else:
                fwd, bwd, errors = _map_row(map_name, n, k, device, seed)
            tol = _orth_tol(n)
            infer = {name: _without_grad(fn) for name, fn in fwd.items()}
            for mode, fns in (("fwd", fwd), ("fwd+bwd", bwd), ("infer", infer)):
                log(f"maps: {map_name} n={n} {mode}")
                variants = [_Variant(name, fn) for name, fn in fns.items()]
                result = _measure(
                    variants,
                    threads=threads,
                    min_run_time=min_run_time,
                    rounds=rounds,
                )
                row: dict[str, Any] = {
                    "map": map_name,
                    "n": n,
                    "blocks": k,
                    "mode": mode,
                    "shape_ours": [k * n, n],
                    "times": result,
                    "gate_error": errors,
                    "tol": tol,
                    # A variant whose k gate blocks are not orthogonal.
                    "wrong": sorted(
                        name for name, e in errors.items() if _is_wrong(e, tol)
                    ),
                }
                if map_name == "stacked":
                    row["ratio_ours_upstream"] = _ratio(
                        result, "ours", "upstream_stacked"
                    )
                    row["ratio_ours_householder_upstream"] = _ratio(
                        result, "ours_householder", "upstream_stacked"
                    )
                else:
                    row["ratio_ours_upstream"] = _ratio(result, "ours", "upstream")
                    row["ratio_ours_loop"] = _ratio(result, "ours", "loop")
                against = "upstream_stacked" if map_name == "stacked" else "upstream"
                row["ratio_ours_upstream_rounds"] = _pairs(result, "ours", against)
                rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# Section 2: RNN training step


def _rnn_step_variants(
    kind: str, k: int, shape: dict[str, int], device: torch.device, seed: int
) -> tuple[list[_Variant], dict[str, int | None]]:
    r"""Build one training step per variant of an RNN of class ``kind``.

    Variants: ``unconstrained``; ``ours_installed`` (ours with ``blocks=k``, timed
    with :func:`torch_ortho_patch.install` in effect, which amends ``RNNBase``);
    ``ours_direct`` (the same parametrization from ``tp.orthogonal``, timed
    without install(): it amends the parametrized RNN's own class);
    ``upstream_stacked`` (torch's ``orthogonal`` on the stacked weight, its
    default householder map, without install(): what users get today).

    Also returns how many times each parametrization runs per forward.
    """
    from .parametrizations import orthogonal as ours

    upstream = _torch_orthogonal()
    H, seq, batch = shape["hidden"], shape["seq"], shape["batch"]
    cls = getattr(nn, kind)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(seq, batch, H, generator=g).to(device)
    G = torch.randn(seq, batch, H, generator=g).to(device)
    # See Note [Benchmark inputs]
    X = _original(torch.randn(k, H, H, generator=g)).flatten(0, 1)

    def make():
        torch.manual_seed(seed)
        return cls(H, H).to(device)

    rnns = {"unconstrained": make()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rnns["ours_installed"] = ours(make(), "weight_hh_l0", blocks=k)
        rnns["ours_direct"] = ours(make(), "weight_hh_l0", blocks=k)
        rnns["upstream_stacked"] = upstream(make(), "weight_hh_l0")
    for name in ("ours_installed", "ours_direct"):
        with torch.no_grad():
            rnns[name].parametrizations.weight_hh_l0.original.copy_(X.to(device))
    patched = {"ours_installed": True}

    def step_of(rnn):
        opt = torch.optim.SGD(rnn.parameters(), lr=1e-4)

        def step():
            out, _ = rnn(x)
            (out * G).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    variants = [
        _Variant(name, step_of(rnn), patched.get(name, False))
        for name, rnn in rnns.items()
    ]

    # How often each parametrization runs in one forward.
    evals: dict[str, int | None] = {"unconstrained": None}
    for name, rnn in rnns.items():
        if name == "unconstrained":
            continue
        count = [0]
        p = rnn.parametrizations.weight_hh_l0[0]
        handle = p.register_forward_hook(lambda *_, c=count: c.__setitem__(0, c[0] + 1))
        with torch.no_grad(), _patch_state(patched.get(name, False)):
            rnn(x)
        handle.remove()
        evals[name] = count[0]
    return variants, evals


def _bench_rnn(shape, device, threads, min_run_time, rounds, log) -> list[dict]:
    rows = []
    for kind, k in _RNNS:
        log(f"rnn: {kind}({shape['hidden']}) training step")
        variants, evals = _rnn_step_variants(kind, k, shape, device, seed=len(rows))
        result = _measure(
            variants, threads=threads, min_run_time=min_run_time, rounds=rounds
        )
        rows.append(
            {
                "rnn": kind,
                "blocks": k,
                **shape,
                "times": result,
                "evals_per_forward": evals,
                "ratio_vs_unconstrained": {
                    v.name: _ratio(result, v.name, "unconstrained")
                    for v in variants
                    if v.name != "unconstrained"
                },
                "ratio_vs_unconstrained_rounds": {
                    v.name: _pairs(result, v.name, "unconstrained")
                    for v in variants
                    if v.name != "unconstrained"
                },
            }
        )
    return rows


# ---------------------------------------------------------------------------
# Goals and report


def _goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    values: dict[str, float | None] = {goal.name: None for goal in GOALS}
    if not results["config"]["quick"]:
        for row in results.get("maps", []):
            if (row["map"], row["mode"]) == ("matrix_exp", "fwd+bwd"):
                key = f"R1-{row['n']}"
                if key in values:
                    values[key] = row["ratio_ours_upstream"]
        for row in results.get("rnn", []):
            if row["hidden"] == 256:
                for path in ("installed", "direct"):
                    ratio = row["ratio_vs_unconstrained"][f"ours_{path}"]
                    values[f"R2-{row['rnn']}-{path}"] = ratio
        if "startup" in results:
            from ._bench_startup import goal_values

            values.update(goal_values(results["startup"]))
    goals = []
    for goal in GOALS:
        value = values[goal.name]
        if value is None:
            status = "not measured"
        else:
            status = "PASS" if value <= goal.target else "MISS"
        goals.append(
            {
                "name": goal.name,
                "description": goal.description,
                "target": goal.target,
                "value": value,
                "status": status,
            }
        )
    return goals


def _fmt_time(result: Any) -> str:
    if isinstance(result, dict):
        t = result["median"]
        return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"
    return "-" if result is None else str(result)


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def _range(pairs: list[float]) -> str:
    # The smallest and largest per-round ratio: how far one round can be off.
    return f"{min(pairs):.2f}-{max(pairs):.2f}" if len(pairs) > 1 else "-"


def _table(header: list[str], rows: list[list[str]], left: int = 3) -> str:
    # The first ``left`` columns and a last "notes" column are left-aligned.
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def align(i, cell, width):
        if i < left or header[i] == "notes":
            return cell.ljust(width)
        return cell.rjust(width)

    lines = [
        "  ".join(align(i, c, w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _fmt_err(error: float | str) -> str:
    return f"{error:.1g}" if isinstance(error, float) else f"raised {error}"


def format_maps(rows: list[dict], rounds: int) -> str:
    r"""Format the maps section as a plain-text table."""
    out = []
    for row in rows:
        t = row["times"]
        if row["map"] == "stacked":
            cells = [
                "stacked*",
                str(row["n"]),
                row["mode"],
                _fmt_time(t["ours"]),
                _fmt_time(t["upstream_stacked"]),
                "-",
                _fmt_ratio(row["ratio_ours_upstream"]),
                "-",
                _range(row["ratio_ours_upstream_rounds"]),
            ]
            notes = "; ".join(
                f"{name} WRONG (err {_fmt_err(row['gate_error'][name])})"
                for name in row["wrong"]
                if name != "upstream_stacked"
            )
            notes += (
                f"ours householder {_fmt_time(t['ours_householder'])} "
                f"({_fmt_ratio(row['ratio_ours_householder_upstream'])}x); "
                f"upstream gates not orthogonal "
                f"(err {_fmt_err(row['gate_error']['upstream_stacked'])})"
            )
        else:
            cells = [
                row["map"],
                str(row["n"]),
                row["mode"],
                _fmt_time(t["ours"]),
                _fmt_time(t["upstream"]),
                _fmt_time(t["loop"]),
                _fmt_ratio(row["ratio_ours_upstream"]),
                _fmt_ratio(row["ratio_ours_loop"]),
                _range(row["ratio_ours_upstream_rounds"]),
            ]
            notes = "; ".join(
                f"{name} WRONG (err {_fmt_err(row['gate_error'][name])})"
                for name in row["wrong"]
            )
        raised = [
            f"{name} raised in {v['raised']} of {rounds} rounds"
            for name, v in t.items()
            if isinstance(v, dict) and v.get("raised")
        ]
        notes = "; ".join(x for x in [notes, *raised] if x)
        out.append([*cells, notes])
    header = ["map", "n", "pass", "ours", "upstream", "loop", "ours/up", "ours/loop",
              "ours/up range", "notes"]
    return _table(header, out)


def format_rnn(rows: list[dict]) -> str:
    r"""Format the RNN section as a plain-text table."""
    out = []
    for row in rows:
        for name, result in row["times"].items():
            if name == "unconstrained":
                ratio = 1.0
            else:
                ratio = row["ratio_vs_unconstrained"][name]
            evals = row["evals_per_forward"][name]
            out.append(
                [
                    f"{row['rnn']}({row['hidden']})",
                    str(row["blocks"]),
                    name,
                    _fmt_time(result),
                    _fmt_ratio(ratio),
                    "-" if evals is None else str(evals),
                    ""
                    if name == "unconstrained"
                    else _range(row["ratio_vs_unconstrained_rounds"][name]),
                ]
            )
    header = ["rnn", "blocks", "variant", "step", "vs unconstr.", "evals/fwd", "range"]
    return _table(header, out)


def format_report(results: dict[str, Any]) -> str:
    r"""Format a result of :func:`run` as the text that ``bench`` prints."""
    h, c = results["header"], results["config"]
    lines = [
        "torch_ortho_patch benchmarks",
        f"date: {h['date']}",
        f"torch: {h['torch']}  torch_ortho_patch: {h['torch_ortho_patch']}",
        f"python: {h['python']}  platform: {h['platform']}",
        f"threads: {h['threads']}",
        f"cpu: {h['cpu']}",
        f"device: {h['device']}  dtype: {h['dtype']}",
        f"ours matrix_exp via: {h['ours_matrix_exp']}",
        f"timing: {c['rounds']} interleaved rounds, in each one "
        f"blocked_autorange(min_run_time={c['min_run_time']}) per variant (one "
        "call for a variant slower than that)",
        "times: medians over all rounds; ratios: medians over rounds of the "
        "ratio within a round; range: smallest and largest per-round ratio",
    ]
    if c["quick"]:
        lines.append(
            "quick mode: timings are not meaningful (tiny sizes, for smoke tests)"
        )
    if "maps" in results:
        lines += [
            "",
            f"== Maps: {c['blocks']} orthogonal blocks of (n, n); "
            "median time per call ==",
            "ours: torch_ortho_patch.orthogonal(m, 'weight', map, blocks=k) "
            "on (k n, n)",
            "upstream: torch's orthogonal(m, 'weight', map) on (k, n, n); "
            "loop: k torch parametrizations on (n, n)",
            "stacked*: ours with its default map (matrix_exp) vs torch's orthogonal on "
            "the stacked (k n, n) weight with its default map (householder)",
            "",
            format_maps(results["maps"], c["rounds"]),
        ]
    if "rnn" in results:
        shape = results["rnn"][0] if results["rnn"] else {}
        lines += [
            "",
            f"== RNN training step: forward + backward + SGD, seq {shape.get('seq')}, "
            f"batch {shape.get('batch')}; median time per step ==",
            "ours_installed: blocks=k, install() in effect; "
            "ours_direct: same from tp.orthogonal, not installed;",
            "upstream_stacked: torch's orthogonal on the stacked weight (householder), "
            "not installed",
            "",
            format_rnn(results["rnn"]),
        ]
    if "startup" in results:
        from ._bench_startup import format_startup

        st = results["startup"]
        lines += [
            "",
            f"== Start-up: {st['processes']} fresh processes per row (and one that "
            "fills the warm cache) ==",
            f"load average before: {st['load_before']}, after: {st['load_after']}",
            "",
            format_startup(st),
        ]
    lines += ["", "== Goals =="]
    for g in results["goals"]:
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        lines.append(
            f"{g['name']} = {value} (target <= {g['target']}): {g['status']}  "
            f"[{g['description']}]"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Checking the arguments

# Note [Checking bench's arguments]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# A benchmark can run for many minutes, so everything that can be wrong with
# its arguments is found before anything runs: by the argparse types below,
# which make `bench` exit with status 2 and an argparse usage error, and by
# _check_run_args for callers of run(), which raise ValueError or TypeError in
# the "Expected ... Got ..." form. Both share the device check. --json is
# opened for appending (which neither truncates an existing file nor leaves a
# new one behind), so a path that cannot be written is reported up front.
# --threads is at most os.cpu_count(): more threads than CPUs measures
# contention, and torch.set_num_threads overflows for 2**31.


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _device_problem(device: torch.device) -> str | None:
    r"""Return why ``device`` cannot be benchmarked on, or ``None`` if it can."""
    if device.type == "cpu":
        if device.index not in (None, 0):
            return "the CPU device has index 0 only"
        return None
    if device.type != "cuda":
        return "the benchmarks run on cpu or cuda only"
    if torch.version.cuda is None and torch.version.hip is None:
        return f"this PyTorch ({torch.__version__}) was built without CUDA"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "torch.cuda.is_available() is False: no CUDA device is visible"
    if device.index is not None and device.index >= count:
        return f"only {count} CUDA device(s) are visible: cuda:0 to cuda:{count - 1}"
    return None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def _thread_count(text: str) -> int:
    value = _positive_int(text)
    if value > _cpu_count():
        raise argparse.ArgumentTypeError(
            f"expected at most {_cpu_count()} (os.cpu_count()), got {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected a positive, finite number of seconds, got {text!r}"
        )
    return value


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected cpu, cuda or cuda:N, got {text!r}"
        ) from None
    problem = _device_problem(device)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot run on {text!r}: {problem}")
    return device


def _cannot_write(path: str) -> str | None:
    r"""Return why ``path`` cannot be written, or ``None``. It is left as it was."""
    existed = os.path.lexists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        return f"can't open {path!r} for writing: [Errno {e.errno}] {e.strerror}"
    if not existed:
        os.remove(path)
    return None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_run_args(
    threads, quick, only, min_run_time, rounds, device, sizes, log
) -> torch.device:
    r"""Raise for a bad argument of :func:`run`; return the device."""
    if not _is_int(threads) or threads < 1:
        raise ValueError(f"Expected threads to be a positive int. Got {threads!r}.")
    if threads > _cpu_count():
        raise ValueError(
            f"Expected threads to be at most os.cpu_count() = {_cpu_count()}. "
            f"Got {threads}."
        )
    if not isinstance(quick, bool):
        raise TypeError(f"Expected quick to be a bool. Got {type(quick).__name__}.")
    if only not in (None, "maps", "rnn", "startup"):
        raise ValueError(
            f"Expected only to be None, 'maps', 'rnn' or 'startup'. Got {only!r}."
        )
    if min_run_time is not None and not (
        isinstance(min_run_time, (int, float))
        and not isinstance(min_run_time, bool)
        and math.isfinite(min_run_time)
        and min_run_time > 0
    ):
        raise ValueError(
            "Expected min_run_time to be a positive, finite number of seconds. "
            f"Got {min_run_time!r}."
        )
    if rounds is not None and (not _is_int(rounds) or rounds < 1):
        raise ValueError(f"Expected rounds to be a positive int. Got {rounds!r}.")
    if sizes is not None and (
        not isinstance(sizes, (list, tuple))
        or not sizes
        or not all(_is_int(n) and n >= 1 for n in sizes)
    ):
        raise ValueError(
            f"Expected sizes to be a non-empty list of positive ints. Got {sizes!r}."
        )
    if log is not None and not callable(log):
        raise TypeError(f"Expected log to be callable. Got {type(log).__name__}.")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"Expected device to be cpu, cuda or cuda:N. Got {device!r}."
        ) from None
    problem = _device_problem(dev)
    if problem is not None:
        raise ValueError(
            f"Expected a device to benchmark on. Got {device!r}: {problem}."
        )
    return dev


# ---------------------------------------------------------------------------
# Entry points


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Time torch_ortho_patch's block-orthogonal parametrizations "
        "against torch's orthogonal, side by side in one process, and print "
        "the ratios.",
    )
    parser.add_argument(
        "--threads",
        type=_thread_count,
        default=1,
        metavar="N",
        help="torch.set_num_threads(N) for the measurements (default: 1)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and run times, for smoke tests; timings are not meaningful",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON to PATH"
    )
    parser.add_argument(
        "--only", choices=("maps", "rnn", "startup"), help="run one section only"
    )
    parser.add_argument(
        "--min-run-time",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="blocked_autorange min_run_time per variant and round "
        f"(default: 0.2, or {_QUICK_MIN_RUN_TIME} with --quick)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        default=None,
        metavar="R",
        help="measurement rounds, interleaving the variants (default: 5, or 1 "
        "with --quick)",
    )
    parser.add_argument(
        "--sizes",
        type=_positive_int,
        nargs="+",
        default=None,
        metavar="N",
        help="matrix sizes n of the maps section (default: 64 128 256 512, or 16 "
        "with --quick)",
    )
    parser.add_argument(
        "--device",
        type=_device,
        default="cpu",
        help="device to run on: cpu, cuda or cuda:N (default: cpu)",
    )
    return parser


def run(
    *,
    threads: int = 1,
    quick: bool = False,
    only: str | None = None,
    min_run_time: float | None = None,
    rounds: int | None = None,
    device: str | torch.device = "cpu",
    sizes: list[int] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    r"""Run the benchmarks and return the results as a JSON-serialisable dict.

    The number of torch threads and the install state are restored on return.

    Raises:
        ValueError, TypeError: for a bad argument, before anything runs. See
            Note [Checking bench's arguments].
    """
    dev = _check_run_args(
        threads, quick, only, min_run_time, rounds, device, sizes, log
    )
    if min_run_time is None:
        min_run_time = _QUICK_MIN_RUN_TIME if quick else 0.2
    if rounds is None:
        rounds = 1 if quick else 5
    log = log or (lambda msg: None)

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results: dict[str, Any] = {
            "header": _header(dev, threads),
            "config": {
                "quick": quick,
                "only": only,
                "min_run_time": min_run_time,
                "rounds": rounds,
                "blocks": _BLOCKS,
                "sizes": list(sizes or (_QUICK_SIZES if quick else _SIZES)),
            },
        }
        with _patch_state(False), _quiet_stdout():
            if only in (None, "maps"):
                if sizes is None:
                    sizes = _QUICK_SIZES if quick else _SIZES
                results["maps"] = _bench_maps(
                    sizes, _BLOCKS, dev, threads, min_run_time, rounds, log
                )
            if only in (None, "rnn"):
                shape = _QUICK_RNN_SHAPE if quick else _RNN_SHAPE
                results["rnn"] = _bench_rnn(
                    shape, dev, threads, min_run_time, rounds, log
                )
            if only in (None, "startup"):
                from . import _bench_startup

                results["startup"] = _bench_startup.bench(
                    _bench_startup.QUICK_PROCESSES if quick else _bench_startup.PROCESSES,
                    log,
                )
        results["goals"] = _goals(results)
    finally:
        torch.set_num_threads(old_threads)
    return results


def main(argv: list[str] | None = None) -> int:
    r"""Run ``bench`` on ``argv`` (default: ``sys.argv[1:]``) and return 0."""
    parser = _parser()
    args = parser.parse_args(argv)
    # See Note [Checking bench's arguments]
    if args.json is not None:
        problem = _cannot_write(args.json)
        if problem is not None:
            parser.error(f"argument --json: {problem}")

    start = time.perf_counter()

    def log(msg: str) -> None:
        elapsed = time.perf_counter() - start
        print(f"[bench {elapsed:5.0f} s] {msg}", file=sys.stderr, flush=True)

    results = run(
        threads=args.threads,
        quick=args.quick,
        only=args.only,
        min_run_time=args.min_run_time,
        rounds=args.rounds,
        device=args.device,
        sizes=args.sizes,
        log=log,
    )
    print(format_report(results), end="", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"format": 1, "runs": [results]}, f, indent=1)
            f.write("\n")
    return 0
