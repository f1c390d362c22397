# mypy: allow-untyped-defs
r"""Edit Python source at structural anchors.

Each function here takes the text of a file and returns the edited text. The
place of an edit is found with :mod:`ast` in the text as it is (a definition by
its dotted name, a statement or an expression by a predicate on its node, a
docstring line by a predicate on its text), never by context lines stored here,
so the same edit applies to every release whose code has the same structure,
whatever its formatting. Only the lines of the anchor change; everything else is
kept byte for byte.

See Note [Amend, don't replace] in :mod:`torch_ortho_patch._stack`.
"""

import ast
import contextlib
import io
import sys
import textwrap
import threading
import tokenize
from collections import OrderedDict
from collections.abc import Callable, Iterator


__all__: list[str] = []

# Line length of PyTorch's formatter.
LINE_LENGTH = 88

Pred = Callable[[ast.AST], bool]


class AnchorError(RuntimeError):
    r"""The structure an edit expects is not in the file."""


# ----------------------------------------------------------------------------
# Parsing

# Note [One parse per text]
# ~~~~~~~~~~~~~~~~~~~~~~~~~
# Every edit finds its anchor in a fresh tree of the text it is given, so that
# no edit can see a stale node. A stack of edits therefore parses the file
# once per edit, and some anchors parse it once per candidate node: applying
# the stack to parametrizations.py took about 190 parses of the same few dozen
# texts, most of the cost of a first import. Within parse_once() (what
# torch_ortho_patch._stack.apply uses), parse() hands out one tree per text
# instead. Nothing here or in the patches changes a tree it is given, so a
# shared tree is as good as a fresh one. Only the last few texts are kept: an
# edit returns a new text, and the trees of a 50 KB file are megabytes each.
_PARSED_KEPT = 4
_local = threading.local()


@contextlib.contextmanager
def parse_once() -> Iterator[None]:
    r"""Within this context, :func:`parse` returns one shared tree per text.

    See Note [One parse per text].
    """
    outer = getattr(_local, "trees", None)
    if outer is None:
        _local.trees = OrderedDict()
    try:
        yield
    finally:
        if outer is None:
            _local.trees = None


def parse(text: str) -> ast.Module:
    r"""Return ``ast.parse(text)``; a tree to read, never to change.

    See Note [One parse per text].
    """
    trees = getattr(_local, "trees", None)
    if trees is None:
        return ast.parse(text)
    tree = trees.get(text)
    if tree is None:
        tree = trees[text] = ast.parse(text)
        if len(trees) > _PARSED_KEPT:
            trees.popitem(last=False)
    else:
        trees.move_to_end(text)
    return tree


def segment(text: str, node: ast.AST) -> str:
    r"""Return the source of ``node`` in ``text``, as ``ast.get_source_segment``.

    That one splits the whole text into lines in Python on every call; this
    splits it with :meth:`str.splitlines`, as every edit here does.
    """
    lines = _lines(text)
    start = _offset(lines, node.lineno, node.col_offset)  # type: ignore[attr-defined]
    end = _offset(lines, node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
    return text[start:end]


# ----------------------------------------------------------------------------
# Locating


def find_def(tree: ast.Module, path: str) -> ast.stmt:
    r"""Return the definition ``path`` (``"f"``, ``"Class"``, ``"Class.method"``)."""
    body: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for part in path.split("."):
        node = next(
            (
                n
                for n in body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and n.name == part
            ),
            None,
        )
        if node is None:
            raise AnchorError(f"Expected a definition of {path}. There is none.")
        body = node.body  # type: ignore[attr-defined]
    return node  # type: ignore[return-value]


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(node, field, []))
        for handler in getattr(node, "handlers", []):
            yield from _statements(handler.body)


def _unique(nodes: list, what: str, path: str):
    if len(nodes) != 1:
        raise AnchorError(
            f"Expected exactly one {what} in {path}. Found {len(nodes)}."
        )
    return nodes[0]


