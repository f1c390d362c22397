# Owner(s): ["module: nn"]
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import torch
from torch.nn.utils import parametrize
from torch.testing._internal.common_utils import run_tests, TestCase

from _block_checks import Counting, run_block_checks
from torch_ortho_patch import _upstream
from torch_ortho_patch._upstream import build_diff, patched_files


REPO = Path(__file__).absolute().parent.parent
TORCH = Path(torch.__file__).parent
NEW_NAMES = ("orthogonal_map", "matrix_exp_map", "cayley_map", "householder_map")
DOCS_SNIPPET = """\
Parametrizations implemented using the new parametrization functionality.

```{eval-rst}
.. autosummary::
    :toctree: generated
    :nosignatures:

    parametrizations.orthogonal
    parametrizations.weight_norm
    parametrizations.spectral_norm
```
"""


def git(*args, cwd):
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def fake_checkout(root: Path, docs: bool = False) -> None:
    r"""Lay out the files the diff touches, copied from the installed torch."""
    for rel in (_upstream.PARAMETRIZATIONS, _upstream.RNN):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(TORCH.parent / rel, root / rel)
    if docs:
        (root / "docs/source").mkdir(parents=True)
        (root / "docs/source/nn.md").write_text(DOCS_SNIPPET)


def load(name: str, path: Path):
    r"""Import a file as module ``name`` (unique per call)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class TestUpstreamDiff(TestCase):
    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)

    def apply(self, diff: str, root: Path) -> None:
        patch = root.parent / f"{root.name}.patch"
        patch.write_text(diff)
        self.addCleanup(patch.unlink)
        self.assertEqual(git("init", "-q", ".", cwd=root).returncode, 0)
        check = git("apply", "--check", str(patch), cwd=root)
        self.assertEqual(check.returncode, 0, msg=check.stderr)
        applied = git("apply", str(patch), cwd=root)
        self.assertEqual(applied.returncode, 0, msg=applied.stderr)

    def test_diff_applies_to_installed_torch(self):
        diff = build_diff()
        self.assertTrue(diff.endswith("\n"))
        self.assertNotIn("torch_ortho_patch", diff)
        headers = [line for line in diff.splitlines() if line.startswith("diff --git")]
        self.assertExpectedInline(
            "\n".join(headers),
            """\
diff --git a/torch/nn/utils/parametrizations.py b/torch/nn/utils/parametrizations.py
diff --git a/torch/nn/modules/rnn.py b/torch/nn/modules/rnn.py
diff --git a/test/nn/test_parametrization_orthogonal_blocks.py b/test/nn/test_parametrization_orthogonal_blocks.py""",  # noqa: B950
        )
        self.assertIn(
            "new file mode 100644\n--- /dev/null\n"
            "+++ b/test/nn/test_parametrization_orthogonal_blocks.py\n",
            diff,
        )
        fake_checkout(self.root)
        self.apply(diff, self.root)

        # The patched parametrizations.py stands on its own and passes the checks.
        path = self.root / _upstream.PARAMETRIZATIONS
        text = path.read_text()
        self.assertNotIn("torch_ortho_patch", text)
        P = load(f"_patched_parametrizations_{uuid.uuid4().hex}", path)
        for name in ("orthogonal", "spectral_norm", "weight_norm", *NEW_NAMES):
            self.assertIn(name, P.__all__)
            self.assertTrue(callable(getattr(P, name)))
        run_block_checks(P)

        # The patched rnn.py reads each weight once per forward. Loading it as a
        # sibling of torch.nn.modules.rnn resolves its relative imports.
        rnn = load(
            f"torch.nn.modules._patched_rnn_{uuid.uuid4().hex}",
            self.root / _upstream.RNN,
        )
        for cls in (rnn.RNN, rnn.LSTM, rnn.GRU):
            model = cls(4, 4)
            counter = Counting()
            parametrize.register_parametrization(model, "weight_hh_l0", counter)
            counter.calls = 0
            model(torch.randn(3, 1, 4))
            self.assertEqual(counter.calls, 1)

    def test_generated_test_runs(self):
        files = patched_files()
        old, new = files[_upstream.BLOCKS_TEST]
        self.assertIsNone(old)
        self.assertTrue(new.startswith('# Owner(s): ["module: nn"]\n'))
        self.assertIn("import torch.nn.utils.parametrizations as P\n", new)
        self.assertTrue(new.endswith('if __name__ == "__main__":\n    run_tests()\n'))
        ast.parse(new)
        # Run it as upstream would, with the patch standing in for a patched torch.
        path = self.root / "test_parametrization_orthogonal_blocks.py"
        path.write_text(new)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        # With CI set, torch's run_tests() writes XML reports through xmlrunner,
        # which PyTorch's CI installs and we do not need: run it as a developer would.
        env.pop("CI", None)
        result = subprocess.run(
            [sys.executable, "-m", "torch_ortho_patch", "run", str(path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        self.assertIn("OK", result.stderr)

    def test_imports_added_where_expected(self):
        # Our section's imports that upstream lacks go into upstream's import block.
        section, _, _ = _upstream._our_section()
        old, new = patched_files()[_upstream.PARAMETRIZATIONS]
        old_tree, new_tree = ast.parse(old), ast.parse(new)
        bound = _upstream._bound_names(new_tree.body)
        self.assertEqual(_upstream._free_names(section) - bound, set())
        # Every import stays in the leading import block.
        kinds = [isinstance(n, (ast.Import, ast.ImportFrom)) for n in new_tree.body]
        first_other = kinds.index(False)
        self.assertNotIn(True, kinds[first_other:])
        # Upstream's own imports are all kept.
        old_names = _upstream._bound_names(old_tree.body)
        self.assertLessEqual(old_names, _upstream._bound_names(new_tree.body))

    def test_rnn_hunks(self):
        old, new = patched_files()[_upstream.RNN]
        old_cls = _upstream._find_def(ast.parse(old).body, "RNNBase", "old")
        new_cls = _upstream._find_def(ast.parse(new).body, "RNNBase", "new")
        old_methods, new_methods = (
            {n.name: ast.unparse(n) for n in c.body if isinstance(n, ast.FunctionDef)}
            for c in (old_cls, new_cls)
        )
        self.assertEqual(list(old_methods), list(new_methods))
        changed = sorted(k for k in old_methods if old_methods[k] != new_methods[k])
        self.assertEqual(changed, ["_init_flat_weights", "_update_flat_weights"])
        self.assertIn("# Note [RNN weights read once per forward]", new)
        # The added lines fit PyTorch's formatter width.
        added = set(new.splitlines()) - set(old.splitlines())
        self.assertEqual([line for line in added if len(line) > 88], [])

    def test_torch_src_with_docs(self):
        fake_checkout(self.root, docs=True)
        diff = build_diff(self.root)
        docs = diff[diff.index("diff --git a/docs/source/nn.md") :]
        self.assertExpectedInline(
            docs,
            """\
