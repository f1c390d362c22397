# Sphinx configuration for torch_ortho_patch.
#
# Build:            python -m sphinx -W --keep-going -b html docs docs/_build/html
# Run the examples: python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest
#
# Neither building nor reading the pages needs a network. Maths is rendered by
# MathJax in the reader's browser, from a copy that sphinx-mathjax-offline puts
# into _static/mathjax of the build (sphinx.ext.imgmath would render at build
# time but needs latex and dvipng, which the CI machine does not have).
# References to torch and Python objects link to their online documentation
# through intersphinx, which reads the small inventories committed in
# _inventories/ instead of downloading any.
#
# The result tables of benchmarks.rst and experiments.rst are written at build
# time from the JSON files in _static/ (see _write_tables below), so that a new
# run needs no hand-edited table. The figures are PNG files made by the scripts
# in benchmarks/ and committed; the build trains and times nothing.

import ast
import builtins
import doctest
import importlib.util
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the working tree, also when the package is not installed.
sys.path.insert(0, str(ROOT))

import torch_ortho_patch  # noqa: E402
from sphinx.util import logging as sphinx_logging  # noqa: E402
from sphinx.writers.html5 import HTML5Translator  # noqa: E402


project = "torch_ortho_patch"
author = "torch_ortho_patch contributors"
copyright = "torch_ortho_patch contributors"
version = torch_ortho_patch.__version__
release = version

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    # [source] links on the API pages; see Note [The source of the amended definitions].
    "sphinx.ext.viewcode",
    # Copies MathJax into the build and points mathjax_path at the copy.
    "sphinx-mathjax-offline",
    "sphinx_copybutton",
    # Parses RFC.md, which design.rst includes.
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "screenshots", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# Every cross-reference must resolve: with -W, one that does not fails the
# build. Something that has no page anywhere is written as a literal
# (``name``), not as a role, so there is nothing to ignore here.
nitpicky = True

# -- autodoc / autosummary --------------------------------------------------
# The stubs of api.rst are generated at build time into docs/generated/.
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # the signatures in the docstrings say it, as in core
autodoc_member_order = "bysource"
# Signatures and page titles give the full name, as PyTorch's API pages do.
add_module_names = True

# -- napoleon (Google-style sections, as PyTorch core writes them) -----------
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Turns "name (str, optional)" into a link for ``str`` and an emphasised
# *optional*; otherwise "optional" would be a reference to a class.
napoleon_preprocess_types = True
# The short names that PyTorch's docstrings use for types.
napoleon_type_aliases = {
    "Tensor": ":class:`~torch.Tensor`",
    "nn.Module": ":class:`~torch.nn.Module`",
}

# -- intersphinx -------------------------------------------------------------------
# (online URL, local inventory): the inventory is read from the file, so nothing
# is fetched; links point at the URL. See _inventories/make_inventories.py.
_INVENTORIES = DOCS / "_inventories"
intersphinx_mapping = {
    "torch": ("https://docs.pytorch.org/docs/stable/", str(_INVENTORIES / "torch.inv")),
    "python": ("https://docs.python.org/3/", str(_INVENTORIES / "python.inv")),
}

# -- doctest builder -----------------------------------------------------------
# Every ``testcode`` block of the guides runs under `sphinx -b doctest`.
doctest_global_setup = """
import torch
from torch import nn
import torch_ortho_patch
torch.manual_seed(0)
"""
# No page may leave the patch installed for the next one.
doctest_global_cleanup = """
torch_ortho_patch.uninstall()
"""
doctest_test_doctest_blocks = "default"

# -- MathJax -------------------------------------------------------------------------
# PyTorch's docstring of orthogonal uses \mathrlap, which comes from the mathtools
# package; tex-chtml.js does not include it (nor autoloads it), so MathJax would
# show the macro's name in red. Load it from the local copy
# (_static/mathjax/input/tex/extensions/mathtools.js): [tex] is resolved
# relative to tex-chtml.js, so the page still needs no network.
mathjax3_config = {
    "loader": {"load": ["[tex]/mathtools"]},
    "tex": {"packages": {"[+]": ["mathtools"]}},
}

# -- copybutton ------------------------------------------------------------------
# Copy commands without their prompt, and only the lines that have one.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
copybutton_line_continuation_character = "\\"
# No copy button on output blocks: see Note [Output blocks] in _static/custom.css.
copybutton_selector = "div:not(.highlight-none) > div.highlight > pre"

# -- myst ------------------------------------------------------------------------
myst_heading_anchors = 3

# -- HTML --------------------------------------------------------------------------
html_theme = "furo"
html_title = f"torch_ortho_patch {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
pygments_style = "sphinx"


# -- tables from the results ------------------------------------------------------
def _load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_script(name):
    return _load_module(ROOT / "benchmarks" / f"{name}.py", f"_docs_{name}")


