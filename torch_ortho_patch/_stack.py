# mypy: allow-untyped-defs
r"""The change to PyTorch as an ordered stack of patches, and what is built from it.

Each patch of :mod:`torch_ortho_patch._patches` is one concern: a subject and a
body for its commit message, and an edit function that amends the text of the
files it touches. The same stack builds

* the upstream diff and the PR series (:mod:`torch_ortho_patch._upstream`), by
  applying the patches to PyTorch's files one after the other, and
* this package's runtime (:func:`runtime_namespace`, :func:`rnn_methods`), by
  applying them to the files of the installed torch and compiling only the
  definitions they change or add.

So there is one source of truth, and the runtime is the upstream change.
"""

# Note [Amend, don't replace]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~
# A patch package that carries its own copy of the code it changes silently
# reverts whatever the installed release did differently, and a diff generated
# from such a copy rewrites lines it never meant to touch. So nothing of
# PyTorch's text is stored here. The patches are edits placed at structural
# anchors, found with ast in the file as it is: "the call of .int() in
# _Orthogonal.forward", "the end of the Args section of orthogonal's
# docstring". Applied to the installed torch's files they give a file that
# differs from it only in what the patches change. At runtime we compile just
# the top-level statements (for RNNBase: the methods) that differ, in a
# namespace that starts out as a copy of the installed module's, so every
# definition we leave alone is the installed torch's own object, and each one
# we change is that release's code plus our edits.

import ast
import contextlib
import functools
import gc
import hashlib
import importlib
import importlib.util
import linecache
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


__all__: list[str] = []

PARAMETRIZATIONS = "torch/nn/utils/parametrizations.py"
RNN = "torch/nn/modules/rnn.py"
INIT = "torch/nn/init.py"
SKEW_EXP = "torch/nn/utils/_skew_matrix_exp.py"

# New upstream files and the module of this package that they are at runtime.
NEW_FILES = {SKEW_EXP: "torch_ortho_patch._skew_expm"}

_PACKAGE = Path(__file__).parent


@dataclass(frozen=True)
class Patch:
    r"""One unit of the stack.

    Args:
        name: short identifier, used in file names of the series.
        subject: the commit subject, imperative, under 72 characters.
        body: the commit message body, for a reviewer.
        edit: ``edit(path, text)`` returns the amended text of the file at
            ``path`` (relative to the root of a PyTorch tree). It returns
            ``text`` itself for files it does not touch.
        new_files: upstream paths of files the patch adds; their text is read
            from the module named in :data:`NEW_FILES`.
        upstream: ``False`` for a change the runtime needs only, which is not part
            of the diff.
        tests: names of the test methods that come with the patch (in
            ``test/upstream_tests.py``).
        refs: lines that end the commit message, each ``Fixes #N`` or
            ``See #N`` for a PyTorch issue that the patch fixes or addresses.
        test_plan: what the Test Plan adds after the ``pytest -k`` command of
            ``tests``, such as a benchmark and its results.
        fix: whether the patch fixes a fault of the code it amends, rather
            than adding a feature or speed; the docs count these.
    """

    name: str
    subject: str
    body: str
    edit: Callable[[str, str], str]
    new_files: tuple[str, ...] = ()
    upstream: bool = True
    tests: tuple[str, ...] = field(default=())
    refs: tuple[str, ...] = field(default=())
    test_plan: str = ""
    fix: bool = False


@functools.cache
def patches() -> tuple[Patch, ...]:
    r"""Return the stack in order, upstream patches and runtime-only ones alike."""
    from ._patches import STACK

    return tuple(importlib.import_module(f"._patches.{m}", __package__).PATCH for m in STACK)


def upstream_patches() -> tuple[Patch, ...]:
    return tuple(p for p in patches() if p.upstream)


def new_file_text(path: str) -> str:
    r"""Return the text of a file that the stack adds to PyTorch."""
    module = NEW_FILES[path]
    source = _PACKAGE / (module.rsplit(".", 1)[1] + ".py")
    return _read(source)


def _read(path: os.PathLike | str) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def apply(texts: dict[str, str | None], stack: Iterable[Patch]) -> dict[str, str | None]:
    r"""Apply patches in order to ``{path: text}`` (``None`` for an absent file)."""
    from . import _edits

    out = dict(texts)
    # See Note [One parse per text] in torch_ortho_patch._edits.
    with _edits.parse_once():
        for patch in stack:
            for path in patch.new_files:
                out[path] = new_file_text(path)
            for path, text in list(out.items()):
                if text is not None and path not in patch.new_files:
                    out[path] = patch.edit(path, text)
    return out


