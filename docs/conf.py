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
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
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
# docs/_static holds the benchmark plot; it may not exist in a fresh checkout.
html_static_path = ["_static"] if (DOCS / "_static").is_dir() else []
pygments_style = "sphinx"
