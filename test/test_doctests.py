# Owner(s): ["module: nn"]
r"""Run the ``Example::`` sections of the docstrings of torch_ortho_patch.

The examples are collected and run with xdoctest, as PyTorch runs its own
docstring examples: every example gets ``torch`` and ``nn`` as globals, and
``# xdoctest: +IGNORE_WANT`` marks output that is random. Each example is one
test. The guides under ``docs/`` are run separately, by
``python -m sphinx -b doctest docs docs/_build/doctest``.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import unittest
from unittest import mock
from pathlib import Path

import torch
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize,
    run_tests,
    TestCase,
)

import torch_ortho_patch


try:
    import xdoctest.core
except ImportError:  # the `docs` extra is not installed
    xdoctest = None

PACKAGE = Path(torch_ortho_patch.__file__).parent
GLOBAL_EXEC = "import torch; from torch import nn"
# Functions whose docstrings must keep an example: losing one is a regression.
DOCUMENTED = {
    "orthogonal",
    "orthogonal_map",
    "matrix_exp_map",
    "cayley_map",
    "householder_map",
    "install",
    "installed",
    "orthogonal_",
}


# The definitions that the stack adds or changes exist only in the runtime
# module, compiled from the amended torch file; their examples are read from
# there, and run in that module. The patch modules that hold their source are
# not runnable on their own. See Note [Amend, don't replace].
AMENDED = ("orthogonal", "orthogonal_map", "matrix_exp_map", "cayley_map", "householder_map")
# Those of torch_ortho_patch.init. Their examples call nn.init.orthogonal_, as
# torch's docstrings do, so they run with the patch installed.
AMENDED_INIT = ("orthogonal_",)


def _examples():
    if xdoctest is None:
        return []
    from torch_ortho_patch import init as ours_init, parametrizations as ours

    found = [
        e
        for e in xdoctest.core.parse_doctestables(str(PACKAGE), style="auto")
        if "_patches" not in Path(e.modpath).parts
    ]
    for module, names in ((ours, AMENDED), (ours_init, AMENDED_INIT)):
        for name in names:
            found += xdoctest.core.parse_docstr_examples(
                getattr(module, name).__doc__, callname=name, modpath=module.__file__
            )
    return sorted(found, key=lambda e: (e.modpath, e.callname, e.num))


EXAMPLES = _examples()


def _name(example):
    module = Path(example.modpath).stem.lstrip("_")
    return f"{module}_{example.callname}_{example.num}"


# Without xdoctest the tests are skipped, except in CI, which installs the docs
# extra and must not pass by skipping.
_skip = unittest.skipIf(
    xdoctest is None and not os.environ.get("CI"),
    "xdoctest is not installed (pip install -e '.[docs]')",
)


@_skip
class TestDocstringExamples(TestCase):
    def setUp(self):
        super().setUp()
        torch_ortho_patch.uninstall()
        self.addCleanup(torch_ortho_patch.uninstall)
        # PyTorch's docstrings mark their LAPACK examples with
        # +REQUIRES(env:TORCH_DOCTEST_LAPACK); this build has LAPACK, so run them.
        patcher = mock.patch.dict(os.environ, {"TORCH_DOCTEST_LAPACK": "1"})
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_examples_found(self):
        if xdoctest is None:
            raise ImportError("xdoctest is required to run the docstring examples")
        self.assertGreater(len(EXAMPLES), 0)
        documented = {e.callname for e in EXAMPLES}
        self.assertEqual(DOCUMENTED - documented, set())

    # torch's @parametrize refuses an empty list, which is what EXAMPLES is
    # without xdoctest; test_examples_found says then why nothing ran.
    @parametrize("example", EXAMPLES or [None], name_fn=lambda e: _name(e) if e else "none")
    def test_example(self, example):
        if example is None:
            raise unittest.SkipTest("no examples collected: xdoctest is not installed")
        torch.manual_seed(0)
        if Path(example.modpath).name == "init.py":
            torch_ortho_patch.install()
        example.config["global_exec"] = GLOBAL_EXEC
        try:
            summary = example.run(verbose=0, on_error="return")
        except BaseException as e:
            # xdoctest skips an example whose every part is marked +SKIP by raising
            # pytest's Skipped; report it as a skip under any runner.
            if type(e).__name__ == "Skipped":
                raise unittest.SkipTest(f"{example.node}: all parts skipped") from None
            raise
        if summary.get("skipped"):
            raise unittest.SkipTest(f"{example.node}: skipped")
        if not summary["passed"]:
            self.fail("\n".join(example.repr_failure()))


instantiate_parametrized_tests(TestDocstringExamples)


README = PACKAGE.parent / "README.md"


def _readme_blocks():
    # The ```python blocks of the README, each as a user would copy it.
    text = README.read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


class TestReadmeExamples(TestCase):
    def test_some_blocks(self):
        self.assertGreaterEqual(len(_readme_blocks()), 2)

    @parametrize("i", range(len(_readme_blocks())))
    def test_block_runs_alone(self, i):
        # In a fresh interpreter, in an empty directory: nothing from a
        # previous block or from this test process is there.
        with tempfile.TemporaryDirectory() as cwd:
            env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
            proc = subprocess.run(
                [sys.executable, "-c", _readme_blocks()[i]],
                cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
            )
        self.assertEqual(proc.returncode, 0, proc.stderr)


instantiate_parametrized_tests(TestReadmeExamples)


DOCS = PACKAGE.parent / "docs"
# Runs each block given on stdin (as JSON) in a namespace of its own, and prints
# the ones that raised. One interpreter for all, so that torch is imported once.
_RUN_BLOCKS = '''
import json, sys, traceback
failed = {}
for name, code in json.load(sys.stdin).items():
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
    except BaseException:
        failed[name] = traceback.format_exc(limit=1)
print(json.dumps(failed))
'''


def _rst_blocks(path):
    # {"page.rst:LINE": code} of the Python blocks of a page (testcode and
    # code-block:: python) that are not marked ``.. rst-class:: continues``.
    lines = path.read_text(encoding="utf-8").splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = re.match(r"^( *)\.\. (testcode|code-block)::\s*(\w*)", line)
        if not m or (m.group(2) == "code-block" and m.group(3) != "python"):
            continue
        before = [x for x in lines[:i] if x.strip()]
        if before and before[-1].strip() == ".. rst-class:: continues":
            continue
        indent = len(m.group(1))
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith(":"):
            j += 1
        body = []
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            body.append(lines[j])
            j += 1
        out[f"{path.name}:{i + 1}"] = textwrap.dedent("\n".join(body))
    return out


class TestGuideExamples(TestCase):
    # Every example of the guides runs alone, as a user copies it, unless the
    # page marks it as continuing the one before (which sphinx -b doctest runs
    # in order).
    def test_blocks_run_alone(self):
        blocks = {}
        for path in sorted(DOCS.glob("*.rst")):
            blocks.update(_rst_blocks(path))
        self.assertGreater(len(blocks), 10)
        with tempfile.TemporaryDirectory() as cwd:
            env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
            proc = subprocess.run(
                [sys.executable, "-c", _RUN_BLOCKS], input=json.dumps(blocks),
                cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False,
            )
        self.assertEqual(proc.returncode, 0, proc.stderr)
        failed = json.loads(proc.stdout.strip().splitlines()[-1])
        self.assertEqual(failed, {}, "\n".join(f"{k}: {v}" for k, v in failed.items()))


if __name__ == "__main__":
    run_tests()
