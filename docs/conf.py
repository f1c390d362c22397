# Sphinx configuration for torch_ortho_patch.
#
# Build:            python -m sphinx -W --keep-going -b html docs docs/_build/html
# Run the examples: python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest
#
# Neither building nor reading the pages needs a network. Maths is rendered by
# MathJax in the reader's browser, from a copy that sphinx-mathjax-offline puts
# into _static/mathjax of the build (sphinx.ext.imgmath would render at build
# time but needs latex and dvipng, which the CI machine does not have).
# Intersphinx is off on purpose, so references to torch objects stay plain text.
#
# The result tables of benchmarks.rst and experiments.rst are written at build
# time from the JSON files in _static/ (see _write_tables below), so that a new
# run needs no hand-edited table. The figures are PNG files made by the scripts
# in benchmarks/ and committed; the build trains and times nothing.

import importlib.util
import json
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the working tree, also when the package is not installed.
sys.path.insert(0, str(ROOT))

import torch_ortho_patch  # noqa: E402


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
    # Copies MathJax into the build and points mathjax_path at the copy.
    "sphinx-mathjax-offline",
    "sphinx_copybutton",
    # Parses RFC.md, which design.rst includes.
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# -- autodoc / autosummary --------------------------------------------------
# The stubs of api.rst are generated at build time into docs/generated/.
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # the signatures in the docstrings say it, as in core
autodoc_member_order = "bysource"
add_module_names = False

# -- napoleon (Google-style sections, as PyTorch core writes them) -----------
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

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

# -- copybutton ------------------------------------------------------------------
# Copy commands without their prompt, and only the lines that have one.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
copybutton_line_continuation_character = "\\"

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


# -- torch.nn.init's examples -------------------------------------------------------
# The examples of torch.nn.init's docstrings are written for xdoctest, as all of
# PyTorch's are: a call whose value is not shown has no expected output. Sphinx's
# doctest would compare that value with nothing and fail, so on the pages of
# torch_ortho_patch.init the "Examples:" section is shown as a code block instead
# of being run here; test/test_doctests.py runs it with xdoctest. This runs
# before napoleon (priority 400 < 500), which then leaves the section alone.
def _init_examples_as_code(app, what, name, obj, options, lines):
    if not name.startswith("torch_ortho_patch.init."):
        return
    out = []
    for line in lines:
        if line.strip() == "Examples:":
            out += [".. rubric:: Examples", "", ".. code-block:: pycon", ""]
        else:
            out.append(line)
    lines[:] = out


def setup(app):
    app.connect("autodoc-process-docstring", _init_examples_as_code, priority=400)