def find_stmt(tree: ast.Module, path: str, pred: Pred, what: str) -> ast.stmt:
    r"""Return the one statement of ``path`` (at any depth) for which ``pred`` holds.

    Of nested statements that all match (an ``if`` and the call inside it), the
    innermost is the one.
    """
    scope = find_def(tree, path)
    matches = [n for n in _statements(scope.body) if pred(n)]  # type: ignore[attr-defined]
    inner = [
        n
        for n in matches
        if not any(m is not n and m in set(_statements(_children(n))) for m in matches)
    ]
    return _unique(inner, what, path)


def _children(node: ast.stmt) -> list[ast.stmt]:
    out = []
    for name in ("body", "orelse", "finalbody"):
        out += getattr(node, name, [])
    for handler in getattr(node, "handlers", []):
        out += handler.body
    return out


def find_expr(tree: ast.Module, path: str, pred: Pred, what: str) -> ast.expr:
    r"""Return the one expression node inside ``path`` for which ``pred`` holds."""
    scope = find_def(tree, path)
    nodes = [n for n in ast.walk(scope) if isinstance(n, ast.expr) and pred(n)]
    return _unique(nodes, what, path)


# Predicates on nodes, for anchors.


def calls(attr: str) -> Pred:
    r"""Whether a node contains a call of a function or method named ``attr``."""

    def pred(node):
        return any(
            isinstance(n, ast.Call)
            and (
                (isinstance(n.func, ast.Attribute) and n.func.attr == attr)
                or (isinstance(n.func, ast.Name) and n.func.id == attr)
            )
            for n in ast.walk(node)
        )

    return pred


