r"""Run PyTorch's own test files on every commit of the upstream series.

usage: python3 .ci/upstream_suite.py PYTHON TESTS [--json OUT]

PYTHON is the interpreter of a venv with the torch to test (and pytest,
expecttest, numpy). TESTS is the root of a PyTorch checkout, or any directory
that holds some of its test files: ``test/nn/test_parametrization.py``,
``test/nn/test_init.py``, ``test/test_nn.py``. This repository stores none of
them (see Note [Amend, don't replace] in torch_ortho_patch/_stack.py), so CI
cannot run this; it is run by hand and its table goes into the closing notes
and RFC.md.

What it does:

1. Lays out a git tree with the installed torch's torch/nn/utils/parametrizations.py,
   torch/nn/modules/rnn.py and torch/nn/init.py and the given test files, and
   writes the series for it with ``diff --stack --torch-src``, so the tests of
   each patch go into the upstream test files, as in the PRs.
2. Builds a copy of the installed torch package out of symbolic links, in which
   the files that the series touches are real files.
3. Before the first patch, then after each one (``git apply``), copies the
   tree's torch files into that package and runs pytest on the tree's test
   files with it first on the path: once as is and once with
   ``-W error::UserWarning``.

4. After each patch, runs the tests that the patch added once more with the
   torch files as they were before it (plain mode only), to count how many of
   them fail on the previous commit, as a pull request's new tests should.

It exits with 1 when a test fails after some patch that does not fail on the
unpatched files too (a test file newer than the torch release can fail on it
for reasons of its own: those are listed apart, as failing before the series).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
TORCH_FILES = (
    "torch/nn/utils/parametrizations.py",
    "torch/nn/modules/rnn.py",
    "torch/nn/init.py",
)
TEST_FILES = ("test/nn/test_parametrization.py", "test/nn/test_init.py", "test/test_nn.py")
MODES = {"plain": [], "UserWarning=error": ["-W", "error::UserWarning"]}


def _run(cmd, **kwargs):
    proc = subprocess.run(cmd, check=False, text=True, capture_output=True, **kwargs)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _site(python: str) -> Path:
    out = _run([python, "-c", "import os, torch; print(os.path.dirname(torch.__file__))"])
    return Path(out.stdout.strip())


def _materialize(root: Path, rel: Path) -> Path:
    # Make every directory on the way from root to rel real, its entries links
    # to the originals (no __pycache__: nothing compiled there belongs to the
    # amended files), and return root / rel.
    here = root
    for part in rel.parent.parts:
        here = here / part
        if here.is_symlink():
            target = here.resolve()
            here.unlink()
            here.mkdir()
            for entry in target.iterdir():
                if entry.name != "__pycache__":
                    (here / entry.name).symlink_to(entry)
        elif not here.exists():
            here.mkdir()
    return root / rel


def _link_package(torch_dir: Path, site: Path) -> None:
    pkg = site / "torch"
    pkg.mkdir(parents=True)
    for entry in torch_dir.iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)


def _sync(tree: Path, site: Path) -> None:
    for path in sorted((tree / "torch").rglob("*.py")):
        rel = path.relative_to(tree)
        dest = _materialize(site, rel)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        shutil.copyfile(path, dest)


def _pytest(
    python: str,
    site: Path,
    tree: Path,
    files: list[str],
    extra: list[str],
    xml: Path,
    collection_errors_ok: bool = False,
):
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *extra]
    if xml.exists():
        xml.unlink()
    proc = subprocess.run(
        [*cmd, *files], cwd=tree, env=env, text=True, capture_output=True, check=False
    )
    # Exit status 2 is a collection error: with the torch files of the
    # previous commit a test file may not import at all.
    allowed = (0, 1, 2) if collection_errors_ok else (0, 1)
    if proc.returncode not in allowed or not xml.is_file():
        sys.exit(f"pytest could not run ({proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failed, skipped = [], {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            failed.append(name)
        elif (skip := case.find("skipped")) is not None:
            counts["skipped"] += 1
            skipped[name] = skip.get("message", "")
        else:
            counts["passed"] += 1
    return counts, failed, skipped


def _names(xml: Path) -> set[str]:
    return {
        f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        for case in ET.parse(xml).getroot().iter("testcase")
    }


def _snapshot(tree: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(tree)): path.read_bytes() for path in (tree / "torch").rglob("*.py")
    }


def _failing_before(python, site, tree, files, before, added, xml) -> list[str]:
    # Which of the tests a patch added fail with the torch files of the
    # commit before it: the tree's test files as they are now, its torch
    # files as they were.
    if not added:
        return []
    with tempfile.TemporaryDirectory() as old:
        old_tree = Path(old)
        for rel, data in before.items():
            (old_tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (old_tree / rel).write_bytes(data)
        for rel in (tree / "torch").rglob("*.py"):
            if str(rel.relative_to(tree)) not in before:
                # A file that the patch adds is absent before it.
                dest = site / rel.relative_to(tree)
                if dest.exists() or dest.is_symlink():
                    dest.unlink()
        _sync(old_tree, site)
    _, failed, _ = _pytest(python, site, tree, files, [], xml, collection_errors_ok=True)
    ran = _names(xml)
    # A test that did not run at all (its file did not import) fails too.
    return sorted(name for name in added if name in failed or name not in ran)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("python")
    parser.add_argument("tests", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # Absolute, but not resolved: a venv's python is a link out of the venv.
    args.python = os.path.abspath(args.python)

    torch_dir = _site(args.python)
    version = _run([args.python, "-c", "import torch; print(torch.__version__)"]).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = tmp / "tree"
        for rel in TORCH_FILES:
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(torch_dir.parent / rel, tree / rel)
        present = []
        for rel in TEST_FILES:
            if (args.tests / rel).is_file():
                (tree / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(args.tests / rel, tree / rel)
                present.append(rel)
        if not present:
            sys.exit(f"Expected one of {', '.join(TEST_FILES)} under {args.tests}.")
        _run(["git", "init", "-q"], cwd=tree)
        series = tmp / "series"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        _run(
            [args.python, "-m", "torch_ortho_patch", "diff", "--stack", str(series),
             "--torch-src", str(tree), "--author", "CI <ci@localhost>"],
            env=env,
        )
        patches = sorted(series.glob("*.patch"))
        site = tmp / "site"
        _link_package(torch_dir, site)

        rows = []
        for step in range(len(patches) + 1):
            before = _snapshot(tree)
            if step:
                _run(["git", "apply", str(patches[step - 1])], cwd=tree)
            _sync(tree, site)
            files = sorted(
                str(p.relative_to(tree)) for p in (tree / "test").rglob("test_*.py")
            )
            name = "(unpatched)" if not step else re.sub(r"^\d+-|\.patch$", "", patches[step - 1].name)
            row = {"step": step, "patch": name, "files": files}
            for mode, extra in MODES.items():
                counts, failed, skipped = _pytest(
                    args.python, site, tree, files, extra, tmp / "r.xml"
                )
                row[mode] = {**counts, "failures": failed, "skips": skipped}
                if mode == "plain":
                    row["_names"] = names = _names(tmp / "r.xml")
            if step:
                row["new_tests"] = added = sorted(names - rows[-1]["_names"])
                row["new_tests_failing_before"] = _failing_before(
                    args.python, site, tree, files, before, added, tmp / "b.xml"
                )
                _sync(tree, site)
            rows.append(row)
            print(
                f"{step:2d} {name:24s} "
                + "  ".join(
                    f"{m}: {row[m]['passed']} passed, {row[m]['failed']} failed, "
                    f"{row[m]['skipped']} skipped"
                    for m in MODES
                )
                + (
                    f"  new tests: {len(row['new_tests'])}, failing before it: "
                    f"{len(row['new_tests_failing_before'])}"
                    if step
                    else ""
                ),
                flush=True,
            )
        for row in rows:
            del row["_names"]

    status = 0
    for mode in MODES:
        before = set(rows[0][mode]["failures"])
        if before:
            print(f"{mode}: failing before the series too: {', '.join(sorted(before))}")
        for row in rows[1:]:
            new = sorted(set(row[mode]["failures"]) - before)
            if new:
                status = 1
                print(f"{mode}: after {row['patch']}: new failures: {', '.join(new)}")
    if args.json:
        args.json.write_text(json.dumps({"torch": version, "steps": rows}, indent=1) + "\n")
    print("torch", version, "OK" if status == 0 else "FAILED")
    return status


if __name__ == "__main__":
    sys.exit(main())
