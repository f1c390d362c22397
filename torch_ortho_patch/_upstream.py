# mypy: allow-untyped-defs
r"""Build the upstream diff: this package as a patch against a PyTorch checkout.

:func:`build_diff` returns a unified diff that ``git apply`` accepts at the root of a
PyTorch checkout of the installed version (or of the tree given as ``torch_src``).
It touches:

1. ``torch/nn/utils/parametrizations.py``: upstream's orthogonal section (from
   ``def _is_orthogonal`` to the end of ``def orthogonal``) is replaced by ours, the
   new public names are added to ``__all__`` and the imports our section needs are
   added to upstream's import block.
2. ``torch/nn/modules/rnn.py``: the ``RNNBase`` methods that
   :mod:`torch_ortho_patch._rnn` replaces.
3. ``test/nn/test_parametrization_orthogonal_blocks.py`` (new): the block checks of
   ``test/_block_checks.py`` with a small ``TestCase`` that runs them against
   :mod:`torch.nn.utils.parametrizations`.
4. ``docs/source/nn.md`` (or ``nn.rst``), only with ``torch_src``: autosummary entries
   for the new public functions.

Everything is located with :mod:`ast` in the files as they are, so nothing of
upstream is stored here, and the result never refers to :mod:`torch_ortho_patch`.
"""

import ast
import builtins
import difflib
import os
import symtable
import sys
import textwrap
from pathlib import Path

import torch


__all__ = ["build_diff", "patched_files"]

PARAMETRIZATIONS = "torch/nn/utils/parametrizations.py"
RNN = "torch/nn/modules/rnn.py"
BLOCKS_TEST = "test/nn/test_parametrization_orthogonal_blocks.py"
DOCS = ("docs/source/nn.md", "docs/source/nn.rst")

# The RNNBase methods replaced by the functions of the same name in _rnn.py.
_RNN_METHODS = ("_init_flat_weights", "_update_flat_weights")
# Line length of PyTorch's formatter.
_LINE_LENGTH = 88
_PACKAGE = Path(__file__).parent
_OURS = "torch_ortho_patch"


def _torch_root(torch_src: str | os.PathLike | None) -> Path:
    if torch_src is None:
        # The directory that holds the installed torch package.
        return Path(torch.__file__).parent.parent
    root = Path(torch_src)
    if not (root / PARAMETRIZATIONS).is_file():
        raise ValueError(
            f"Expected a PyTorch source tree that contains {PARAMETRIZATIONS}. "
            f"Got {str(torch_src)!r}."
        )
    return root


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


# ----------------------------------------------------------------------------
# Locating things with ast


def _span(node: ast.stmt) -> tuple[int, int]:
    r"""Return the 1-based, inclusive line span of a statement and its decorators."""
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno] + [d.lineno for d in decorators])
    return start, node.end_lineno  # type: ignore[return-value]


def _find_def(body: list[ast.stmt], name: str, where: str) -> ast.stmt:
    for node in body:
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name == name
        ):
            return node
    raise RuntimeError(f"Expected {where} to define {name}. It does not.")


def _find_all(tree: ast.Module, where: str) -> ast.Assign:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return node
    raise RuntimeError(f"Expected {where} to assign __all__. It does not.")


