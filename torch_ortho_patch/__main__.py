# mypy: allow-untyped-defs
r"""The command line: ``python -m torch_ortho_patch [check|run|diff|bench]``.

``check`` (the default) prints a live report, ``run`` runs a script, module or
command with the patch installed, ``diff`` prints the upstream diff and ``bench``
runs the benchmarks.
"""

import argparse
import builtins
import contextlib
import importlib
import importlib.machinery
import os
import pkgutil
import runpy
import shutil
import sys
import tempfile
import types
from collections.abc import Iterator


__all__ = ["main"]

_PROG = "python -m torch_ortho_patch"


def _module_name(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError(f"expected a module name, got {text!r}")
    return text


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Block-orthogonal parametrizations for PyTorch, as a patch. "
        "Without a command, runs `check`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{check,run,diff,bench}")
    check = sub.add_parser(
        "check",
        help="report versions, whether the patch applies and live error measurements "
        "(default)",
        description="Print the torch and Python versions, whether the patch applies "
        "to this torch and whether it is installed, and measure torch's orthogonal "
        "and nn.init.orthogonal_ against ours on RNN gate blocks, householder "
        "after an AdamW step and a "
        "batched Cayley map on CPU. Exits with status 1 if one of our errors is "
        "above its tolerance.",
    )
    check.add_argument(
        "--json",
        metavar="PATH",
        help="also write the measurements to PATH as JSON (the docs' tables are "
        "made from such a file)",
    )
    run = sub.add_parser(
        "run",
        help="run a script, module or command with the patch installed",
        usage=f"{_PROG} run [-h] (SCRIPT | -m MODULE | -c CODE) [ARGS ...]",
        description="Call torch_ortho_patch.install(), then run SCRIPT (or MODULE, "
        "or CODE) as __main__ with ARGS in sys.argv, exactly as `python SCRIPT ARGS` "
        "(or `python -m MODULE ARGS`, or `python -c CODE ARGS`) would. Everything "
        "after SCRIPT, MODULE or CODE is passed on. The exit status is the script's. "
        "Python processes that the "
        "script starts (multiprocessing spawn or forkserver children, subprocesses "
        "running Python) install the patch too, when they import torch: run sets "
        "TORCH_ORTHO_PATCH_RUN=1 and puts a sitecustomize first on PYTHONPATH.",
    )
    run.add_argument(
        "-m", dest="module", metavar="MODULE", type=_module_name, help="run a module"
    )
    run.add_argument("-c", dest="code", metavar="CODE", help="run the code in CODE")
    run.add_argument("script", nargs="?", metavar="SCRIPT", help="path of the script")
    run.add_argument("args", nargs="*", metavar="ARGS", help="arguments of the script")
    diff = sub.add_parser(
        "diff",
        help="print the upstream change, or write it as a series of patches",
        description="Print the upstream change as one unified diff that applies "
        "with `git apply` at the root of a PyTorch tree of the installed version "
        "(or of --torch-src), or, with --stack DIR, write it as a numbered series "
        "of patches, one concern each, for `git am`. The patches amend "
        "torch/nn/utils/parametrizations.py, torch/nn/modules/rnn.py and "
        "torch/nn/init.py, add "
        "torch/nn/utils/_skew_matrix_exp.py and tests, and, with --torch-src, the "
        "docs.",
    )
    diff.add_argument(
        "--stack",
        metavar="DIR",
        help="write the change as a series of patches, 0001-*.patch, ..., in "
        "`git format-patch` form to DIR instead of printing it squashed",
    )
    diff.add_argument(
        "--author",
        metavar="AUTHOR",
        help="author of the patches written with --stack, as 'Name <email>' "
        "(default: git's user.name and user.email)",
    )
    diff.add_argument(
        "--force",
        action="store_true",
        help="with --stack, write into a DIR that is not empty, removing its "
        "*.patch files first",
    )
    diff.add_argument(
        "--torch-src",
        metavar="PATH",
        help="root of a PyTorch checkout to diff against "
        "(default: the installed torch)",
    )
    sub.add_parser(
        "bench",
        add_help=False,
        help="run the benchmarks (`bench --help` lists their options)",
    )
    return parser, {"check": check, "run": run, "diff": diff}