def installed_root() -> Path:
    r"""Return the directory that holds the installed ``torch`` package."""
    return Path(torch.__file__).parent.parent


@functools.cache
def _installed_text(path: str) -> str:
    file = installed_root() / path
    try:
        return _read(file)
    except OSError as e:
        raise ImportError(
            f"Expected the source of the installed torch at {file}. {e}"
        ) from None


# ----------------------------------------------------------------------------
# The runtime


def _key(node: ast.stmt) -> tuple[str, str] | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return ("def", node.name)
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if isinstance(target, ast.Name):
            return ("assign", target.id)
    return None


def _segments(text: str, nodes: Sequence[ast.stmt]) -> dict:
    lines = text.splitlines(keepends=True)
    out = {}
    for node in nodes:
        key = _key(node)
        if key is not None:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            out[key] = "".join(lines[start - 1 : node.end_lineno])
    return out


def _free_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


class _ResolveImports(ast.NodeTransformer):
    # Relative imports of the amended file are made absolute, against torch's
    # package, and imports of files that the stack adds to torch become imports
    # of our modules.
    def __init__(self, package: str) -> None:
        self.package = package

    def visit_ImportFrom(self, node):
        if node.level:
            name = "." * node.level + (node.module or "")
            node.module, node.level = importlib.util.resolve_name(name, self.package), 0
        for upstream, ours in NEW_FILES.items():
            if node.module == upstream[:-3].replace("/", "."):
                node.module = ours
        return node


def _filename(path: str, count: int) -> str:
    # A name that says where the code came from. It is not of the form <...>,
    # which linecache would never look up again after linecache.clearcache().
    # See Note [Serving the amended source].
    return f"{path} of torch {torch.__version__}, amended by {count} patches"


# Note [Serving the amended source]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The amended code is compiled from text that is in no file, so tracebacks,
# inspect.getsource() and torch.jit.script read it through linecache. An
# entry put into linecache.cache is gone after linecache.clearcache() (which
# doctest, IPython and test runners call), and linecache then asks
# module_globals["__loader__"].get_source(module_globals["__name__"]) for a
# file that is not on disk: inspect passes the globals of the module that the
# function's __module__ names, a traceback those of the frame. So each
# amended definition names a module of this package as its __module__ (for
# RNNBase's methods, torch_ortho_patch._rnn: see Note [Where the amended
# RNNBase methods say they come from]), and that module's __loader__, like
# the __loader__ of the globals the code runs in, is an _AmendedSource that
# returns the amended text for that module's name and asks the real loader
# for anything else. The real loader stays the module's __spec__.loader,
# which is what importlib uses; and a file that is on disk, such as the
# module's own, is read from disk, never through the loader.


class _AmendedSource:
    r"""A module's ``__loader__`` that serves the amended text to :mod:`linecache`.

    See Note [Serving the amended source].
    """

    def __init__(self, name: str, text: str, loader) -> None:
        while isinstance(loader, _AmendedSource):
            loader = loader.loader
        self.name, self.text, self.loader = name, text, loader

    def get_source(self, fullname: str) -> str | None:
        if fullname == self.name:
            return self.text
        get_source = getattr(self.loader, "get_source", None)
        return None if get_source is None else get_source(fullname)

    def __getattr__(self, attr: str):
        # Everything else is the real loader's.
        loader = vars(self).get("loader")
        if loader is None:
            raise AttributeError(attr)
        return getattr(loader, attr)


def _serve_source(module_globals: dict, filename: str, text: str) -> None:
    r"""Make ``text`` the source of ``filename`` for tracebacks and inspect.

    See Note [Serving the amended source].
    """
    # An entry without a modification time is never invalidated by checkcache().
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    name = module_globals.get("__name__")
    if isinstance(name, str):
        module_globals["__loader__"] = _AmendedSource(
            name, text, module_globals.get("__loader__")
        )


