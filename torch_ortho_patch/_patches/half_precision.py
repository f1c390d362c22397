# mypy: allow-untyped-defs
import ast

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS


def _checks_shape(node):
    return isinstance(node, ast.If) and "self.shape" in ast.unparse(node.test)


def edit(path, text):
    if path != PARAMETRIZATIONS:
        return text
    text = E.insert_stmts(
        text,
        "_Orthogonal.right_inverse",
        _checks_shape,
        """
        if Q.dtype in (torch.float16, torch.bfloat16):
            # QR has no half precision kernels on CPU: orthogonalize in float32
            # and keep the results in the dtype of Q.
            X = self.right_inverse(Q.float())
            if getattr(self, "base", None) is not None:
                self.base = self.base.to(Q.dtype)
            return X.to(Q.dtype)
        """,
        "the check of the shape of Q",
        after=True,
    )
    # The maps, too, are computed in float32 for half precision input.
    method = E.find_def(E.parse(text), "_Orthogonal._map")
    first = method.body[0]  # type: ignore[attr-defined]
    text = E.insert_stmts(
        text,
        "_Orthogonal._map",
        lambda n: n.lineno == first.lineno,
        """
        dtype = X.dtype
        if dtype in (torch.float16, torch.bfloat16):
            # The maps lose orthogonality in half precision, and some of them
            # have no half precision kernels on CPU.
            X = X.float()
        """,
        "the first statement",
        after=False,
    )
    return E.replace_expr(
        text,
        "_Orthogonal._map",
        lambda n: isinstance(n, ast.Name) and _is_last_return(text, n),
        "Q if Q.dtype == dtype else Q.to(dtype)",
        "the returned value",
    )


def _is_last_return(text, node):
    method = E.find_def(E.parse(text), "_Orthogonal._map")
    ret = [n for n in method.body if isinstance(n, ast.Return)][-1]  # type: ignore[attr-defined]
    return (node.lineno, node.col_offset) == (ret.value.lineno, ret.value.col_offset)


PATCH = Patch(
    name="half-precision",
    subject="Compute orthogonal() in float32 for half precision weights",
    body="""\
orthogonal() on a float16 or bfloat16 weight fails on first use with
"unsupported operand type(s) for @: 'NoneType' and 'Tensor'": QR has no half
precision kernels on CPU, register_parametrization swallows the
NotImplementedError of right_inverse, and the base is never set. The maps
themselves lose orthogonality in half precision, and CPU's matrix_exp
overflows there.

Orthogonalize in float32 in right_inverse and compute the maps in float32,
keeping the base, the original and the result in the weight's dtype. float32
and float64 weights take the same code as before.
""",
    edit=edit,
    tests=("test_orthogonal_half_precision",),
    fix=True,
)