def _write_tables():
    # docs/_generated/*.inc: included by the pages, never read as documents.
    out = DOCS / "_generated"
    out.mkdir(exist_ok=True)
    plot = _load_script("plot")
    runs = plot.load_runs([DOCS / "_static" / "bench_results.json"])
    text = plot.rst(runs)
    copy_plot = _load_script("plot_copy_task")
    with open(DOCS / "_static" / "copy_task.json") as f:
        copy_text = copy_plot.rst(json.load(f))
    for name, content in (("bench_tables.inc", text), ("copy_task_tables.inc", copy_text)):
        path = out / name
        # Rewrite only on change, so that Sphinx rebuilds only what changed.
        if not path.exists() or path.read_text() != content:
            path.write_text(content)


_write_tables()

# The numbers the pages quote outside those tables (the landing page's errors,
# the installing page's RNN step, the count of fixes and patches), from the
# JSON files and from the stack: see _numbers.py.
_numbers = _load_module(DOCS / "_numbers.py", "_docs_numbers")
_numbers.write_includes(DOCS / "_generated")
rst_prolog = _numbers.rst_prolog()


# -- the API pages' docstrings ---------------------------------------------------------
# Note [The source of the amended definitions]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# sphinx.ext.viewcode reads a module's source through its __loader__. The
# definitions of torch_ortho_patch.parametrizations and torch_ortho_patch.init
# are compiled from the installed torch's file amended by the patch stack, and
# the loaders of those modules serve that amended text (see Note [Serving the
# amended source] in torch_ortho_patch/_stack.py). So the [source] link of
# orthogonal, of the maps and of init.orthogonal_ shows that file, as it is for
# the torch that built the docs: the code that runs, not the few lines of
# torch_ortho_patch/parametrizations.py.
_log = sphinx_logging.getLogger(__name__)


def _ours(name):
    return name.startswith("torch_ortho_patch.")


# Note [Arguments are literals]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# PyTorch's docstrings, and the ones written here in their style, name an
# argument as :attr:`X`. No object X is documented, so the reference resolves
# to nothing; PyTorch's docs are not nitpicky and show it as unlinked code.
# Ours are, so on our pages a reference to an argument of the documented
# function is rewritten as the literal ``X``, which is what it looks like
# there. The docstrings themselves keep PyTorch's form.
def _arguments_as_literals(app, what, name, obj, options, lines):
    if not _ours(name) or not callable(obj):
        return
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    if not parameters:
        return
    names = "|".join(map(re.escape, parameters))
    pattern = re.compile(rf":attr:`({names})`")
    lines[:] = [pattern.sub(r"``\1``", line) for line in lines]


# Note [API examples run on their own]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The examples of the API docstrings are PyTorch's (orthogonal's, nn.init's)
# or written the way PyTorch writes them: for xdoctest, which runs them with
# torch and nn already imported, in the module that defines the function.
# Copied alone from a page, they raise NameError. So on the pages (not in the
# docstrings, which go upstream as they are) each example starts with the
# lines it needs: ``import torch``, ``from torch import nn``, an import of each
# name of this package it uses without defining it, and, for the examples of
# torch_ortho_patch.init, which call nn.init.orthogonal_ with ``blocks``,
# ``torch_ortho_patch.install()``. A free name that none of these binds is a
# warning, so -W fails the build.
#
# The example is then a ``doctest`` block, and `sphinx -b doctest` runs it
# as the page shows it. xdoctest compares output differently from the
# standard library's doctest: it checks nothing where the example shows no
# output (``nn.init.orthogonal_(w)`` returns the tensor), it applies a
# ``# xdoctest: +IGNORE_WANT`` line to the rest of the example, and it
# normalises whitespace. So the block gets +NORMALIZE_WHITESPACE, and each of
# those statements an inline ``# doctest: +IGNORE_WANT``, an option flag
# registered here and honoured by _OutputChecker. Sphinx leaves inline doctest
# options off the page. test/test_doctests.py still runs the docstrings
# themselves with xdoctest.
_EXAMPLE_HEADER = re.compile(r"^(?P<indent> *)(?P<title>Examples?)::?\s*$")
_XDOCTEST_DIRECTIVE = re.compile(r"#\s*xdoctest:\s*(?P<options>.*)$")
_IGNORE_WANT = doctest.register_optionflag("IGNORE_WANT")


class _OutputChecker(doctest.OutputChecker):
    # See Note [API examples run on their own].
    def check_output(self, want, got, optionflags):
        if optionflags & _IGNORE_WANT:
            return True
        return super().check_output(want, got, optionflags)


def _use_output_checker(app):
    # doctest.DocTestRunner makes its checker with the module's OutputChecker
    # unless given one, and Sphinx's runners are given none.
    if app.builder.name == "doctest":
        doctest.OutputChecker = _OutputChecker


