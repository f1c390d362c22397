# mypy: allow-untyped-defs
r"""The start-up hook through which ``python -m torch_ortho_patch run`` reaches
child processes.

``run`` copies this file as ``sitecustomize.py`` into a directory of its own and
puts that directory first on ``PYTHONPATH``. Imported under any other name (as
``torch_ortho_patch._startup``), it does nothing. See Note [Reaching child
processes].

It runs in every Python process that ``run``'s script starts, torch or not,
so at start-up it imports ``os`` and ``sys`` and nothing else.
"""

import os
import sys


# Set to "1" by `run` for the script and everything it starts.
ENV = "TORCH_ORTHO_PATCH_RUN"
# The file name under which `run` places this module on PYTHONPATH.
FILE_NAME = "sitecustomize.py"
# The attribute by which the hook's finder is recognised on sys.meta_path.
_MARK = "_TORCH_ORTHO_PATCH_HOOK"

# Note [Reaching child processes]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# `run` calls install() in its own process, but a multiprocessing "spawn" or
# "forkserver" child, or a `subprocess` running sys.executable, is a fresh
# interpreter that starts with torch's own orthogonal. coverage.py has the same
# problem with measuring subprocesses. Its answer is a start-up hook plus an
# environment variable: a .pth file that runs at every interpreter start-up and
# does something only when COVERAGE_PROCESS_START (or, for `patch = subprocess`,
# COVERAGE_PROCESS_CONFIG) is set. `patch = subprocess` first wrote that .pth
# into site-packages at run time, which fails where site-packages is read-only;
# coverage now ships the .pth in its wheel instead.
#
# We keep the variable and choose another hook: `run` copies this file as
# sitecustomize.py into a fresh temporary directory, prepends that directory to
# PYTHONPATH and sets TORCH_ORTHO_PATCH_RUN=1; both reach every child that
# inherits the environment, grandchildren included. A .pth shipped with the
# package was rejected because:
#   * it would run in every interpreter of the environment, forever, not only
#     under `run`;
#   * a "../name.pth" package-data entry (coverage's setup.py has one) puts the
#     file into the wheel, but the editable install (`pip install -e`, what CI
#     uses) maps the package through a finder and leaves it out (seen with
#     setuptools 84), and making it work there takes build-backend hooks;
#   * it would not reach a checkout that is only on PYTHONPATH, as in our tests.
# The directory on PYTHONPATH must hold sitecustomize.py alone: the package's
# own directory would make every one of our modules a top-level name. Hence a
# copy in a temporary directory, which needs no write access to site-packages
# and goes away when `run` ends.
#
# Python imports one `sitecustomize` only, the first on sys.path, and ours comes
# first. So this hook removes its directory from sys.path again and imports the
# next sitecustomize, if there is one (a distribution's, or a virtualenv's). An
# error in that one is reported by `site` as it would be without us.
#
# The hook does not import torch itself: a child that never uses torch (pip, a
# `python -c` helper) should not pay for importing it. It puts a finder first on
# sys.meta_path that watches the top-level imports of `torch` and of
# `torch_ortho_patch`, and calls install() when the outermost of them has been
# executed: before any code of the child can read
# torch.nn.utils.parametrizations.orthogonal. Waiting for the outermost one
# matters when the child imports torch_ortho_patch first: torch is imported in
# the middle of it, when our parametrizations module is not complete yet.
#
# Not reached: children started with `python -S` (no site, so no
# sitecustomize), `-E` or `-I` (PYTHONPATH ignored; multiprocessing passes the
# parent's flags on, so a `run` started with them reaches no child), with an
# environment that drops PYTHONPATH or TORCH_ORTHO_PATCH_RUN, or started after
# `run` has returned. A child in which torch_ortho_patch cannot be imported (an
# interpreter with other site-packages) warns instead of running silently
# unpatched. A "fork" child is a copy of the patched parent and needs none of
# this.


def _warn(why):
    import warnings

    warnings.warn(
        "python -m torch_ortho_patch run could not install the patch in this "
        f"child process ({sys.executable}, pid {os.getpid()}): {why}. torch's own "
        "orthogonal is in use here. Make torch_ortho_patch importable in the child "
        "(install it into this Python, or add it to PYTHONPATH) to fix this.",
        RuntimeWarning,
        stacklevel=3,
    )


def _install():
    try:
        import torch_ortho_patch
    except ImportError as e:
        _warn(e)
        return
    torch_ortho_patch.install()


class _InstallAfterImport:
    r"""A meta path finder that installs the patch once torch has been imported.

    It finds nothing itself: for the watched names it takes the spec that the
    finders after it return, and makes its loader call :func:`_install` after the
    outermost watched module has been executed. It removes itself after that.
    """

    _WATCHED = ("torch", "torch_ortho_patch")
    _TORCH_ORTHO_PATCH_HOOK = True  # named by _MARK

    def __init__(self):
        self._depth = 0

    def find_spec(self, name, path=None, target=None):
        if name not in self._WATCHED or self not in sys.meta_path:
            return None
        spec = None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1 :]:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is not None:
                spec = find_spec(name, path, target)
                if spec is not None:
                    break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        own = vars(loader).get("exec_module") if hasattr(loader, "__dict__") else None
        exec_module = loader.exec_module

        def exec_module_then_install(module):
            self._depth += 1
            try:
                exec_module(module)
            finally:
                self._depth -= 1
                # The loader is torch's own again, whatever happened.
                if own is None:
                    del loader.exec_module
                else:
                    loader.exec_module = own
            if self._depth == 0:
                self.done()

        try:
            loader.exec_module = exec_module_then_install
        except (AttributeError, TypeError):
            # A loader that takes no attributes. Importing torch here, inside its
            # own import, would execute it twice, so say that we cannot instead.
            sys.meta_path.remove(self)
            _warn(f"{type(loader).__name__} loads {name} and cannot be wrapped")
        return spec

    def done(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)
            _install()


def _chain_sitecustomize(here):
    r"""Import the ``sitecustomize`` that ours shadows, if there is one."""
    ours = sys.modules.get("sitecustomize")

    def real(p):
        return os.path.realpath(p or os.curdir)

    sys.path[:] = [p for p in sys.path if real(p) != here]
    sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401
    except ImportError as e:
        if e.name != "sitecustomize":
            raise
        # There is none: `site` expects to find a module under this name.
        if ours is not None:
            sys.modules["sitecustomize"] = ours


def _main():
    if os.environ.get(ENV) == "1":
        if "torch" in sys.modules:
            _install()
        elif not any(getattr(f, _MARK, False) for f in sys.meta_path):
            # A nested `run` chains to the hook of the outer one: one finder.
            sys.meta_path.insert(0, _InstallAfterImport())
    _chain_sitecustomize(os.path.realpath(os.path.dirname(os.path.abspath(__file__))))


if __name__ == "sitecustomize":
    _main()
