# mypy: allow-untyped-defs
r"""Copy definitions and comments out of a patch module, for its edits."""

import ast
import functools
from pathlib import Path


__all__: list[str] = []


@functools.cache
def _module_text(file: str) -> str:
    return Path(file).read_text(encoding="utf-8")


def source_of(file: str, *names: str) -> str:
    r"""Return the source of the top-level statements ``names`` of ``file``.

    A statement is a definition or an assignment to a name. Each comes with the
    comment block right above it (a ``# Note [...]``, say), and they are joined
    with two blank lines, in the order given.
    """
    text = _module_text(file)
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    found = {}
    for node in tree.body:
        name = getattr(node, "name", None)
        if name is None and isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", None)
        if name in names:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            while start > 1 and lines[start - 2].lstrip().startswith("#"):
                start -= 1
            found[name] = "".join(lines[start - 1 : node.end_lineno]).rstrip("\n") + "\n"
    missing = [n for n in names if n not in found]
    if missing:
        raise AssertionError(f"Expected {file} to define {missing}.")
    return "\n\n".join(found[n] for n in names)