def _imports(name, examples):
    tree = ast.parse("".join(e.source for e in examples))
    bound, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    free = used - bound - set(dir(builtins))
    ours = sorted(free & set(torch_ortho_patch.__all__))
    lines = []
    if "torch" in free:
        lines.append("import torch")
    if "nn" in free:
        lines.append("from torch import nn")
    if "torch_ortho_patch" in free or (
        name.startswith("torch_ortho_patch.init.") and "torch_ortho_patch" not in bound
    ):
        lines.append("import torch_ortho_patch")
    if ours:
        lines.append(f"from torch_ortho_patch import {', '.join(ours)}")
    if name.startswith("torch_ortho_patch.init."):
        lines.append("torch_ortho_patch.install()")
    unknown = free - {"torch", "nn", "torch_ortho_patch", *ours}
    if unknown:
        _log.warning(
            "the example of %s uses %s, which no import added to it binds "
            "(see Note [API examples run on their own] in docs/conf.py)",
            name,
            ", ".join(sorted(unknown)),
        )
    return [f">>> {line}" for line in lines]


def _as_doctest(name, body):
    # The xdoctest semantics above, for the standard library's doctest. The
    # parser drops examples that are only a comment, so the lines that hold
    # only an xdoctest directive are read here, and each one applies to the
    # examples below it.
    examples = doctest.DocTestParser().get_examples("\n".join(body))
    starts = {example.lineno: example for example in examples}
    ignore_rest = False
    unchecked = []
    for lineno, line in enumerate(body):
        directive = _XDOCTEST_DIRECTIVE.search(line)
        if directive and line.lstrip().startswith((">>> #", ">>>#")):
            for option in directive["options"].replace(",", " ").split():
                if option in ("+IGNORE_WANT", "-IGNORE_WANT"):
                    ignore_rest = option == "+IGNORE_WANT"
                elif option == "+REQUIRES(env:TORCH_DOCTEST_LAPACK)":
                    # PyTorch's mark for examples that need LAPACK, which the
                    # torch builds that build the docs have.
                    pass
                else:
                    _log.warning(
                        "the example of %s has the xdoctest option %s, which "
                        "docs/conf.py does not translate",
                        name,
                        option,
                    )
        elif directive:
            _log.warning(
                "the example of %s has an xdoctest directive after code, which "
                "docs/conf.py does not translate",
                name,
            )
        elif lineno in starts and (ignore_rest or not starts[lineno].want):
            unchecked.append(lineno)
    body = list(body)
    for lineno in unchecked:
        body[lineno] += "  # doctest: +IGNORE_WANT"
    return _imports(name, examples) + body


def _examples_run_alone(app, what, name, obj, options, lines):
    if not _ours(name):
        return
    start = 0
    while True:
        for i in range(start, len(lines)):
            header = _EXAMPLE_HEADER.match(lines[i])
            if header:
                break
        else:
            return
        indent = len(header["indent"])
        end = i + 1
        while end < len(lines) and (
            not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
        ):
            end += 1
        body = textwrap.dedent("\n".join(lines[i + 1 : end])).strip("\n").splitlines()
        pad = " " * indent
        block = [
            f"{pad}.. rubric:: {header['title']}",
            "",
            f"{pad}.. doctest::",
            f"{pad}    :options: +NORMALIZE_WHITESPACE",
            "",
            *(f"{pad}    {line}" if line else "" for line in _as_doctest(name, body)),
            "",
        ]
        lines[i:end] = block
        start = i + len(block)


# Note [Breaking full names at their dots]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The API pages are titled with full names (torch_ortho_patch.householder_map),
# which are wider than the sidebar, and sometimes than the title. Furo lets a
# word that does not fit break anywhere ("householder_m" / "ap"). So where a
# piece of text is exactly such a name (a page title, its entry in the
# sidebar, the Next and Previous links), the HTML gets a <wbr> after each dot,
# and a line that must break does so there. A <wbr> is no character: the name
# reads and copies the same, and the page's <title> drops the tag.
_FULL_NAME = re.compile(r"torch_ortho_patch(?:\.\w+)+")


class _Translator(HTML5Translator):
    def visit_Text(self, node):
        text = node.astext()
        if self.protect_literal_text or not _FULL_NAME.fullmatch(text):
            return super().visit_Text(node)
        self.body.append(".<wbr>".join(self.encode(part) for part in text.split(".")))


def setup(app):
    app.set_translator("html", _Translator)
    # Both run before napoleon (priority 500), which then leaves their output alone.
    app.connect("autodoc-process-docstring", _arguments_as_literals, priority=400)
    app.connect("autodoc-process-docstring", _examples_run_alone, priority=400)
    app.connect("builder-inited", _use_output_checker)
