# mypy: allow-untyped-defs
r"""The upstream change: the stack of patches as a diff and as a PR series.

:func:`build_diff` returns the whole change squashed into one unified diff, and
:func:`build_series` / :func:`write_series` return it as one ``git format-patch``
file per patch of :mod:`torch_ortho_patch._patches`, to apply in order with
``git apply`` or ``git am`` at the root of a PyTorch tree. Both are composed
from the files of the installed torch (or of ``torch_src``), so nothing of
PyTorch's text is stored in this package. See Note [Amend, don't replace] in
:mod:`torch_ortho_patch._stack`.

Tests: each patch names the test methods that come with it, in this
repository's ``test/upstream_tests.py`` (or, for ``torch/nn/init.py``,
``test/upstream_init_tests.py``, whose imports are those of upstream's
``test/nn/test_init.py``). With ``torch_src``, they are added to the classes
where upstream keeps such tests: those of ``test/nn/test_parametrization.py``,
``TestNN`` of ``test/test_nn.py`` for the tests of ``RNNBase``, and
``TestNNInit`` of ``test/nn/test_init.py``; without it, to new files,
:data:`NEW_TEST`, :data:`NEW_NN_TEST` and :data:`NEW_INIT_TEST` (the installed
torch has no tests). A package installed without its ``test/`` folder leaves
the tests out.
"""

import ast
import difflib
import email.utils
import functools
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from . import _stack
from ._stack import INIT, PARAMETRIZATIONS, Patch, RNN


__all__ = ["build_diff", "build_series", "patched_files", "write_series"]

UPSTREAM_TEST = "test/nn/test_parametrization.py"
NEW_TEST = "test/nn/test_parametrization_orthogonal.py"
UPSTREAM_NN_TEST = "test/test_nn.py"
NEW_NN_TEST = "test/nn/test_rnn_parametrized.py"
UPSTREAM_INIT_TEST = "test/nn/test_init.py"
NEW_INIT_TEST = "test/nn/test_init_orthogonal.py"
DOCS = ("docs/source/nn.md", "docs/source/nn.rst")
_OURS = "torch_ortho_patch"
_REPO = Path(__file__).parent.parent
_TESTS = _REPO / "test" / "upstream_tests.py"
# The tests of torch/nn/init.py, in a file of their own beside _TESTS.
_INIT_TESTS = "upstream_init_tests.py"
# Where the methods of each class of upstream_tests.py go: the upstream test
# file and class that keep such tests (RNN tests are in test_nn.py's TestNN),
# and, for a tree without that file (the installed torch), a new file and class.
@dataclass(frozen=True)
class _Home:
    file: str
    cls: str
    new_file: str
    new_cls: str
    device: bool
    base: str = "NNTestCase"  # the base class of new_cls
    parametrized: bool = True  # whether new_cls goes through instantiate_parametrized_tests


_HOMES = {
    "TestNNParametrization": _Home(
        UPSTREAM_TEST, "TestNNParametrization", NEW_TEST, "TestNNParametrizationOrthogonal", False
    ),
    "TestNNParametrizationDevice": _Home(
        UPSTREAM_TEST,
        "TestNNParametrizationDevice",
        NEW_TEST,
        "TestNNParametrizationOrthogonalDevice",
        True,
    ),
    "TestNN": _Home(UPSTREAM_NN_TEST, "TestNN", NEW_NN_TEST, "TestRNNParametrized", False),
    "TestNNInit": _Home(
        UPSTREAM_INIT_TEST,
        "TestNNInit",
        NEW_INIT_TEST,
        "TestNNInitOrthogonal",
        False,
        base="TestCase",
        parametrized=False,
    ),
}


def _root(torch_src) -> Path:
    if torch_src is None:
        return _stack.installed_root()
    root = Path(torch_src)
    if not (root / PARAMETRIZATIONS).is_file():
        raise ValueError(
            f"Expected a PyTorch source tree that contains {PARAMETRIZATIONS}. "
            f"Got {str(torch_src)!r}."
        )
    return root