def _module_of(path: str) -> str:
    return path[:-3].replace("/", ".")


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    # Building parses the file some fifty times, and the nodes of a tree are
    # tens of thousands of objects, which makes the cyclic collector run full
    # collections over every object that `import torch` made: a tenth of a
    # second each. The trees hold no cycles; reference counting frees them.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _cached(path: str, what: str, build: Callable[[], Any]) -> Any:
    r"""Return ``build()`` for the whole stack on ``path``, through the runtime cache.

    See Note [The runtime cache] in :mod:`torch_ortho_patch._cache`.
    """
    from . import _cache, _patches

    root = str(installed_root())
    key = _cache.key_of(
        [
            what,
            path,
            _installed_text(path),
            torch.__version__,
            root,
            _cache.package_digest(),
            str(len(_patches.STACK)),
            *_cache.python_key(),
        ]
    )
    # One slot per amended file, torch installation and copy of this package.
    where = f"{root}\0{_PACKAGE}".encode("utf-8", "surrogatepass")
    where = hashlib.sha256(where).hexdigest()[:12]
    slot = f"{_module_of(path)}.{what}.{where}"

    def build_quietly():
        with _collector_paused():
            return build()

    return _cache.load_or_build(slot, key, build_quietly)


def _is_whole_stack(stack: Sequence[Patch] | None) -> bool:
    return stack is None or tuple(stack) == patches()


def _build_namespace(path: str, stack: tuple[Patch, ...]) -> dict:
    r"""Return the amended text of ``path`` and the code of what ``stack`` changes in it."""
    old = _installed_text(path)
    new = apply({path: old}, stack)[path]
    if new is None:
        raise AssertionError(f"Expected the stack to keep {path}.")
    old_tree, new_tree = ast.parse(old), ast.parse(new)
    old_seg, new_seg = _segments(old, old_tree.body), _segments(new, new_tree.body)
    changed = {k for k, v in new_seg.items() if old_seg.get(k) != v}
    # Unchanged definitions that use a changed name must see ours too.
    names = {k[1] for k in changed}
    grew = True
    while grew:
        grew = False
        for node in new_tree.body:
            key = _key(node)
            if key is not None and key not in changed and _free_names(node) & names:
                changed.add(key)
                names.add(key[1])
                grew = True
    body = [
        node
        for node in new_tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom)) or _key(node) in changed
    ]
    installed = importlib.import_module(_module_of(path))
    resolve = _ResolveImports(installed.__package__)
    module = ast.Module(body=[resolve.visit(n) for n in body], type_ignores=[])
    code = compile(module, _filename(path, len(stack)), "exec", dont_inherit=True)
    return {"text": new, "code": code}


def runtime_namespace(
    path: str,
    module_name: str,
    stack: Sequence[Patch] | None = None,
    namespace: dict | None = None,
) -> dict:
    r"""Compile the top-level statements that ``stack`` changes or adds in ``path``.

    The namespace starts as a copy of the installed module's and gets the
    amended definitions, any unchanged definition that refers to one of them,
    and the amended file's imports. See Note [Amend, don't replace]. For the
    whole stack (``stack=None``) what is compiled comes from the runtime cache
    when it can (see Note [The runtime cache] in :mod:`torch_ortho_patch._cache`).
    """
    if _is_whole_stack(stack):
        built = _cached(path, "namespace", lambda: _build_namespace(path, patches()))
    else:
        built = _build_namespace(path, tuple(stack))  # type: ignore[arg-type]
    installed = importlib.import_module(_module_of(path))
    ns = {"__name__": module_name} if namespace is None else namespace
    # See Note [Serving the amended source].
    _serve_source(ns, built["code"].co_filename, built["text"])
    for name, value in vars(installed).items():
        if not (name.startswith("__") and name.endswith("__")):
            ns.setdefault(name, value)
    exec(built["code"], ns)
    return ns


def rnn_methods(stack: Sequence[Patch] | None = None) -> dict[str, Callable]:
    r"""Return the methods of ``RNNBase`` that ``stack`` changes or adds, as functions.

    They are compiled in a copy of the namespace of the installed
    ``torch.nn.modules.rnn``; setting them on ``RNNBase`` (or a subclass) amends it.
    The same stack gives the same function objects.
    """
    stack = None if _is_whole_stack(stack) else tuple(stack)  # type: ignore[arg-type]
    # Built once: install() and amend_rnn_class, in any thread, get the same functions.
    with _build_lock:
        return _rnn_methods(stack)


_build_lock = threading.RLock()