def _split_run(args: list[str]) -> tuple[list[str], list[str]]:
    r"""Split ``run``'s arguments into ours and the ones passed on to the script."""
    if not args or args[0] in ("-h", "--help"):
        return args, []
    if args[0] in ("-m", "-c", "--"):
        return args[:2], args[2:]
    if args[0].startswith(("-m", "-c")):
        return args[:1], args[1:]
    if args[0].startswith("-"):
        return args, []  # let argparse report the unknown option
    return args[:1], args[1:]


def _cannot_open(script: str) -> str | None:
    r"""Return python's message for a script that it cannot open, or ``None``."""
    if os.path.isdir(script):
        return None  # runpy looks for its __main__ module
    try:
        with open(script, "rb"):
            pass
    except OSError as e:
        return f"can't open file {script!r}: [Errno {e.errno}] {e.strerror}"
    return None


@contextlib.contextmanager
def _reach_children() -> Iterator[None]:
    r"""Make the Python processes that the script starts install the patch too.

    See Note [Reaching child processes].
    """
    from . import _startup

    saved = {name: os.environ.get(name) for name in (_startup.ENV, "PYTHONPATH")}
    with tempfile.TemporaryDirectory(prefix="torch_ortho_patch-run-") as hook_dir:
        shutil.copyfile(_startup.__file__, os.path.join(hook_dir, _startup.FILE_NAME))
        path = saved["PYTHONPATH"]
        os.environ["PYTHONPATH"] = hook_dir + (os.pathsep + path if path else "")
        os.environ[_startup.ENV] = "1"
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


# Note [Tracebacks under run]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~
# `python SCRIPT` prints a failing script's traceback from the script's first
# frame on, and `python -m MODULE` reports a module that it cannot find (or a
# package without __main__, or a relative name) in one line, "<python>: <why>",
# with status 1. Under `run` the exception would pass through this file and
# runpy first, so _run catches it and prints it itself: the leading frames of
# this file, of runpy and of importlib's bootstrap (which Python's import
# machinery hides as well) are dropped, and what is left goes to
# sys.excepthook, as Python does, so that a hook the script installed is used.
# runpy raises its one-line errors as a plain ImportError from its own frames;
# an ImportError raised by the script's code has the script's frames in its
# traceback and is printed in full. SystemExit propagates untouched.
# KeyboardInterrupt gets the same trimmed traceback and status 130, the shell's
# status for SIGINT (Python itself ends by re-sending SIGINT to itself).


def _hidden(code: types.CodeType) -> bool:
    return code.co_filename in (
        _run.__code__.co_filename,
        runpy.run_path.__code__.co_filename,
    ) or code.co_filename.startswith("<frozen importlib.")


def _report(e: BaseException) -> int:
    r"""Print an exception of ``run``'s script as Python would and return the status.

    See Note [Tracebacks under run].
    """
    tb = e.__traceback__
    last = tb
    while last is not None and last.tb_next is not None:
        last = last.tb_next
    while tb is not None and _hidden(tb.tb_frame.f_code):
        tb = tb.tb_next
    runpy_file = runpy.run_path.__code__.co_filename
    if (
        type(e) is ImportError
        and tb is None
        and last is not None
        and last.tb_frame.f_code.co_filename == runpy_file
    ):
        print(f"{_PROG} run: {e}", file=sys.stderr)
        return 1
    # The default hook prints e.__traceback__, whatever its third argument.
    sys.excepthook(type(e), e.with_traceback(tb), tb)
    return 130 if isinstance(e, KeyboardInterrupt) else 1


