r"""Write the intersphinx inventories of the torch and Python objects the docs cite.

    python docs/_inventories/make_inventories.py          # rewrite torch.inv, python.inv
    python docs/_inventories/make_inventories.py --check  # exit 1 if they are stale

The docs are built without a network, so intersphinx cannot download
PyTorch's objects.inv (about a megabyte, and a moving target) or Python's.
These are small stand-ins in the same format (Sphinx inventory version 2),
listing only what the pages and the package's docstrings reference, at the URL
each object has in the online documentation. ``docs/conf.py`` points
``intersphinx_mapping`` at them.

When a page starts citing another torch or Python object, the build (which is
nitpicky) fails with "reference target not found"; add the object below, with
the role PyTorch's (or Python's) own inventory gives it, and run this script.
test/test_docs_html.py checks that the committed files match this list and
that every torch name in it exists in the installed torch.
"""

import argparse
import sys
import zlib
from pathlib import Path


HERE = Path(__file__).resolve().parent


def _generated(name: str, role: str) -> tuple[str, str, str]:
    # PyTorch's autosummary gives each of these objects a page of its own,
    # generated/<full name>.html, whose anchor is the full name.
    return (name, role, f"generated/{name}.html#{name}")


# (name, domain:role, URI relative to the project's root URL).
TORCH = [
    _generated("torch.matrix_exp", "py:function"),
    _generated("torch.load", "py:function"),
    _generated("torch.vmap", "py:function"),
    _generated("torch.func.grad", "py:function"),
    _generated("torch.jit.trace", "py:function"),
    _generated("torch.linalg.eigh", "py:function"),
    _generated("torch.linalg.householder_product", "py:function"),
    _generated("torch.linalg.inv", "py:function"),
    _generated("torch.linalg.lu_factor", "py:function"),
    _generated("torch.linalg.qr", "py:function"),
    _generated("torch.linalg.solve", "py:function"),
    _generated("torch.no_grad", "py:class"),
    # PyTorch's own pages (torch.nn.init's among them) write :func:`torch.no_grad`,
    # which their build resolves because a local reference ignores the object
    # type; an intersphinx one does not. benchmarks.rst does the same, so the
    # class is listed once more as a function.
    _generated("torch.no_grad", "py:function"),
    _generated("torch.nn.Module", "py:class"),
    ("torch.nn.Module.state_dict", "py:method", "generated/torch.nn.Module.html#$"),
    _generated("torch.nn.RNNBase", "py:class"),
    _generated("torch.nn.RNN", "py:class"),
    _generated("torch.nn.LSTM", "py:class"),
    _generated("torch.nn.GRU", "py:class"),
    _generated("torch.nn.LSTMCell", "py:class"),
    _generated("torch.nn.GRUCell", "py:class"),
    _generated("torch.nn.functional.linear", "py:function"),
    _generated("torch.nn.utils.parametrizations.orthogonal", "py:function"),
    _generated("torch.nn.utils.parametrize.cached", "py:function"),
    _generated("torch.nn.utils.parametrize.register_parametrization", "py:function"),
    _generated("torch.nn.utils.parametrize.remove_parametrizations", "py:function"),
    _generated("torch.optim.AdamW", "py:class"),
    ("torch.Tensor", "py:class", "tensors.html#$"),
    ("torch.nn.init.orthogonal_", "py:function", "nn.init.html#$"),
    # nn.md declares this module (py:module) at its end; benchmark_utils.md
    # documents its module with automodule.
    ("torch.nn.utils.parametrizations", "py:module", "nn.html#module-$"),
    ("torch.utils.benchmark", "py:module", "benchmark_utils.html#module-$"),
]

PYTHON = [
    ("ast", "py:module", "library/ast.html#module-$"),
    ("copy.deepcopy", "py:function", "library/copy.html#$"),
    ("inspect.signature", "py:function", "library/inspect.html#$"),
    ("help", "py:function", "library/functions.html#$"),
    ("bool", "py:class", "library/functions.html#$"),
    ("int", "py:class", "library/functions.html#$"),
    ("str", "py:class", "library/stdtypes.html#$"),
    ("None", "py:data", "library/constants.html#$"),
    ("RuntimeError", "py:exception", "library/exceptions.html#$"),
    ("TypeError", "py:exception", "library/exceptions.html#$"),
    ("UserWarning", "py:exception", "library/exceptions.html#$"),
]

INVENTORIES = {
    "torch.inv": ("PyTorch", "stable", TORCH),
    "python.inv": ("Python", "3", PYTHON),
}


def render(project: str, version: str, entries) -> bytes:
    r"""Return the bytes of an inventory, as Sphinx's ``objects.inv`` lays them out.

    Four header lines in plain text, then one line per object, zlib-compressed:
    ``name domain:role priority uri display-name``, where a URI ending in ``$``
    stands for the name and a display name of ``-`` for the name too.
    """
    seen = set()
    lines = []
    for name, role, uri in entries:
        if (name, role) in seen:
            raise ValueError(f"{name} ({role}) is listed twice")
        seen.add((name, role))
        if uri.endswith("#" + name):
            uri = uri[: -len(name)] + "$"
        # Modules get priority 0 and other objects 1, as Sphinx writes them.
        priority = 0 if role == "py:module" else 1
        lines.append(f"{name} {role} {priority} {uri} -\n")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    # Sorted, so that the order of the lists above does not change the files.
    body = "".join(sorted(lines)).encode()
    return header.encode() + zlib.compress(body, 9)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that the files are current"
    )
    args = parser.parse_args(argv)
    stale = []
    for filename, (project, version, entries) in INVENTORIES.items():
        path = HERE / filename
        data = render(project, version, entries)
        if args.check:
            # zlib's output may differ between zlib versions; compare the text.
            if not path.exists() or _text(path.read_bytes()) != _text(data):
                stale.append(filename)
        else:
            path.write_bytes(data)
    if stale:
        print(f"stale: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


def _text(data: bytes) -> str:
    head, _, body = data.partition(b"zlib.\n")
    return (head + zlib.decompress(body)).decode()


if __name__ == "__main__":
    sys.exit(main())