diff --git a/docs/source/nn.md b/docs/source/nn.md
--- a/docs/source/nn.md
+++ b/docs/source/nn.md
@@ -6,6 +6,10 @@
     :nosignatures:
 
     parametrizations.orthogonal
+    parametrizations.orthogonal_map
+    parametrizations.matrix_exp_map
+    parametrizations.cayley_map
+    parametrizations.householder_map
     parametrizations.weight_norm
     parametrizations.spectral_norm
 ```
""",
        )
        self.apply(diff, self.root)
        # Without --torch-src the wheel has no docs, so there is no docs hunk.
        self.assertNotIn("docs/source", build_diff())

    def test_bad_torch_src(self):
        with self.assertRaises(ValueError) as cm:
            build_diff(self.root / "nowhere")
        self.assertExpectedInline(
            str(cm.exception).replace(str(self.root), "<tmp>"),
            """Expected a PyTorch source tree that contains torch/nn/utils/parametrizations.py. Got '<tmp>/nowhere'.""",  # noqa: B950
        )

    def test_no_newline_at_end_of_file(self):
        (self.root / "f.py").write_text("a = 1\nb = 2")
        diff = _upstream._unified("f.py", "a = 1\nb = 2", "a = 1\nb = 3\n")
        self.assertExpectedInline(
            diff,
            """\
diff --git a/f.py b/f.py
--- a/f.py
+++ b/f.py
@@ -1,2 +1,2 @@
 a = 1
-b = 2
\\ No newline at end of file
+b = 3
""",
        )
        self.apply(diff, self.root)
        self.assertEqual((self.root / "f.py").read_text(), "a = 1\nb = 3\n")


class TestAddImports(TestCase):
    def add(self, text, needed, source):
        return _upstream._add_imports(text, needed, ast.parse(source).body, "t.py")[0]

    def test_merge_into_from_import(self):
        text = "from enum import Enum\n\nimport torch\n\nX = 1\n"
        self.assertExpectedInline(
            self.add(text, {"auto", "Enum"}, "from enum import auto"),
            """\
from enum import auto, Enum

import torch

X = 1
""",
        )

    def test_sorted_into_stdlib_group(self):
        text = "import math\nimport weakref\nfrom enum import Enum\n\nimport torch\n"
        self.assertExpectedInline(
            self.add(text, {"warnings", "abc"}, "import abc\nimport warnings"),
            """\
import abc
import math
import warnings
import weakref
from enum import Enum

import torch
""",
        )

    def test_new_stdlib_group(self):
        text = "# mypy: allow-untyped-defs\nimport torch\nfrom torch import Tensor\n\n"
        text += "X = 1\n"
        self.assertExpectedInline(
            self.add(text, {"warnings"}, "import warnings"),
            """\
# mypy: allow-untyped-defs
import warnings

import torch
from torch import Tensor

X = 1
""",
        )

    def test_new_third_party_group_and_from_merge(self):
        text = '"""Doc."""\nimport math\n\nX = 1\n'
        self.assertExpectedInline(
            self.add(
                text,
                {"Tensor", "Module"},
                "from torch import Tensor\nfrom torch import nn as Module",
            ),
            '''\
"""Doc."""
import math

from torch import nn as Module, Tensor

X = 1
''',
        )

    def test_no_imports_at_all(self):
        self.assertExpectedInline(
            self.add(
                '"""Doc."""\nX = 1\n',
                {"math", "warnings", "torch", "Tensor"},
                "import torch\nimport warnings\nimport math\nfrom torch import Tensor",
            ),
            '''\
"""Doc."""

import math
import warnings

import torch
from torch import Tensor

X = 1
''',
        )

    def test_unknown_name(self):
        with self.assertRaises(RuntimeError) as cm:
            self.add("import torch\n", {"nowhere"}, "import math")
        self.assertExpectedInline(
            str(cm.exception),
            """Expected 'nowhere' to be defined in t.py or imported by the torch_ortho_patch source. It is neither.""",  # noqa: B950
        )

    def test_nothing_needed(self):
        text = "import math\n\nX = math.pi\n"
        self.assertEqual(self.add(text, {"math"}, "import math"), text)


if __name__ == "__main__":
    run_tests()