# Note [run is python]
# ~~~~~~~~~~~~~~~~~~~~
# `run` gives the script what `python` gives it, so that a script cannot tell
# the two apart (but for the patch): the same sys.argv, sys.path[0] and
# __main__ globals. Python starts __main__ with __name__, __doc__, __package__
# and __spec__ None, __loader__ BuiltinImporter, __annotations__ {} (before
# 3.14) and __builtins__ the builtins module (add_main_module in
# Python/pylifecycle.c); then
#   * `python SCRIPT` (Python/pythonrun.c) adds __file__ (absolute, since 3.9)
#     and __cached__ None, sets __loader__ to a SourceFileLoader (a
#     SourcelessFileLoader for a .pyc) and compiles the file under its absolute
#     name, and removes __file__ and __cached__ again when it is done; sys.argv[0]
#     is SCRIPT as given, sys.path[0] the directory of the script with its
#     symlinks resolved;
#   * `python DIR` or `python ZIP` puts DIR first on sys.path and runs its
#     __main__ module as runpy._run_module_as_main("__main__", alter_argv=False)
#     does, with sys.argv[0] as given;
#   * `python -m MODULE` is runpy._run_module_as_main(MODULE): sys.argv[0] is
#     "-m" while MODULE is found and its file after, sys.path[0] the current
#     directory, and runpy's globals over the start-up ones;
#   * `python -c CODE` runs CODE compiled as "<string>" in the start-up
#     globals, with sys.argv[0] "-c" and sys.path[0] "".
# runpy.run_path cannot do the first (it gives __loader__ None, __package__ ""
# and sys.argv[0] the path it is given, which must be absolute for __file__),
# so _run does it itself; run_module does the third when it is given the
# start-up globals, which it puts under its own. The script runs in a fresh
# module that is sys.modules["__main__"] while it runs: the real __main__ holds
# this command line's own globals. With -P or -I (sys.flags.safe_path), Python
# adds no sys.path[0] and neither does run.


def _main_module() -> types.ModuleType:
    r"""Return a module like Python's ``__main__`` before it runs anything.

    See Note [run is python].
    """
    main = types.ModuleType("__main__")
    ns = vars(main)
    ns["__loader__"] = importlib.machinery.BuiltinImporter
    if sys.version_info < (3, 14):
        ns["__annotations__"] = {}
    ns["__builtins__"] = builtins
    return main


@contextlib.contextmanager
def _as_main(main: types.ModuleType) -> Iterator[None]:
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("__main__", None)
        else:
            sys.modules["__main__"] = saved


def _set_path0(entry: str) -> None:
    if not getattr(sys.flags, "safe_path", False):
        sys.path[0] = entry


def _run_script(script: str, args: list[str]) -> int | None:
    r"""Run ``script`` as ``python SCRIPT ARGS`` does; see Note [run is python]."""
    path = os.path.abspath(script)
    main = _main_module()
    ns = vars(main)
    importer = pkgutil.get_importer(path)
    sys.argv = [script, *args]
    if importer is not None:
        # A directory or a zip file with a __main__ module.
        _set_path0(path)
        spec = importer.find_spec("__main__")  # type: ignore[union-attr]
        if spec is None or spec.loader is None:
            print(f"{_PROG} run: can't find '__main__' module in {path!r}", file=sys.stderr)
            return 1
        code = spec.loader.get_code("__main__")  # type: ignore[attr-defined]
        ns.update(
            __file__=spec.origin,
            __cached__=spec.cached,
            __loader__=spec.loader,
            __package__=spec.parent,
            __spec__=spec,
        )
        with _as_main(main):
            exec(code, ns)
        return None
    _set_path0(os.path.dirname(os.path.realpath(script)))
    ns.update(__file__=path, __cached__=None)
    try:
        if path.endswith(".pyc"):
            loader = importlib.machinery.SourcelessFileLoader("__main__", path)
            code = loader.get_code("__main__")
        else:
            loader = importlib.machinery.SourceFileLoader("__main__", path)
            with open(path, "rb") as f:
                code = compile(f.read(), path, "exec", dont_inherit=True)
        ns["__loader__"] = loader
        with _as_main(main):
            exec(code, ns)
    finally:
        ns.pop("__file__", None)
        ns.pop("__cached__", None)
    return None