def _bound_names(nodes: list[ast.stmt]) -> set[str]:
    r"""Return the names that a list of top-level statements binds."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
    return names


def _free_names(source: str) -> set[str]:
    r"""Return the global names that ``source`` reads but does not define."""
    table = symtable.symtable(source, "<section>", "exec")
    defined = {
        s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()
    }
    used: set[str] = set()
    stack = [table]
    while stack:
        scope = stack.pop()
        stack.extend(scope.get_children())
        for s in scope.get_symbols():
            if s.is_referenced() and (scope.get_type() == "module" or s.is_global()):
                used.add(s.get_name())
    return used - defined - set(dir(builtins))


# ----------------------------------------------------------------------------
# Imports


def _is_stdlib(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return False
        module = node.module or ""
    else:
        module = node.names[0].name
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top in ("__future__", "typing_extensions")


def _sort_key(node: ast.Import | ast.ImportFrom) -> tuple[bool, str]:
    # PyTorch's isort settings: "import x" before "from x import y", then by module,
    # case-insensitively.
    if isinstance(node, ast.ImportFrom):
        return True, "." * node.level + (node.module or "").lower()
    return False, node.names[0].name.lower()


def _alias(alias: ast.alias) -> str:
    return alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"


def _format_from(module: str, aliases: list[ast.alias]) -> list[str]:
    names = sorted({_alias(a) for a in aliases}, key=str.lower)
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= _LINE_LENGTH:
        return [line + "\n"]
    return [f"from {module} import (\n", *[f"    {n},\n" for n in names], ")\n"]


def _import_for(name: str, imports: list[ast.Import | ast.ImportFrom]):
    r"""Return a one-name copy of the import statement that binds ``name``."""
    for node in imports:
        for alias in node.names:
            if (alias.asname or alias.name.split(".")[0]) == name:
                if isinstance(node, ast.Import):
                    return ast.Import(names=[alias])
                return ast.ImportFrom(
                    module=node.module, names=[alias], level=node.level
                )
    return None


def _add_imports(
    text: str, needed: set[str], source_imports: list, where: str
) -> tuple[str, list[str]]:
    r"""Add to ``text`` the imports of ``needed`` names, taken from ``source_imports``.

    A ``from m import x`` joins an existing single ``from m import ...`` statement;
    anything else goes into the group of its kind (standard library or not) at its
    sorted place, so the import block reads as if the formatter had written it.
    Returns the new text and the statements that were added or changed.
    """
    tree = ast.parse(text)
    bound = _bound_names(tree.body)
    missing = sorted(needed - bound)
    if not missing:
        return text, []
    new_nodes = []
    for name in missing:
        node = _import_for(name, source_imports)
        if node is None:
            raise RuntimeError(
                f"Expected {name!r} to be defined in {where} or imported by the "
                "torch_ortho_patch source. It is neither."
            )
        new_nodes.append(node)

    lines = text.splitlines(keepends=True)
    # The leading run of top-level imports, split into blank-line separated groups.
    head: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            head.append(node)
        elif head or not (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ):
            break
    groups: list[list[ast.stmt]] = []
    for node in head:
        between = range(groups[-1][-1].end_lineno, node.lineno - 1) if groups else ()
        if groups and not any(lines[i].strip() == "" for i in between):
            groups[-1].append(node)
        else:
            groups.append([node])

    # A "from m import x" joins an existing "from m import ..." statement.
    merges: dict[int, list[ast.alias]] = {}
    inserts: list[ast.Import | ast.ImportFrom] = []
    for node in new_nodes:
        target = None
        if isinstance(node, ast.ImportFrom):
            target = next(
                (
                    i
                    for i, old in enumerate(head)
                    if isinstance(old, ast.ImportFrom)
                    and (old.module, old.level) == (node.module, node.level)
                ),
                None,
            )
        if target is None:
            same = next(
                (
                    n
                    for n in inserts
                    if isinstance(node, ast.ImportFrom)
                    and isinstance(n, ast.ImportFrom)
                    and (n.module, n.level) == (node.module, node.level)
                ),
                None,
            )
            if same is None:
                inserts.append(node)
            else:
                same.names = same.names + node.names
        else:
            merges.setdefault(target, list(head[target].names)).extend(node.names)

    # edits: 0-based line -> (number of lines replaced, lines inserted there)
    edits: list[tuple[int, int, list[str]]] = []
    changed: list[str] = []
    for i, aliases in merges.items():
        old = head[i]
        module = "." * old.level + (old.module or "")  # type: ignore[attr-defined]
        new_lines = _format_from(module, aliases)
        edits.append((old.lineno - 1, old.end_lineno - old.lineno + 1, new_lines))
        changed.append("".join(new_lines).strip())
    # Imports of a kind that has no group yet form a new group, in sorted order.
    new_groups: dict[bool, list[str]] = {}
    for node in sorted(inserts, key=_sort_key):
        if isinstance(node, ast.ImportFrom):
            new_lines = _format_from("." * node.level + (node.module or ""), node.names)
        else:
            new_lines = [f"import {_alias(node.names[0])}\n"]
        changed.append("".join(new_lines).strip())
        stdlib = _is_stdlib(node)
        group = next((g for g in groups if _is_stdlib(g[0]) == stdlib), None)
        if group is None:
            new_groups.setdefault(stdlib, []).extend(new_lines)
            continue
        after = [old for old in group if _sort_key(old) > _sort_key(node)]
        at = after[0].lineno - 1 if after else group[-1].end_lineno
        edits.append((at, 0, new_lines))
    # The standard library group comes first.
    for stdlib in sorted(new_groups, reverse=True):
        new_lines = new_groups[stdlib]
        if not groups:
            # No imports at all: put them after the module docstring, if any.
            first = tree.body[0] if tree.body else None
            docstring = isinstance(first, ast.Expr)
            at = first.end_lineno if docstring else 0  # type: ignore[union-attr]
            edits.append((at, 0, (["\n"] if docstring else []) + new_lines + ["\n"]))
            groups.append([])  # a second new group goes after this one
        elif stdlib:
            edits.append((groups[0][0].lineno - 1, 0, new_lines + ["\n"]))
        elif groups[-1]:
            edits.append((groups[-1][-1].end_lineno, 0, ["\n"] + new_lines))
        else:
            # After the group just created above, at the same line.
            edits.append((edits[-1][0], 0, new_lines + ["\n"]))
    # Apply bottom to top. At one line, replace first, then insert in sorted order.
    for _, (at, deleted, inserted) in sorted(
        enumerate(edits), key=lambda e: (e[1][0], e[1][1] > 0, e[0]), reverse=True
    ):
        lines[at : at + deleted] = inserted
    return "".join(lines), changed


# ----------------------------------------------------------------------------
# The four files


def _format_all(names: list[str]) -> list[str]:
    quoted = [f'"{n}"' for n in names]
    line = f"__all__ = [{', '.join(quoted)}]"
    if len(line) <= _LINE_LENGTH:
        return [line + "\n"]
    return ["__all__ = [\n", *[f"    {q},\n" for q in quoted], "]\n"]


def _our_section() -> tuple[str, list[str], list]:
    r"""Return our orthogonal section, our ``__all__`` and our top-level imports.

    The section is everything after ``__all__`` in our parametrizations.py.
    """
    path = _PACKAGE / "parametrizations.py"
    text = _read(path)
    tree = ast.parse(text)
    node = _find_all(tree, str(path))
    lines = text.splitlines(keepends=True)
    section = "".join(lines[node.end_lineno :]).strip("\n") + "\n"
    if _OURS in section:
        raise RuntimeError(
            f"Expected the orthogonal section of {path} not to refer to {_OURS}. "
            "It does."
        )
    imports = [
        n
        for n in tree.body[: tree.body.index(node)]
        if isinstance(n, (ast.Import, ast.ImportFrom))
        and not (isinstance(n, ast.ImportFrom) and (n.module or "").startswith(_OURS))
    ]
    return section, list(ast.literal_eval(node.value)), imports


def _patch_parametrizations(text: str) -> str:
    section, our_all, our_imports = _our_section()
    tree = ast.parse(text)
    first = _find_def(tree.body, "_is_orthogonal", PARAMETRIZATIONS)
    last = _find_def(tree.body, "orthogonal", PARAMETRIZATIONS)
    start, end = _span(first)[0], _span(last)[1]
    if start > end:
        raise RuntimeError(
            f"Expected _is_orthogonal to come before orthogonal in {PARAMETRIZATIONS}."
        )
    all_node = _find_all(tree, PARAMETRIZATIONS)
    upstream_all = list(ast.literal_eval(all_node.value))
    new_all = our_all + [n for n in upstream_all if n not in our_all]

    lines = text.splitlines(keepends=True)
    # Bottom to top, so that line numbers above stay valid.
    lines[start - 1 : end] = section.splitlines(keepends=True)
    a_start, a_end = _span(all_node)
    lines[a_start - 1 : a_end] = _format_all(new_all)
    patched = "".join(lines)

    kept = [
        n for n in tree.body if not (start <= n.lineno <= end) and n is not all_node
    ]
    needed = _free_names(section) - _bound_names(kept)
    patched, _ = _add_imports(patched, needed, our_imports, PARAMETRIZATIONS)

    missing = set(new_all) - _bound_names(ast.parse(patched).body)
    if missing:
        raise RuntimeError(
            f"Expected every name of __all__ to be defined. Missing: {sorted(missing)}."
        )
    return patched


def _patch_rnn(text: str) -> str:
    ours_path = _PACKAGE / "_rnn.py"
    ours_text = _read(ours_path)
    ours_tree = ast.parse(ours_text)
    ours_lines = ours_text.splitlines(keepends=True)
    ours_imports = [
        n for n in ours_tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
    ]

    tree = ast.parse(text)
    cls = _find_def(tree.body, "RNNBase", RNN)
    lines = text.splitlines(keepends=True)
    replacements = []
    sources = []
    for name in _RNN_METHODS:
        where = f"{RNN} (class RNNBase)"
        method = _find_def(cls.body, name, where)  # type: ignore[attr-defined]
        s, e = _span(_find_def(ours_tree.body, name, str(ours_path)))
        source = textwrap.dedent("".join(ours_lines[s - 1 : e]))
        sources.append(source)
        indent = " " * method.col_offset
        body = [
            indent + line if line.strip() else line
            for line in source.splitlines(keepends=True)
        ]
        replacements.append((_span(method), body))
    for (start, end), body in sorted(replacements, reverse=True):
        lines[start - 1 : end] = body
    patched = "".join(lines)
    needed = set()
    for source in sources:
        needed |= _free_names(source)
    patched, _ = _add_imports(patched, needed, ours_imports, RNN)
    return patched


def _blocks_test(checks: Path) -> str:
    r"""Return the new upstream test file, built from our ``_block_checks.py``."""
    text = _read(checks)
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    body = list(tree.body)
    # Our module docstring speaks of this package; the upstream file gets its own.
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        body = body[1:]
    if body and _OURS in "".join(lines[body[0].lineno - 1 :]):
        raise RuntimeError(f"Expected {checks} not to refer to {_OURS}. It does.")
    docstring = [
        '"""Tests of ``blocks`` in torch.nn.utils.parametrizations.orthogonal and of\n',
        'the orthogonal maps. Each check raises AssertionError on failure."""\n',
    ]
    imports = []
    while body and isinstance(body[0], (ast.Import, ast.ImportFrom)):
        imports.append(body.pop(0))
    # Drop a trailing `if __name__ == "__main__":`; the runner below has its own.
    rest = [
        n
        for n in body
        if not (isinstance(n, ast.If) and "__name__" in ast.unparse(n.test))
    ]
    # Keep comments between statements: copy from the first kept statement to the last.
    body_text = ""
    if rest:
        start = _span(rest[0])[0]
        prev = rest[0].lineno - 1
        # Include a comment block right above the first statement.
        while prev - 1 >= 0 and lines[prev - 1].lstrip().startswith("#"):
            prev -= 1
        start = min(start, prev + 1)
        body_text = "".join(lines[start - 1 : rest[-1].end_lineno]).strip("\n") + "\n"

    header = ['# Owner(s): ["module: nn"]\n', *docstring]
    import_lines = []
    for node in imports:
        import_lines += lines[node.lineno - 1 : node.end_lineno]
    runner = textwrap.dedent(
        '''\


        class TestOrthogonalBlocks(TestCase):
            def test_block_checks(self):
                run_block_checks(P)


        if __name__ == "__main__":
            run_tests()
        '''
    )
    new = "".join(header + import_lines) + "\n\n" + body_text + runner
    runner_imports = ast.parse(
        "import torch.nn.utils.parametrizations as P\n"
        "from torch.testing._internal.common_utils import run_tests, TestCase\n"
    ).body
    needed = {"P", "TestCase", "run_tests"}
    new, _ = _add_imports(new, needed, runner_imports, BLOCKS_TEST)
    if "run_block_checks" not in _bound_names(ast.parse(new).body):
        raise RuntimeError(f"Expected {checks} to define run_block_checks(P).")
    return new