def _read(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    if path.suffix == ".py":
        _check_syntax(path, text)
    return text


def _check_syntax(path: Path, text: str) -> None:
    # An unparsable file of the tree is reported in one line, with its place.
    try:
        compile(text, str(path), "exec", ast.PyCF_ONLY_AST)
    except SyntaxError as e:
        raise ValueError(
            f"Expected a Python file that parses. Got {e.msg} at {path}:{e.lineno}."
        ) from None


# ----------------------------------------------------------------------------
# Tests


@dataclass(frozen=True)
class _Method:
    cls: str
    name: str
    source: str  # dedented, the decorators included
    origin: Path  # the file it was read from, whose imports it may use


def _test_methods(tests: Path) -> dict[str, _Method]:
    text = tests.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test_"):
                    start = min([item.lineno] + [d.lineno for d in item.decorator_list])
                    source = textwrap.dedent("".join(lines[start - 1 : item.end_lineno]))
                    out[item.name] = _Method(node.name, item.name, source, tests)
    return out


def _init_tests(tests: Path | None) -> Path | None:
    return tests.with_name(_INIT_TESTS) if tests is not None else None


def _all_test_methods(tests: Path | None) -> dict[str, _Method]:
    # The methods of upstream_tests.py and of the init tests beside it.
    if tests is None or not tests.is_file():
        return {}
    methods = _test_methods(tests)
    init_tests = _init_tests(tests)
    if init_tests is not None and init_tests.is_file():
        methods.update(_test_methods(init_tests))
    return methods


def _test_header(tests: Path) -> str:
    # The import block of upstream_tests.py: the names its methods may use,
    # which are those that upstream's test file imports.
    text = tests.read_text(encoding="utf-8")
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    lines = text.splitlines(keepends=True)
    return "".join(lines[imports[0].lineno - 1 : imports[-1].end_lineno])


def _new_test_file(methods: list[_Method]) -> str:
    # A test file of its own for ``methods``, whose classes share one new_file.
    by_class: dict[str, list[_Method]] = {}
    for m in methods:
        by_class.setdefault(m.cls, []).append(m)
    out = []
    for cls, home in _HOMES.items():
        if cls not in by_class:
            continue
        out.append(f"\nclass {home.new_cls}({home.base}):\n")
        bodies = [textwrap.indent(m.source, "    ") for m in by_class[cls]]
        out.append("\n".join(bodies))
        out.append("\n")
    instantiations = []
    for cls, home in _HOMES.items():
        if cls in by_class and home.device:
            instantiations.append(
                "instantiate_device_type_tests(\n"
                f'    {home.new_cls}, globals(), only_for=("cpu", "cuda")\n'
                ")\n"
            )
    for cls, home in _HOMES.items():
        if cls in by_class and not home.device and home.parametrized:
            instantiations.append(f"instantiate_parametrized_tests({home.new_cls})\n")
    if instantiations:
        out += ["\n", *instantiations]
    out.append('\nif __name__ == "__main__":\n    run_tests()\n')
    body = "".join(out)
    header = _test_header(methods[0].origin)
    return '# Owner(s): ["module: nn"]\n' + _used_imports(header, body) + "\n" + body


def _used_imports(header: str, body: str) -> str:
    # The import statements of ``header`` that bind a name ``body`` uses, each
    # with only those names, in the order and layout of ``header``.
    used = {n.id for n in ast.walk(ast.parse(body)) if isinstance(n, ast.Name)}
    lines = header.splitlines(keepends=True)
    out: list[str] = []
    last = 0
    groups: list[list[str]] = [[]]
    for node in ast.parse(header).body:
        start = node.lineno - 1
        if any(not line.strip() for line in lines[last:start]):
            groups.append([])  # a blank line separates two groups of imports
        last = node.end_lineno or start + 1
        names = node.names  # type: ignore[attr-defined]
        keep = [a for a in names if (a.asname or a.name.split(".")[0]) in used]
        if not keep:
            continue
        if len(keep) == len(names):
            groups[-1].append("".join(lines[start:last]))
        elif isinstance(node, ast.ImportFrom):
            joined = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in keep)
            one = f"from {node.module} import {joined}\n"
            if len(one) > 88:
                items = "".join(
                    f"    {a.name}" + (f" as {a.asname}" if a.asname else "") + ",\n" for a in keep
                )
                one = f"from {node.module} import (\n{items})\n"
            groups[-1].append(one)
    out = ["".join(g) for g in groups if g]
    return "\n".join(out)


def _add_to_upstream_test(text: str, path: str, methods: list[_Method]) -> str:
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    inserts = []
    for cls, home in _HOMES.items():
        ours = [m for m in methods if m.cls == cls]
        if not ours:
            continue
        node = next(
            (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == home.cls),
            None,
        )
        if node is None:
            raise RuntimeError(f"Expected {path} to define {home.cls}.")
        block = []
        for m in ours:
            block += ["\n", *textwrap.indent(m.source, "    ").splitlines(keepends=True)]
        inserts.append((node.end_lineno, block))
    for at, block in sorted(inserts, reverse=True):
        lines[at:at] = block
    return _add_missing_imports("".join(lines), methods)