def _run_module(module: str, args: list[str]) -> None:
    r"""Run ``module`` as ``python -m MODULE ARGS`` does; see Note [run is python]."""
    sys.argv = ["-m", *args]
    _set_path0(os.getcwd())
    start = vars(_main_module())
    init = {k: start[k] for k in ("__annotations__", "__builtins__") if k in start}
    runpy.run_module(module, init_globals=init, run_name="__main__", alter_sys=True)


def _run_code(code: str, args: list[str]) -> None:
    r"""Run ``code`` as ``python -c CODE ARGS`` does; see Note [run is python]."""
    sys.argv = ["-c", *args]
    _set_path0("")
    main = _main_module()
    compiled = compile(code, "<string>", "exec", dont_inherit=True)
    with _as_main(main):
        exec(compiled, vars(main))


def _run(
    script: str | None, module: str | None, args: list[str], code: str | None = None
) -> int:
    from ._install import _check_torch_version, installed

    if script is not None:
        error = _cannot_open(script)
        if error is not None:
            print(f"{_PROG} run: {error}", file=sys.stderr)
            return 2
    try:
        _check_torch_version()
    except RuntimeError as e:
        print(f"{_PROG} run: error: {e}", file=sys.stderr)
        return 2
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    with _reach_children(), installed():
        try:
            if module is not None:
                _run_module(module, args)
            elif code is not None:
                _run_code(code, args)
            elif script is not None:
                status = _run_script(script, args)
                if status is not None:
                    return status
        except SystemExit:
            raise
        except BaseException as e:  # noqa: B036
            # Printed the way Python would. See Note [Tracebacks under run].
            return _report(e)
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def main(argv: list[str] | None = None) -> int:
    r"""Run the command line on ``argv`` (default: ``sys.argv[1:]``), return the status.

    A ``SystemExit`` raised by the script that ``run`` runs propagates. Any other
    exception of the script is printed as Python would print it, and the status
    is 1 (see Note [Tracebacks under run]).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    if argv and argv[0] == "bench":
        # Imported here: the benchmarks are only needed for this command.
        try:
            bench = importlib.import_module("torch_ortho_patch._bench")
        except ModuleNotFoundError as e:
            if e.name != "torch_ortho_patch._bench":
                raise
            parser.exit(2, f"{_PROG} bench: error: the benchmarks are not installed\n")
        return bench.main(argv[1:]) or 0
    rest: list[str] = []
    if argv and argv[0] == "run":
        ours, rest = _split_run(argv[1:])
        argv = ["run", *ours]
    ns, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would report them with the usage of the top-level parser.
        commands.get(ns.command, parser).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    if ns.command is None or ns.command == "check":
        from . import _check

        return _check.main(json_path=getattr(ns, "json", None))
    if ns.command == "run":
        if [ns.module, ns.script, ns.code].count(None) != 2:
            commands["run"].error("expected one of SCRIPT, -m MODULE or -c CODE")
        return _run(ns.script, ns.module, rest, ns.code)
    if ns.command == "diff":
        from ._upstream import build_diff, DOCS, docs_file, write_series

        if ns.stack is None and (ns.author is not None or ns.force):
            commands["diff"].error("--author and --force need --stack")
        try:
            if ns.stack is None:
                patch = build_diff(ns.torch_src)
            else:
                paths = write_series(
                    ns.stack, ns.torch_src, author=ns.author, force=ns.force
                )
                patch = "".join(f"{path}\n" for path in paths)
            if docs_file(ns.torch_src) is None:
                where = ns.torch_src if ns.torch_src is not None else "the installed torch"
                print(
                    f"{_PROG} diff: note: {where} has neither {' nor '.join(DOCS)}; the "
                    "series leaves out the docs entries of the new public functions",
                    file=sys.stderr,
                )
        except (OSError, ValueError, RuntimeError) as e:
            parser.exit(2, f"{_PROG} diff: error: {e}\n")
        sys.stdout.write(patch)
        return 0
    raise AssertionError(f"unhandled command {ns.command!r}")


if __name__ == "__main__":
    sys.exit(main())