def dotted(node: ast.AST) -> str | None:
    r"""Return ``"a.b.c"`` for a chain of attributes on a name, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def assigns(name: str) -> Pred:
    r"""Whether a node is an assignment (plain or augmented) to ``name``."""

    def pred(node):
        if isinstance(node, ast.Assign):
            return any(dotted(t) == name for t in node.targets)
        if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            return dotted(node.target) == name
        return False

    return pred


def both(*preds: Pred) -> Pred:
    return lambda node: all(p(node) for p in preds)


# ----------------------------------------------------------------------------
# Text helpers


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _indent(src: str, indent: str) -> list[str]:
    r"""Dedent ``src`` and indent its non-blank lines by ``indent``."""
    src = textwrap.dedent(src).strip("\n") + "\n"
    return [indent + line if line.strip() else "\n" for line in _lines(src)]


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _offset(lines: list[str], lineno: int, col: int) -> int:
    r"""Character offset of (1-based line, 0-based UTF-8 byte column)."""
    prefix = lines[lineno - 1].encode("utf-8")[:col].decode("utf-8")
    return sum(len(line) for line in lines[: lineno - 1]) + len(prefix)


# ----------------------------------------------------------------------------
# Edits


def replace_stmt(text: str, path: str, pred: Pred, new: str, what: str) -> str:
    r"""Replace the lines of one statement of ``path`` by ``new`` (same indent)."""
    node = find_stmt(parse(text), path, pred, what)
    lines = _lines(text)
    indent = _leading(lines[node.lineno - 1])
    lines[node.lineno - 1 : node.end_lineno] = _indent(new, indent) if new else []
    return "".join(lines)


def insert_stmts(
    text: str, path: str, pred: Pred, new: str, what: str, *, after: bool
) -> str:
    r"""Insert statements before or after one statement of ``path``."""
    node = find_stmt(parse(text), path, pred, what)
    lines = _lines(text)
    indent = _leading(lines[node.lineno - 1])
    at = node.end_lineno if after else node.lineno - 1
    lines[at:at] = _indent(new, indent)
    return "".join(lines)


def replace_comment_above(text: str, path: str, pred: Pred, new: str, what: str) -> str:
    r"""Replace the comment lines right above one statement of ``path`` by ``new``.

    For a comment whose statement the edit makes false. The comment is the run
    of ``#`` lines that ends on the line above the statement; it must exist.
    """
    node = find_stmt(ast.parse(text), path, pred, what)
    lines = _lines(text)
    start = node.lineno - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    if start == node.lineno - 1:
        raise AnchorError(f"Expected a comment above the {what} in {path}.")
    indent = _leading(lines[node.lineno - 1])
    lines[start : node.lineno - 1] = _indent(new, indent)
    return "".join(lines)


def replace_expr(text: str, path: str, pred: Pred, new: str, what: str) -> str:
    r"""Replace the source of one expression inside ``path`` by ``new``."""
    node = find_expr(parse(text), path, pred, what)
    lines = _lines(text)
    start = _offset(lines, node.lineno, node.col_offset)
    end = _offset(lines, node.end_lineno, node.end_col_offset)  # type: ignore[arg-type]
    return text[:start] + new + text[end:]


def _top_level_gap(lines: list[str], at: int) -> int:
    # Skip back over blank lines, so that insertions keep two blank lines around.
    while at > 0 and not lines[at - 1].strip():
        at -= 1
    return at


def insert_defs(text: str, new: str, *, after: str | None = None, before: str | None = None) -> str:
    r"""Insert top-level definitions after or before the definition named ``after``/``before``.

    Two blank lines separate them from their neighbours, as the formatter wants.
    """
    tree = parse(text)
    lines = _lines(text)
    block = _indent(new, "")
    if after is not None:
        node = find_def(tree, after)
        at = node.end_lineno
        lines[at:at] = ["\n", "\n", *block]
    else:
        node = find_def(tree, before)  # type: ignore[arg-type]
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        # Keep a comment block right above ``before`` attached to it.
        at = start - 1
        while at > 0 and lines[at - 1].lstrip().startswith("#"):
            at -= 1
        lines[at:at] = [*block, "\n", "\n"]
    return "".join(lines)


def insert_method(text: str, cls: str, new: str, *, after: str) -> str:
    r"""Insert a method into class ``cls`` after its method ``after``."""
    tree = parse(text)
    node = find_def(tree, f"{cls}.{after}")
    lines = _lines(text)
    indent = _leading(lines[node.lineno - 1])
    at = node.end_lineno
    lines[at:at] = ["\n", *_indent(new, indent)]
    return "".join(lines)


def _render_arg(text: str, arg: ast.arg, default: ast.expr | None) -> str:
    out = arg.arg
    if arg.annotation is not None:
        out += ": " + segment(text, arg.annotation)  # type: ignore[operator]
        if default is not None:
            out += " = " + segment(text, default)  # type: ignore[operator]
    elif default is not None:
        out += "=" + segment(text, default)  # type: ignore[operator]
    return out


def add_kwonly_arg(text: str, path: str, arg_src: str) -> str:
    r"""Add a keyword-only argument (``"name: T = default"``) last to ``def path``.

    A signature without keyword-only arguments gets a bare ``*`` before it. The
    signature keeps its layout where the new argument fits: a new line in a
    signature with one argument per line, or the same line otherwise. Where it
    does not fit, the signature is laid out one argument per line, as the
    formatter does.
    """
    tree = parse(text)
    node = find_def(tree, path)
    args = node.args  # type: ignore[attr-defined]
    positional = args.posonlyargs + args.args
    if (
        args.vararg is not None
        or args.kwarg is not None
        or not (args.kwonlyargs or args.args)
    ):
        raise AnchorError(
            f"Expected {path} to have keyword-only arguments after a bare *, "
            "or positional arguments only."
        )
    lines = _lines(text)
    if args.kwonlyargs:
        last, default = args.kwonlyargs[-1], args.kw_defaults[-1]
        new_args = [arg_src]
    else:
        last = positional[-1]
        default = args.defaults[-1] if args.defaults else None
        new_args = ["*", arg_src]
    tail = default if default is not None else last
    end_line = lines[tail.end_lineno - 1]
    end_col = len(end_line.encode("utf-8")[: tail.end_col_offset].decode("utf-8"))
    rest = end_line[end_col:]
    if rest.rstrip("\n").strip() == ",":
        # One argument per line: a new line each, indented like the last one.
        indent = _leading(lines[last.lineno - 1])
        lines[tail.end_lineno : tail.end_lineno] = [f"{indent}{a},\n" for a in new_args]
        return "".join(lines)
    joined = end_line[:end_col] + ", " + ", ".join(new_args) + rest
    if len(joined.rstrip("\n")) <= LINE_LENGTH:
        lines[tail.end_lineno - 1] = joined
        return "".join(lines)
    # Lay out the signature one argument per line.
    indent = _leading(lines[node.lineno - 1])
    inner = indent + "    "
    pos = args.posonlyargs + args.args
    defaults = [None] * (len(pos) - len(args.defaults)) + list(args.defaults)
    parts = [_render_arg(text, a, d) for a, d in zip(pos, defaults, strict=True)]
    if args.posonlyargs:
        parts.insert(len(args.posonlyargs), "/")
    parts.append("*")
    parts += [
        _render_arg(text, a, d)
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    parts.append(arg_src)
    returns = (
        f" -> {segment(text, node.returns)}"  # type: ignore[attr-defined]
        if node.returns is not None  # type: ignore[attr-defined]
        else ""
    )
    header = [f"{indent}def {node.name}(\n"]  # type: ignore[attr-defined]
    header += [f"{inner}{p},\n" for p in parts]
    header.append(f"{indent}){returns}:\n")
    body_start = node.body[0].lineno  # type: ignore[attr-defined]
    # The header ends on the line before the first statement of the body.
    lines[node.lineno - 1 : body_start - 1] = header
    return "".join(lines)


def _header_end(text: str, node: ast.stmt) -> int:
    r"""Return the 1-based line of the colon that ends the header of ``node``."""
    lines = _lines(text)
    start = node.lineno
    source = "".join(lines[start - 1 :])
    depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.OP:
            if tok.string in "([{":
                depth += 1
            elif tok.string in ")]}":
                depth -= 1
            elif tok.string == ":" and depth == 0:
                return start + tok.start[0] - 1
    raise AnchorError(f"Expected a compound statement at line {start}.")


def replace_header(text: str, path: str, new: str, pred: Pred | None = None, what: str = "") -> str:
    r"""Replace the header (``def ...:``, ``for ...:``) of ``def path``, or of the
    one compound statement in it for which ``pred`` holds, by ``new``."""
    tree = parse(text)
    node = find_def(tree, path) if pred is None else find_stmt(tree, path, pred, what)
    lines = _lines(text)
    indent = _leading(lines[node.lineno - 1])
    lines[node.lineno - 1 : _header_end(text, node)] = _indent(new, indent)
    return "".join(lines)


def replace_in_list(text: str, name: str, after: str, new_names: list[str]) -> str:
    r"""Insert strings into the top-level list assigned to ``name``, after ``after``.

    The list keeps the quotes it uses; it is laid out one item per line when it no
    longer fits on its line.
    """
    tree = parse(text)
    node = next(
        (
            n
            for n in tree.body
            if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)
        ),
        None,
    )
    if node is None or not isinstance(node.value, ast.List):
        raise AnchorError(f"Expected a top-level list assigned to {name}. There is none.")
    items = list(ast.literal_eval(node.value))
    if after not in items:
        raise AnchorError(f"Expected {after!r} in {name}. Got {items!r}.")
    i = items.index(after) + 1
    items[i:i] = [n for n in new_names if n not in items]
    source = segment(text, node.value)
    quote = "'" if source[1:2] == "'" or "['" in source else '"'
    quoted = [f"{quote}{n}{quote}" for n in items]
    one = f"{name} = [{', '.join(quoted)}]\n"
    new = [one] if len(one) - 1 <= LINE_LENGTH else [f"{name} = [\n", *[f"    {q},\n" for q in quoted], "]\n"]
    lines = _lines(text)
    lines[node.lineno - 1 : node.end_lineno] = new
    return "".join(lines)


# ----------------------------------------------------------------------------
# Docstrings


def _docstring_node(tree: ast.Module, path: str) -> ast.Constant:
    node = find_def(tree, path)
    first = node.body[0]  # type: ignore[attr-defined]
    if not (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        raise AnchorError(f"Expected {path} to have a docstring. It has none.")
    return first.value


def docstring_insert(
    text: str,
    path: str,
    new: str,
    *,
    before: Callable[[str], bool],
    what: str,
    skip_blank_back: bool = False,
    blank_after: bool = True,
    blank_before: bool = False,
    relative: str = "",
) -> str:
    r"""Insert lines into the docstring of ``path``, before its first line that matches.

    ``before`` is a predicate on a stripped docstring line (a section header such
    as ``"Returns:"``, a directive such as ``".. note::"``). With
    ``skip_blank_back``, the lines go before the blank lines that precede the
    match, which appends them to the section above it. ``new`` is dedented, then
    indented like the matching line plus ``relative``.
    """
    tree = parse(text)
    doc = _docstring_node(tree, path)
    lines = _lines(text)
    # The docstring's lines other than the opening one.
    first, last = doc.lineno, doc.end_lineno
    match = next(
        (i for i in range(first, last) if before(lines[i].strip())), None
    )  # 0-based index i is line i + 1
    if match is None:
        raise AnchorError(f"Expected {what} in the docstring of {path}. There is none.")
    indent = _leading(lines[match]) if lines[match].strip() else "    "
    at = match
    if skip_blank_back:
        at = _top_level_gap(lines, at)
    block = (["\n"] if blank_before else []) + _indent(new, indent + relative)
    if skip_blank_back:
        lines[at:at] = block
    else:
        lines[at:at] = block + (["\n"] if blank_after else [])
    return "".join(lines)


def ensure_import(text: str, module: str) -> str:
    r"""Add ``import module`` (a standard library module) unless the name is bound.

    It goes after the last standard library import of the first group of
    top-level imports, which is where the formatter would put a module whose
    name sorts after theirs.
    """
    tree = parse(text)
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (a.asname or a.name.split(".")[0]) == module for a in node.names
        ):
            return text
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    stdlib = [
        n
        for n in imports
        if (n.names[0].name if isinstance(n, ast.Import) else (n.module or "")).split(".")[0]
        in sys.stdlib_module_names
        and not getattr(n, "level", 0)
    ]
    lines = _lines(text)
    if stdlib:
        # usort's order: the plain imports by name, then the from-imports.
        plain = [n for n in stdlib if isinstance(n, ast.Import)]
        after = [n for n in plain if _import_name(n) > module]
        if after:
            at = after[0].lineno - 1
        elif plain:
            at = plain[-1].end_lineno  # type: ignore[assignment]
        else:
            at = stdlib[0].lineno - 1
        lines[at:at] = [f"import {module}\n"]
    elif imports:
        at = imports[0].lineno - 1
        lines[at:at] = [f"import {module}\n", "\n"]
    else:
        raise AnchorError("Expected the file to have top-level imports.")
    return "".join(lines)


def _import_name(node: ast.stmt) -> str:
    if isinstance(node, ast.Import):
        return node.names[0].name.lower()
    return (node.module or "").lower()  # type: ignore[attr-defined]


def add_import_last(text: str, statement: str) -> str:
    r"""Add an import statement after the last top-level import of the file."""
    tree = parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    new = ast.unparse(ast.parse(statement).body[0])
    if any(ast.unparse(n) == new for n in imports):
        return text
    if not imports:
        raise AnchorError("Expected the file to have top-level imports.")
    lines = _lines(text)
    at = imports[-1].end_lineno
    lines[at:at] = [statement + "\n"]
    return "".join(lines)