# Note [Where the amended RNNBase methods say they come from]
# The file name compiled into the amended methods has to serve two readers.
# torch.compile decides by file name whether to trace a frame, and it skips
# names that begin with torch's directory. Under a name of their own, Dynamo
# (2.15) traced the amended _update_flat_weights as a frame while the RNN's
# forward runs eagerly, and broke the graph there; the methods they replace are
# skipped. torch.jit.script reads the methods' source through inspect, which
# takes an existing file from disk: under the installed rnn.py's own path it
# got whatever that file has at the same line numbers (on 2.4, the start of
# __getstate__), and refused the LSTM. So the name is the installed path with a
# suffix: Dynamo's prefix rules treat it as rnn.py, no such file exists, and
# inspect (like tracebacks) reads the amended text from linecache. Their
# __module__ is torch_ortho_patch._rnn, whose __loader__ serves that text once
# linecache has been cleared (see Note [Serving the amended source]); torch's
# methods keep torch.nn.modules.rnn, which tells the two apart.

# The module that the amended RNNBase methods of the whole stack name as theirs.
RNN_HOME = "torch_ortho_patch._rnn"


def _build_rnn_methods(stack: tuple[Patch, ...]) -> dict:
    r"""Return the amended text of rnn.py and the code of each amended method."""
    old = _installed_text(RNN)
    new = apply({RNN: old}, stack)[RNN] or ""
    if new == old:
        return {"text": "", "imports": None, "methods": {}}
    old_cls = _class_methods(old, "RNNBase")
    new_tree = ast.parse(new)
    new_cls = _class_methods_of(new_tree, "RNNBase")
    lines = new.splitlines(keepends=True)
    # See Note [Where the amended RNNBase methods say they come from].
    filename = f"{installed_root() / RNN}, amended by {len(stack)} patches"
    from torch.nn.modules import rnn

    # The amended file's imports, for names that the amended methods use.
    resolve = _ResolveImports(rnn.__package__)
    imports = [
        resolve.visit(n)
        for n in new_tree.body
        if isinstance(n, (ast.Import, ast.ImportFrom))
    ]
    imports_code = compile(
        ast.Module(body=imports, type_ignores=[]), filename, "exec", dont_inherit=True
    )
    methods = {}
    for name, node in new_cls.items():
        old_node = old_cls.get(name)
        seg = "".join(lines[node.lineno - 1 : node.end_lineno])
        if old_node is not None and ast.unparse(old_node) == ast.unparse(node):
            continue
        if any(isinstance(n, ast.Name) and n.id in ("super", "__class__") for n in ast.walk(node)):
            raise AssertionError(
                f"Expected the amended RNNBase.{name} not to use super(): it is "
                "compiled outside its class."
            )
        # Keep line numbers: pad with the lines above it, dedented to column 0.
        source = "\n" * (node.lineno - 1) + _dedent_block(seg)
        methods[name] = compile(source, filename, "exec", dont_inherit=True)
    return {"text": new, "imports": imports_code, "methods": methods}


@functools.cache
def _rnn_methods(stack: tuple[Patch, ...] | None) -> dict[str, Callable]:
    from torch.nn.modules import rnn

    if stack is None:
        built = _cached(RNN, "methods", lambda: _build_rnn_methods(patches()))
    else:
        built = _build_rnn_methods(stack)
    if not built["methods"]:
        return {}
    filename = built["imports"].co_filename
    ns = dict(vars(rnn))
    # See Note [Serving the amended source]: for tracebacks, through the frames'
    # globals, and for inspect, through the module named as __module__.
    _serve_source(ns, filename, built["text"])
    home = None
    if stack is None:
        home = importlib.import_module(RNN_HOME)
        _serve_source(vars(home), filename, built["text"])
    exec(built["imports"], ns)
    out = {}
    for name, code in built["methods"].items():
        local: dict = {}
        exec(code, ns, local)
        fn = local[name]
        fn.__qualname__ = f"RNNBase.{name}"
        fn.__module__ = rnn.__name__ if home is None else home.__name__
        out[name] = fn
    return out


def _class_methods(text: str, cls: str) -> dict[str, ast.FunctionDef]:
    return _class_methods_of(ast.parse(text), cls)


def _class_methods_of(tree: ast.Module, cls: str) -> dict[str, ast.FunctionDef]:
    node = next(
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls
    )
    return {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}


def _dedent_block(seg: str) -> str:
    lines = seg.splitlines(keepends=True)
    indent = len(lines[0]) - len(lines[0].lstrip())
    return "".join(line[indent:] if line[:indent].strip() == "" else line for line in lines)

