# mypy: allow-untyped-defs
r"""The command line: ``python -m torch_ortho_patch [check|run|diff|bench]``.

``check`` (the default) prints a live report, ``run`` runs a script or module with
the patch installed, ``diff`` prints the upstream diff and ``bench`` runs the
benchmarks.
"""

import argparse
import contextlib
import importlib
import os
import runpy
import shutil
import sys
import tempfile
from collections.abc import Iterator


__all__ = ["main"]

_PROG = "python -m torch_ortho_patch"


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Block-orthogonal parametrizations for PyTorch, as a patch. "
        "Without a command, runs `check`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{check,run,diff,bench}")
    sub.add_parser(
        "check",
        help="report versions, whether the patch applies and live error measurements "
        "(default)",
        description="Print the torch and Python versions, whether the patch applies "
        "to this torch and whether it is installed, and measure torch's orthogonal "
        "against ours on RNN gate blocks, householder after an AdamW step and a "
        "batched Cayley map on CPU. Exits with status 1 if one of our errors is "
        "above its tolerance.",
    )
    run = sub.add_parser(
        "run",
        help="run a script or module with the patch installed",
        usage=f"{_PROG} run [-h] (SCRIPT | -m MODULE) [ARGS ...]",
        description="Call torch_ortho_patch.install(), then run SCRIPT (or MODULE) "
        "as __main__ with ARGS in sys.argv, the way `python SCRIPT ARGS` (or "
        "`python -m MODULE ARGS`) would. Everything after SCRIPT or MODULE is "
        "passed on. The exit status is the script's. Python processes that the "
        "script starts (multiprocessing spawn or forkserver children, subprocesses "
        "running Python) install the patch too, when they import torch: run sets "
        "TORCH_ORTHO_PATCH_RUN=1 and puts a sitecustomize first on PYTHONPATH.",
    )
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module")
    run.add_argument("script", nargs="?", metavar="SCRIPT", help="path of the script")
    run.add_argument("args", nargs="*", metavar="ARGS", help="arguments of the script")
    diff = sub.add_parser(
        "diff",
        help="print the upstream diff for `git apply` in a PyTorch checkout",
        description="Print a unified diff that applies with `git apply` at the root "
        "of a PyTorch checkout of the installed version: the orthogonal section of "
        "torch/nn/utils/parametrizations.py, the RNNBase methods of "
        "torch/nn/modules/rnn.py, a new test file and, with --torch-src, the docs.",
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
    return parser, run


def _split_run(args: list[str]) -> tuple[list[str], list[str]]:
    r"""Split ``run``'s arguments into ours and the ones passed on to the script."""
    if not args or args[0] in ("-h", "--help"):
        return args, []
    if args[0] == "-m":
        return args[:2], args[2:]
    if args[0].startswith("-m"):
        return args[:1], args[1:]
    if args[0].startswith("-"):
        return args, []  # let argparse report the unknown option
    return args[:1], args[1:]


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


def _run(script: str | None, module: str | None, args: list[str]) -> int:
    from ._install import installed

    if script is not None and not os.path.exists(script):
        print(
            f"{_PROG} run: can't open file {script!r}: [Errno 2] No such file or "
            "directory",
            file=sys.stderr,
        )
        return 2
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    try:
        with _reach_children(), installed():
            if module is not None:
                # run_module(alter_sys=True) puts the module's file in sys.argv[0].
                sys.argv = [module, *args]
                sys.path[0] = os.getcwd()
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            elif script is not None:
                sys.argv = [script, *args]
                sys.path[0] = os.path.dirname(os.path.realpath(script))
                runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def main(argv: list[str] | None = None) -> int:
    r"""Run the command line on ``argv`` (default: ``sys.argv[1:]``), return the status.

    A ``SystemExit`` raised by the script that ``run`` runs propagates.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, run_parser = _parser()
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
    ns = parser.parse_args(argv)
    if ns.command is None or ns.command == "check":
        from . import _check

        return _check.main()
    if ns.command == "run":
        if (ns.module is None) == (ns.script is None):
            run_parser.error("expected either SCRIPT or -m MODULE")
        return _run(ns.script, ns.module, rest)
    if ns.command == "diff":
        from ._upstream import build_diff

        try:
            sys.stdout.write(build_diff(ns.torch_src))
        except (ValueError, RuntimeError) as e:
            parser.exit(2, f"{_PROG} diff: error: {e}\n")
        return 0
    raise AssertionError(f"unhandled command {ns.command!r}")


if __name__ == "__main__":
    sys.exit(main())