def _add_missing_imports(text: str, methods: list[_Method]) -> str:
    # Upstream's current test files import every name our methods use, and then
    # this changes nothing. An older tree's may not (test_parametrization.py of
    # 2.4 has no ``swap``): the imports of the missing names, as our test files
    # write them, go after the file's last top-level import.
    tree = ast.parse(text)
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    used = set()
    for m in methods:
        used |= {n.id for n in ast.walk(ast.parse(m.source)) if isinstance(n, ast.Name)}
    missing = sorted(used - bound)
    if not missing or not methods:
        return text
    added = _used_imports(_test_header(methods[0].origin), "\n".join(missing))
    if not added:
        return text
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    lines = text.splitlines(keepends=True)
    at = imports[-1].end_lineno if imports else 0
    lines[at:at] = [line + "\n" for line in added.splitlines() if line.strip()]
    return "".join(lines)


# ----------------------------------------------------------------------------
# Files


def docs_file(torch_src) -> str | None:
    r"""Return the nn docs page of the tree that the series amends, or ``None``.

    The public maps join its autosummary: ``docs/source/nn.md`` or, in older
    trees, ``docs/source/nn.rst``. The installed torch has no docs.
    """
    if torch_src is None:
        return None
    root = _root(torch_src)
    return next((p for p in DOCS if (root / p).is_file()), None)


def _stages(torch_src, tests: Path | None) -> list[tuple[Patch, dict[str, str | None]]]:
    r"""Return the texts after each upstream patch, the unchanged texts first."""
    root = _root(torch_src)
    paths = [PARAMETRIZATIONS, RNN, INIT]
    docs = docs_file(torch_src)
    if docs is not None:
        paths.append(docs)
    texts: dict[str, str | None] = {p: _read(root / p) for p in paths}
    for path in (PARAMETRIZATIONS, RNN, INIT):
        if texts[path] is None:
            raise ValueError(
                f"Expected a PyTorch source tree that contains {path}. Got {str(root)!r}."
            )
    for path in _stack.NEW_FILES:
        texts[path] = _read(root / path)
    methods = _all_test_methods(tests)
    init_tests = _init_tests(tests)
    # The test files: upstream's where the tree has them, else new ones.
    upstream_tests: dict[str, str] = {}
    for home in _HOMES.values():
        text = _read(root / home.file) if torch_src is not None else None
        if text is not None:
            upstream_tests[home.file] = text
            texts[home.file] = text
    stages = []
    landed: list[_Method] = []
    for patch in _stack.upstream_patches():
        texts = _stack.apply(texts, [patch])
        missing = [t for t in patch.tests if t not in methods]
        if methods and missing:
            raise RuntimeError(
                f"Expected {tests} or {init_tests} to define {missing} for {patch.name}."
            )
        ours = [methods[t] for t in patch.tests if t in methods]
        landed += ours
        for path in {_test_path(torch_src, m.cls) for m in ours}:
            here = [m for m in ours if _test_path(torch_src, m.cls) == path]
            if path in upstream_tests:
                texts[path] = _add_to_upstream_test(texts[path] or "", path, here)
            else:
                new = [m for m in landed if _test_path(torch_src, m.cls) == path]
                texts[path] = _new_test_file(new)
        stages.append((patch, dict(texts)))
    return stages


def _test_path(torch_src, cls: str) -> str:
    # Where the tests of one class of upstream_tests.py land: the upstream file
    # when the tree has it and it defines the class (an older tree may lack a
    # class, such as TestNNParametrizationDevice), else a new file.
    home = _HOMES[cls]
    if torch_src is not None:
        path = Path(torch_src) / home.file
        if path.is_file() and home.cls in _classes_of(str(path), path.stat().st_mtime_ns):
            return home.file
    return home.new_file


@functools.lru_cache(maxsize=8)
def _classes_of(path: str, mtime_ns: int) -> frozenset[str]:
    # The top-level classes of a test file (mtime_ns keys the cache).
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return frozenset(n.name for n in tree.body if isinstance(n, ast.ClassDef))


def _default_tests() -> Path | None:
    return _TESTS if _TESTS.is_file() else None


