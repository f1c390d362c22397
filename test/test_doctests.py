# Owner(s): ["module: nn"]
r"""Run the ``Example::`` sections of the docstrings of torch_ortho_patch.

The examples are collected and run with xdoctest, as PyTorch runs its own
docstring examples: every example gets ``torch`` and ``nn`` as globals, and
``# xdoctest: +IGNORE_WANT`` marks output that is random. Each example is one
test. The guides under ``docs/`` are run separately, by
``python -m sphinx -b doctest docs docs/_build/doctest``.
"""

import os
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


if __name__ == "__main__":
    run_tests()
