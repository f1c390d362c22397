# Owner(s): ["module: nn"]
r"""The edit primitives of torch_ortho_patch._edits, and the series against a
PyTorch source tree (``--torch-src``), on small sources written here."""

import ast
import shutil
import tempfile
import textwrap
from pathlib import Path

from torch.testing._internal.common_utils import run_tests, TestCase

from torch_ortho_patch import _edits as E, _stack, _upstream


def src(text):
    return textwrap.dedent(text).lstrip("\n")


class TestEdits(TestCase):
    def test_find_stmt_takes_innermost_and_says_what_is_missing(self):
        text = src(
            """
            def f(x):
                if x:
                    y = x.int()
                return y
            """
        )
        node = E.find_stmt(ast.parse(text), "f", E.calls("int"), "call of int")
        self.assertIsInstance(node, ast.Assign)
        with self.assertRaisesRegex(E.AnchorError, "Expected exactly one call of sgn in f. Found 0."):
            E.find_stmt(ast.parse(text), "f", E.calls("sgn"), "call of sgn")
        with self.assertRaisesRegex(E.AnchorError, "Expected a definition of g"):
            E.find_def(ast.parse(text), "g")

    def test_add_kwonly_arg_keeps_the_layout(self):
        one_per_line = src(
            """
            def f(
                a,
                *,
                b: bool = True,
            ) -> None:
                pass
            """
        )
        self.assertExpectedInline(
            E.add_kwonly_arg(one_per_line, "f", "c: int | None = None"),
            """\
def f(
    a,
    *,
    b: bool = True,
    c: int | None = None,
) -> None:
    pass
""",
        )
        same_line = "def f(a, *, b=True):\n    pass\n"
        self.assertEqual(
            E.add_kwonly_arg(same_line, "f", "c=None"),
            "def f(a, *, b=True, c=None):\n    pass\n",
        )
        long = "class C:\n    def f(\n        self, weight, orthogonal_map: int, *, use_trivialization=True\n    ) -> None:\n        pass\n"
        self.assertExpectedInline(
            E.add_kwonly_arg(long, "C.f", "blocks: int | None = None"),
            """\
class C:
    def f(
        self,
        weight,
        orthogonal_map: int,
        *,
        use_trivialization=True,
        blocks: int | None = None,
    ) -> None:
        pass
""",
        )

    def test_add_kwonly_arg_adds_the_star(self):
        one_per_line = src(
            """
            def f(
                a,
                b=1,
            ):
                pass
            """
        )
        self.assertExpectedInline(
            E.add_kwonly_arg(one_per_line, "f", "c: int | None = None"),
            """\
def f(
    a,
    b=1,
    *,
    c: int | None = None,
):
    pass
""",
        )
        self.assertEqual(
            E.add_kwonly_arg("def f(a, b=1):\n    pass\n", "f", "c=None"),
            "def f(a, b=1, *, c=None):\n    pass\n",
        )
        for text in ("def f(*args):\n    pass\n", "def f(a, /):\n    pass\n"):
            with self.assertRaisesRegex(E.AnchorError, "Expected f to have"):
                E.add_kwonly_arg(text, "f", "c=None")

    def test_list_keeps_its_quotes(self):
        self.assertEqual(
            E.replace_in_list("__all__ = ['a', 'c']\n", "__all__", "a", ["b"]),
            "__all__ = ['a', 'b', 'c']\n",
        )
        self.assertEqual(
            E.replace_in_list('__all__ = ["a"]\n', "__all__", "a", ["b"]),
            '__all__ = ["a", "b"]\n',
        )

    def test_ensure_import(self):
        text = "# comment\nfrom enum import Enum\n\nimport torch\n"
        # usort puts the plain imports of a category before its from-imports.
        self.assertEqual(
            E.ensure_import(text, "warnings"),
            "# comment\nimport warnings\nfrom enum import Enum\n\nimport torch\n",
        )
        self.assertEqual(
            E.ensure_import(text, "abc"),
            "# comment\nimport abc\nfrom enum import Enum\n\nimport torch\n",
        )
        text = "import math\nimport weakref\nfrom typing import Any\n\nimport torch\n"
        self.assertEqual(
            E.ensure_import(text, "copy"),
            "import copy\nimport math\nimport weakref\nfrom typing import Any\n\nimport torch\n",
        )
        self.assertEqual(
            E.ensure_import(text, "warnings"),
            "import math\nimport warnings\nimport weakref\nfrom typing import Any\n\nimport torch\n",
        )
        self.assertEqual(
            E.ensure_import(text, "zipfile"),
            "import math\nimport weakref\nimport zipfile\nfrom typing import Any\n\nimport torch\n",
        )
        self.assertEqual(E.ensure_import("import warnings\n", "warnings"), "import warnings\n")

    def test_docstring_insert(self):
        text = src(
            '''
            def f():
                """Summary.

                Args:
                    a: the a.

                Returns:
                    Nothing.
                """
            '''
        )
        out = E.docstring_insert(
            text, "f", "b: the b.", before=lambda s: s == "Returns:",
            what="Returns", skip_blank_back=True, relative="    ",
        )
        self.assertIn("        a: the a.\n        b: the b.\n\n    Returns:", out)
        with self.assertRaisesRegex(E.AnchorError, "Expected Warns in the docstring of f"):
            E.docstring_insert(text, "f", "x", before=lambda s: s == "Warns:", what="Warns")