def patched_files(torch_src=None, tests=None) -> dict[str, tuple[str | None, str]]:
    r"""Return ``{path: (old text or None, new text)}`` of the squashed change.

    Args:
        torch_src (str or PathLike, optional): root of a PyTorch tree. Default: the
            directory that holds the installed ``torch`` package.
        tests (str or PathLike, optional): the ``upstream_tests.py`` to take the
            tests from (and the ``upstream_init_tests.py`` beside it). Default:
            the one of this repository, if present.
    """
    tests = Path(tests) if tests is not None else _default_tests()
    root = _root(torch_src)
    stages = _stages(torch_src, tests)
    final = stages[-1][1]
    out = {}
    for path, new in final.items():
        old = _read(root / path)
        if new is not None and new != old:
            out[path] = (old, new)
    _check_clean(out)
    return out


def _check_clean(files) -> None:
    for path, (_, new) in files.items():
        if _OURS in new:
            raise AssertionError(f"Expected the amended {path} not to refer to {_OURS}.")


def _unified(path: str, old: str | None, new: str) -> str:
    if old == new:
        return ""
    out = [f"diff --git a/{path} b/{path}\n"]
    if old is None:
        out.append("new file mode 100644\n")
    diff = difflib.unified_diff(
        [] if old is None else old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile="/dev/null" if old is None else f"a/{path}",
        tofile=f"b/{path}",
    )
    for line in diff:
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def build_diff(torch_src=None, tests=None) -> str:
    r"""Return the whole upstream change as one unified diff, for ``git apply``.

    Returns:
        str: the diff; empty if there is nothing to change.

    Example::

        >>> from torch_ortho_patch._upstream import build_diff
        >>> patch = build_diff()
        >>> patch.splitlines()[0]
        'diff --git a/torch/nn/utils/parametrizations.py b/torch/nn/utils/parametrizations.py'
        >>> "torch_ortho_patch" in patch
        False
    """
    files = patched_files(torch_src, tests)
    return "".join(_unified(p, old, new) for p, (old, new) in files.items())


@dataclass(frozen=True)
class SeriesPatch:
    r"""One patch of the series: the patch and its diff against the one before."""

    patch: Patch
    diff: str
    test_file: str = UPSTREAM_TEST

    def message(self) -> str:
        r"""Return the commit message body: motivation and change, references, Test Plan."""
        parts = [self.patch.body.strip("\n")]
        if self.patch.refs:
            parts.append("\n".join(self.patch.refs))
        if self.patch.tests:
            selection = " or ".join(self.patch.tests)
            parts.append(
                "Test Plan:\n"
                f'python -m pytest {self.test_file} -k "{selection}"'
            )
        if self.patch.test_plan:
            parts.append(self.patch.test_plan.strip("\n"))
        return "\n\n".join(parts) + "\n"

    def stat(self) -> list[tuple[str, int, int]]:
        r"""Return ``[(path, insertions, deletions)]``, as ``git diff --stat`` counts."""
        out: list[tuple[str, int, int]] = []
        for chunk in self.diff.split("diff --git ")[1:]:
            path = chunk.split(" b/", 1)[1].split("\n", 1)[0]
            plus = minus = 0
            for line in chunk.splitlines():
                if line.startswith("+") and not line.startswith("+++"):
                    plus += 1
                elif line.startswith("-") and not line.startswith("---"):
                    minus += 1
            out.append((path, plus, minus))
        return out


def build_series(torch_src=None, tests=None) -> list[SeriesPatch]:
    r"""Return the upstream change as a list of patches, each against the one before."""
    tests = Path(tests) if tests is not None else _default_tests()
    root = _root(torch_src)
    methods = _all_test_methods(tests)
    previous: dict[str, str | None] = {}
    out = []
    for patch, texts in _stages(torch_src, tests):
        chunks = []
        for path, new in texts.items():
            old = previous[path] if path in previous else _read(root / path)
            if new is not None and new != old:
                chunks.append(_unified(path, old, new))
        diff = "".join(chunks)
        _check_clean({p: (None, t) for p, t in texts.items() if t is not None})
        homes = sorted({_test_path(torch_src, methods[t].cls) for t in patch.tests if t in methods})
        out.append(SeriesPatch(patch, diff, " ".join(homes) or UPSTREAM_TEST))
        previous = texts
    return out


def size_table(series: list[SeriesPatch]) -> str:
    r"""Return the series as a Markdown table: number, name, subject, size, tests.

    The RFC's table of the stack is this table, for torch 2.13.0's files.
    """
    rows = ["| # | patch | subject | size | tests |", "|---|---|---|---|---|"]
    for i, item in enumerate(series, 1):
        stat = item.stat()
        plus, minus = sum(a for _, a, _ in stat), sum(d for _, _, d in stat)
        tests = ", ".join(f"`{t}`" for t in item.patch.tests) or "none"
        rows.append(
            f"| {i} | {item.patch.name} | {item.patch.subject} | +{plus} -{minus} | {tests} |"
        )
    return "\n".join(rows) + "\n"