def _patch_docs(text: str) -> str:
    names = [n for n in _our_section()[1] if n not in ("orthogonal",)]
    lines = text.splitlines(keepends=True)
    present = {line.strip() for line in lines}
    for i, line in enumerate(lines):
        if line.strip() == "parametrizations.orthogonal":
            indent = line[: len(line) - len(line.lstrip())]
            new = [
                f"{indent}parametrizations.{n}\n"
                for n in names
                if f"parametrizations.{n}" not in present
                and n not in ("spectral_norm", "weight_norm")
            ]
            lines[i + 1 : i + 1] = new
            return "".join(lines)
    return text


def patched_files(
    torch_src: str | os.PathLike | None = None,
    block_checks: str | os.PathLike | None = None,
) -> dict[str, tuple[str | None, str]]:
    r"""Return ``{path: (old text or None for a new file, new text)}`` for the diff.

    Args:
        torch_src (str or PathLike, optional): root of a PyTorch checkout. Default:
            the directory that holds the installed ``torch`` package (which has no
            ``docs``, so the docs entry is left out).
        block_checks (str or PathLike, optional): the ``_block_checks.py`` that the
            new upstream test is built from. Default: ``test/_block_checks.py`` next
            to this package; the test file is left out when it does not exist.
    """
    root = _torch_root(torch_src)
    files: dict[str, tuple[str | None, str]] = {}
    old = _read(root / PARAMETRIZATIONS)
    files[PARAMETRIZATIONS] = (old, _patch_parametrizations(old))
    old = _read(root / RNN)
    files[RNN] = (old, _patch_rnn(old))
    checks = (
        Path(block_checks)
        if block_checks is not None
        else _PACKAGE.parent / "test" / "_block_checks.py"
    )
    if checks.is_file():
        existing = root / BLOCKS_TEST
        files[BLOCKS_TEST] = (
            _read(existing) if existing.is_file() else None,
            _blocks_test(checks),
        )
    if torch_src is not None:
        for docs in DOCS:
            if (root / docs).is_file():
                old = _read(root / docs)
                files[docs] = (old, _patch_docs(old))
                break
    for path, (_, new) in files.items():
        if _OURS in new:
            raise AssertionError(f"The patched {path} refers to {_OURS}.")
    return files


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


def build_diff(
    torch_src: str | os.PathLike | None = None,
    block_checks: str | os.PathLike | None = None,
) -> str:
    r"""Return the upstream change as a unified diff for ``git apply``.

    Apply it at the root of a PyTorch checkout of the installed version (or of
    ``torch_src``) with ``git apply``. See :func:`patched_files` for the arguments.

    Returns:
        str: the diff, ending with a newline; empty if there is nothing to change.

    Example::

        >>> from torch_ortho_patch._upstream import build_diff
        >>> patch = build_diff()
        >>> patch.splitlines()[0]
        'diff --git a/torch/nn/utils/parametrizations.py b/torch/nn/utils/parametrizations.py'
        >>> "torch_ortho_patch" in patch
        False
    """
    files = patched_files(torch_src, block_checks)
    return "".join(_unified(path, old, new) for path, (old, new) in files.items())
