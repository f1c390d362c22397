# mypy: allow-untyped-defs
r"""What ``import torch_ortho_patch``, :func:`install` and :func:`uninstall` cost.

Part of ``python -m torch_ortho_patch bench``. Each measurement is a fresh
process, as a DataLoader worker or a DDP rank is: it times ``import torch``,
then ``import torch_ortho_patch``, :func:`torch_ortho_patch.install` and
:func:`torch_ortho_patch.uninstall`. "warm" processes find the runtime cache
filled (see Note [The runtime cache] in :mod:`torch_ortho_patch._cache`);
"cold" ones find it empty, as the first process after torch or this package
changed does. Both use a cache directory of their own, so the user's cache is
neither used nor touched.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._cache import ENV


__all__: list[str] = []

PROCESSES = 10
QUICK_PROCESSES = 1
METRICS = ("torch", "import", "install", "uninstall")

_PROBE = """\
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import torch_ortho_patch
t2 = time.perf_counter()
torch_ortho_patch.install()
t3 = time.perf_counter()
torch_ortho_patch.uninstall()
t4 = time.perf_counter()
print(json.dumps({"torch": t1 - t0, "import": t2 - t1, "install": t3 - t2,
                  "uninstall": t4 - t3}))
"""


def _env(cache: str) -> dict[str, str]:
    env = dict(os.environ)
    # This copy of the package, whatever the current directory.
    root = str(Path(__file__).absolute().parent.parent)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root + (os.pathsep + path if path else "")
    env[ENV] = cache
    return env


def _probe(cache: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=_env(cache),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Expected the start-up probe to run. It failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench(processes: int, log) -> dict[str, Any]:
    r"""Start ``processes`` warm and as many cold processes, interleaved."""
    runs: dict[str, list[dict[str, float]]] = {"warm": [], "cold": []}
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="torch_ortho_patch-bench-") as tmp:
        warm = os.path.join(tmp, "warm")
        _probe(warm)  # fills it
        for i in range(processes):
            log(f"start-up: process {i + 1} of {processes}, warm and cold")
            runs["warm"].append(_probe(warm))
            runs["cold"].append(_probe(os.path.join(tmp, f"cold-{i}")))
    return {
        "processes": processes,
        "load_before": load_before,
        "load_after": _load(),
        **{
            state: {m: _stats([r[m] for r in rows]) for m in METRICS}
            for state, rows in runs.items()
        },
    }


def goal_values(result: dict[str, Any]) -> dict[str, float]:
    r"""The medians, in milliseconds, that the start-up goals of
    :data:`torch_ortho_patch._bench.GOALS` judge."""
    medians = {
        "S1-import-warm": result["warm"]["import"]["median"],
        "S2-import-cold": result["cold"]["import"]["median"],
        "S3-install": result["warm"]["install"]["median"],
        "S4-uninstall": result["warm"]["uninstall"]["median"],
    }
    return {name: 1e3 * seconds for name, seconds in medians.items()}


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def format_startup(result: dict[str, Any]) -> str:
    r"""Format the start-up section as a plain-text table."""
    header = ["cache", "step", "median", "min", "max"]
    rows = []
    for state in ("warm", "cold"):
        for m in METRICS:
            s = result[state][m]
            step = "import torch" if m == "torch" else {
                "import": "import torch_ortho_patch",
                "install": "install()",
                "uninstall": "uninstall()",
            }[m]
            rows.append([state, step, _fmt(s["median"]), _fmt(s["min"]), _fmt(s["max"])])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