def _format_patch(i: int, n: int, item: SeriesPatch, author: str, date: str) -> str:
    stat = item.stat()
    width = max((len(p) for p, _, _ in stat), default=0)
    lines = [
        f" {p.ljust(width)} | {a + d} {'+' * min(a, 40)}{'-' * min(d, 40)}\n"
        for p, a, d in stat
    ]
    added, deleted = sum(a for _, a, _ in stat), sum(d for _, _, d in stat)
    summary = (
        f" {len(stat)} file{'s' if len(stat) != 1 else ''} changed, "
        f"{added} insertion{'s' if added != 1 else ''}(+), "
        f"{deleted} deletion{'s' if deleted != 1 else ''}(-)\n"
    )
    body = item.message()
    return (
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        f"From: {author}\n"
        f"Date: {date}\n"
        f"Subject: [PATCH {i}/{n}] {item.patch.subject}\n"
        "\n"
        f"{body}"
        "---\n"
        f"{''.join(lines)}{summary}\n"
        f"{item.diff}"
        "-- \n"
        "2.39.5\n\n"
    )


_AUTHOR = re.compile(r"[^<>@\s][^<>@\r\n]* <[^<>@\s]+@[^<>@\s]+>")


def check_author(author) -> str:
    r"""Return ``author`` if it is ``Name <user@host>`` on one line; raise otherwise."""
    if not isinstance(author, str):
        raise TypeError(f"Expected the author to be a str. Got {type(author).__name__}.")
    if _AUTHOR.fullmatch(author) is None:
        raise ValueError(f"Expected an author as 'Name <user@host>', on one line. Got {author!r}.")
    return author


def git_author(cwd=None) -> str:
    r"""Return the user's git identity as ``Name <email>``.

    Raises:
        ValueError: if git is missing, or ``user.name`` or ``user.email`` is not set.
    """
    values = []
    for key in ("user.name", "user.email"):
        try:
            proc = subprocess.run(
                ["git", "config", key], cwd=cwd, capture_output=True, text=True, check=False
            )
        except OSError:
            proc = None
        value = proc.stdout.strip() if proc is not None and proc.returncode == 0 else ""
        if not value:
            raise ValueError(
                f"Expected an author: pass --author 'Name <user@host>', or set git's "
                f"{key}. Got no {key}."
            )
        values.append(value)
    return check_author(f"{values[0]} <{values[1]}>")


def write_series(
    directory, torch_src=None, tests=None, author: str | None = None, force: bool = False
) -> list[Path]:
    r"""Write the series to ``directory`` as ``0001-<name>.patch``, ... and return the paths.

    Each file is in ``git format-patch`` form: a subject and a body for the
    reviewer, a diffstat and the diff. Apply them in order with ``git am`` (or
    ``git apply``) at the root of the PyTorch tree they were made from.

    Args:
        author (str, optional): ``Name <user@host>``. Default: the user's git
            identity (``git config user.name`` and ``user.email``).
        force (bool, optional): write into a ``directory`` that is not empty,
            removing the ``*.patch`` files it has first. Default: ``False``.

    Raises:
        ValueError: if ``author`` is malformed or there is none, or if
            ``directory`` is not empty and ``force`` is not set.

    The series is written to a temporary directory beside ``directory`` and
    moved in place once complete, so a failure leaves no partial series.
    """
    author = check_author(author) if author is not None else git_author()
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"Expected a directory for the series. Got the file {str(directory)!r}.")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ValueError(
            f"Expected an empty or new directory for the series. Got {str(directory)!r}, "
            "which is not empty (pass --force to replace the *.patch files in it)."
        )
    series = build_series(torch_src, tests)
    date = email.utils.formatdate(usegmt=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    names = [f"{i:04d}-{item.patch.name}.patch" for i, item in enumerate(series, 1)]
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0o700 is for the staging only
    try:
        for i, (name, item) in enumerate(zip(names, series, strict=True), 1):
            text = _format_patch(i, len(series), item, author, date)
            (staging / name).write_text(text, encoding="utf-8")
        if directory.is_dir():
            for old in directory.glob("*.patch"):
                old.unlink()
        if not directory.exists() or not any(directory.iterdir()):
            # An empty directory is replaced whole, in one rename.
            os.replace(staging, directory)
        else:
            # Other files stay: the patches move in one by one, each atomically.
            for name in names:
                os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [directory / name for name in names]
