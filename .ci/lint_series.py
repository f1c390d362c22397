#!/usr/bin/env python3
r"""Lint the squashed upstream series the way PyTorch lints a pull request.

Usage: ``python .ci/lint_series.py TORCH_PYTHON LINT_BIN [KNOWN]``

``TORCH_PYTHON`` is a Python with the torch release to diff against (the series
is made from its files, ``python -m torch_ortho_patch diff``); ``LINT_BIN`` is
the ``bin`` directory of a venv with the linters of ``.ci/lint/requirements.txt``.

The files that the series changes or adds are linted twice, as the release has
them and as the series leaves them, each time in a tree laid out as torch is:
the release's ``.py`` and ``.pyi`` files, linked, with the amended files in
their place. mypy, flake8, ruff check, ruff format and usort run with PyTorch's
settings (``.ci/lint/``). A finding of the amended tree counts as new unless
the release's file has the same one (same file, code and message; the line may
move). Prints the new findings and one count per linter, and exits with status
1 if there is any, other than those listed in ``KNOWN`` (one
``file: code message`` a line, ``#`` comments), which are printed apart. A
listed finding that is no longer found is an error too, so that the list only
ever shrinks.
"""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / ".ci" / "lint"

_DUMP = """
import json, sys
from torch_ortho_patch import _stack, _upstream
files = _upstream.patched_files()
json.dump({
    "root": str(_stack.installed_root()),
    "files": {p: [old, new] for p, (old, new) in files.items() if p.endswith(".py")},
}, sys.stdout)
"""


def _run(cmd, cwd, env=None):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _tree(site: Path, dest: Path, texts: dict) -> None:
    # torch's Python files, linked; the files of ``texts`` written in their place.
    for path in (site / "torch").rglob("*"):
        if path.suffix not in (".py", ".pyi") and path.name != "py.typed":
            continue
        rel = path.relative_to(site)
        if rel.parts[1:2] in (("lib",), ("include",), ("bin",), ("share",)):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).symlink_to(path)
    for rel, text in texts.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        if text is not None:
            target.write_text(text, encoding="utf-8")
    shutil.copyfile(CONFIG / "usort.toml", dest / "pyproject.toml")


def _findings(linter: str, out: str, files: list[str]) -> list[tuple[str, str, str]]:
    # (file, code, message) for each finding in one of ``files``.
    found = []
    if linter in ("mypy", "flake8", "ruff"):
        pattern = {
            "mypy": r"^(?P<file>[^:\n]+):\d+:\d+: error: (?P<msg>.*?)\s+\[(?P<code>[\w-]+)\]$",
            "flake8": r"^(?P<file>[^:\n]+):\d+:\d+: (?P<code>[A-Z]+\d+) (?P<msg>.*)$",
            "ruff": r"^(?P<file>[^:\n]+):\d+:\d+: (?P<code>[A-Z]+\d+) (?P<msg>.*)$",
        }[linter]
        for m in re.finditer(pattern, out, re.M):
            if m["file"] in files:
                found.append((m["file"], m["code"], m["msg"]))
    return found


def _lint(root: Path, files: list[str], torch_python: str, lint_bin: Path, cache: Path) -> dict:
    py = [f for f in files if (root / f).exists()]
    torch_files = [f for f in py if f.startswith("torch/")]
    out: dict = {}
    mypy = _run(
        [
            str(lint_bin / "mypy"),
            "--config-file", str(CONFIG / "mypy.ini"),
            "--cache-dir", str(cache),
            "--python-executable", torch_python,
            "--no-error-summary",
            *torch_files,
        ],
        cwd=root,
    )
    out["mypy"] = _findings("mypy", mypy.stdout, torch_files)
    flake8 = _run([str(lint_bin / "flake8"), "--config", str(CONFIG / "flake8.ini"), *py], cwd=root)
    out["flake8"] = _findings("flake8", flake8.stdout, py)
    ruff = _run(
        [str(lint_bin / "ruff"), "check", "--config", str(CONFIG / "ruff.toml"),
         "--output-format", "concise", "--no-cache", *py],
        cwd=root,
    )
    out["ruff"] = _findings("ruff", ruff.stdout, py)
    # File-level checks: the file would be reformatted, or its imports re-sorted.
    out["ruff-format"] = []
    out["usort"] = []
    for f in py:
        fmt = _run(
            [str(lint_bin / "ruff"), "format", "--config", str(CONFIG / "ruff.toml"),
             "--check", "--no-cache", f],
            cwd=root,
        )
        if fmt.returncode != 0:
            out["ruff-format"].append((f, "format", "would be reformatted"))
        usort = _run([str(lint_bin / "usort"), "diff", f], cwd=root)
        if usort.stdout.strip():
            out["usort"].append((f, "usort", "imports would be re-sorted"))
    return out


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    torch_python, lint_bin = argv[0], Path(argv[1])
    known = collections.Counter()
    if len(argv) == 3:
        for line in Path(argv[2]).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                f, rest = line.split(": ", 1)
                code, msg = rest.split(" ", 1)
                known[(f, code, msg)] += 1
    env = dict(os.environ, PYTHONPATH=str(REPO))
    dump = _run([torch_python, "-c", _DUMP], cwd=REPO, env=env)
    if dump.returncode != 0:
        print(dump.stderr, file=sys.stderr)
        return 2
    data = json.loads(dump.stdout)
    site = Path(data["root"])
    files = data["files"]
    names = sorted(files)
    new_total = 0
    with tempfile.TemporaryDirectory(prefix="lint-series-") as tmp:
        tmp = Path(tmp)
        results = {}
        for side, index in (("release", 0), ("series", 1)):
            root = tmp / side
            _tree(site, root, {p: texts[index] for p, texts in files.items()})
            results[side] = _lint(root, names, torch_python, lint_bin, tmp / "mypy-cache")
        print(f"files: {', '.join(names)}")
        seen_known: collections.Counter = collections.Counter()
        for linter in results["series"]:
            before = collections.Counter(results["release"][linter])
            after = collections.Counter(results["series"][linter])
            new = after - before
            listed = new & known
            seen_known += listed
            new -= listed
            count = sum(new.values())
            new_total += count
            print(
                f"{linter}: {count} new ({sum(listed.values())} more known; "
                f"{sum(after.values())} in the series' files, "
                f"{sum(before.values())} in the release's)"
            )
            for (f, code, msg), n in sorted(new.items()):
                print(f"  {f}: {code} {msg}" + (f" (x{n})" if n > 1 else ""))
            for (f, code, msg), n in sorted(listed.items()):
                print(f"  known: {f}: {code} {msg}" + (f" (x{n})" if n > 1 else ""))
        gone = known - seen_known
        for (f, code, msg), n in sorted(gone.items()):
            print(f"listed as known but not found, remove it from the list: {f}: {code} {msg}")
    return 1 if new_total or gone else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