class TestTorchSrc(TestCase):
    # A PyTorch tree: the installed files, a docs page and a test file of its own.
    def test_series_into_a_source_tree(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for path in (_stack.PARAMETRIZATIONS, _stack.RNN, _stack.INIT):
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(_stack.installed_root() / path, root / path)
            docs = root / "docs/source/nn.md"
            docs.parent.mkdir(parents=True)
            docs.write_text("```{autosummary}\n    parametrizations.orthogonal\n    parametrizations.spectral_norm\n```\n")
            nn_test = root / _upstream.UPSTREAM_NN_TEST
            nn_test.parent.mkdir(parents=True)
            nn_test.write_text(
                "import torch\n\n\nclass TestNN(NNTestCase):\n"
                "    def test_c(self):\n        pass\n\n\n"
                'if __name__ == "__main__":\n    run_tests()\n'
            )
            test = root / _upstream.UPSTREAM_TEST
            test.parent.mkdir(parents=True)
            test.write_text(
                "import torch\n\n\nclass TestNNParametrization(NNTestCase):\n"
                "    def test_a(self):\n        pass\n\n\n"
                "class TestNNParametrizationDevice(NNTestCase):\n"
                "    def test_b(self, device):\n        pass\n\n\n"
                'if __name__ == "__main__":\n    run_tests()\n'
            )
            init_test = root / _upstream.UPSTREAM_INIT_TEST
            init_test.write_text(
                "import torch\n\n\nclass TestNNInit(TestCase):\n"
                "    def test_orthogonal(self):\n        pass\n\n\n"
                'if __name__ == "__main__":\n    run_tests()\n'
            )
            files = _upstream.patched_files(root)
            self.assertNotIn(_upstream.NEW_INIT_TEST, files)
            tree = ast.parse(files[_upstream.UPSTREAM_INIT_TEST][1])
            (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
            self.assertEqual(
                [m.name for m in cls.body],
                [
                    "test_orthogonal",
                    "test_orthogonal_gate_blocks",
                    "test_orthogonal_fills_each_block",
                    "test_orthogonal_block_arguments",
                ],
            )
            self.assertIn("parametrizations.cayley_map", files["docs/source/nn.md"][1])
            self.assertNotIn(_upstream.NEW_TEST, files)
            new = files[_upstream.UPSTREAM_TEST][1]
            tree = ast.parse(new)
            classes = {n.name: [m.name for m in n.body if isinstance(m, ast.FunctionDef)] for n in tree.body if isinstance(n, ast.ClassDef)}
            self.assertIn("test_orthogonal_blocks", classes["TestNNParametrizationDevice"])
            self.assertIn("test_orthogonal_householder_weight_decay", classes["TestNNParametrization"])
            self.assertEqual(classes["TestNNParametrization"][0], "test_a")
            # The tests of RNNBase join TestNN in test/test_nn.py.
            nn_new = ast.parse(files[_upstream.UPSTREAM_NN_TEST][1])
            nn_classes = {n.name: [m.name for m in n.body if isinstance(m, ast.FunctionDef)] for n in nn_new.body if isinstance(n, ast.ClassDef)}
            self.assertEqual(
                nn_classes["TestNN"],
                ["test_c", "test_rnn_parametrized_weight_read_once", "test_rnn_deepcopy_after_forward"],
            )
            self.assertNotIn("test_rnn_deepcopy_after_forward", classes["TestNNParametrization"])
            self.assertNotIn(_upstream.NEW_NN_TEST, files)
            series = _upstream.build_series(root)
            names = [p.patch.name for p in series]
            self.assertEqual(series[names.index("rnn-deepcopy")].test_file, _upstream.UPSTREAM_NN_TEST)
            self.assertEqual(series[names.index("blocks")].test_file, _upstream.UPSTREAM_TEST)
            self.assertIn("docs/source/nn.md", series[[p.patch.name for p in series].index("public-maps")].diff)

    def test_tree_without_a_test_class(self):
        # An older tree's test file may lack a class of ours, such as
        # TestNNParametrizationDevice: those tests go to a new file, the others
        # into the upstream file.
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for path in (_stack.PARAMETRIZATIONS, _stack.RNN, _stack.INIT):
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(_stack.installed_root() / path, root / path)
            test = root / _upstream.UPSTREAM_TEST
            test.parent.mkdir(parents=True)
            test.write_text(
                "import torch\n\n\nclass TestNNParametrization(NNTestCase):\n"
                "    def test_a(self):\n        pass\n\n\n"
                'if __name__ == "__main__":\n    run_tests()\n'
            )
            files = _upstream.patched_files(root)
            upstream = ast.parse(files[_upstream.UPSTREAM_TEST][1])
            new = ast.parse(files[_upstream.NEW_TEST][1])

            def classes(tree):
                return {
                    n.name: {m.name for m in n.body if isinstance(m, ast.FunctionDef)}
                    for n in tree.body
                    if isinstance(n, ast.ClassDef)
                }

            self.assertEqual(set(classes(upstream)), {"TestNNParametrization"})
            self.assertIn("test_orthogonal_rank_deficient", classes(upstream)["TestNNParametrization"])
            self.assertEqual(set(classes(new)), {"TestNNParametrizationOrthogonalDevice"})
            self.assertIn("test_orthogonal_blocks", classes(new)["TestNNParametrizationOrthogonalDevice"])

    def test_docs_hunk_for_nn_rst(self):
        # Older trees keep the nn page as reStructuredText; the public maps join
        # its autosummary the same way. A tree with neither page gets no hunk.
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for path in (_stack.PARAMETRIZATIONS, _stack.RNN, _stack.INIT):
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(_stack.installed_root() / path, root / path)
            self.assertIsNone(_upstream.docs_file(root))
            self.assertFalse(any(p.startswith("docs/") for p in _upstream.patched_files(root)))
            docs = root / "docs/source/nn.rst"
            docs.parent.mkdir(parents=True)
            docs.write_text(
                ".. autosummary::\n    :toctree: generated\n    :nosignatures:\n\n"
                "    parametrizations.orthogonal\n    parametrizations.weight_norm\n"
            )
            self.assertEqual(_upstream.docs_file(root), "docs/source/nn.rst")
            new = _upstream.patched_files(root)["docs/source/nn.rst"][1]
            self.assertIn(
                "    parametrizations.orthogonal\n    parametrizations.orthogonal_map\n"
                "    parametrizations.matrix_exp_map\n    parametrizations.cayley_map\n"
                "    parametrizations.householder_map\n    parametrizations.weight_norm\n",
                new,
            )

    def test_not_a_source_tree(self):
        with self.assertRaisesRegex(ValueError, "Expected a PyTorch source tree"):
            _upstream.build_diff("/nonexistent")


if __name__ == "__main__":
    run_tests()
