# mypy: allow-untyped-defs
import ast

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS


def _is_int_call(node):
    # X.diagonal(...).int()
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "int"
        and not node.args
    )


def edit(path, text):
    if path != PARAMETRIZATIONS:
        return text
    stmt = E.find_stmt(
        E.parse(text), "_Orthogonal.forward", E.calls("int"), "statement that calls .int()"
    )
    diag = E.find_expr(E.parse(text), "_Orthogonal.forward", _is_int_call, "call of .int()")
    receiver = E.segment(text, diag.func.value)  # type: ignore[attr-defined]
    text = E.replace_expr(
        text,
        "_Orthogonal.forward",
        _is_int_call,
        f"torch.where({receiver} < 0, -1, 1)",
        "call of .int()",
    )
    return E.insert_stmts(
        text,
        "_Orthogonal.forward",
        lambda n: n.lineno == stmt.lineno and isinstance(n, ast.Assign),
        """
        # Weight decay moves a -1 of the diagonal towards 0, where .int() would
        # truncate it and zero its column: read the sign, with 0 counted as +1.
        """,
        "the statement that reads the signs",
        after=False,
    )


PATCH = Patch(
    name="householder-sign",
    subject="Keep orthonormal columns in the householder map under weight decay",
    body="""\
The householder map of orthogonal() takes the sign of each column from the
diagonal of the original tensor, which right_inverse sets to exactly +1 or -1,
and reads it with .int(). Weight decay moves -1 towards 0; .int() truncates
-0.99 to 0 and the column becomes zero. With AdamW at its defaults a
non-square orthogonal weight loses all its -1 columns in the first step and
never recovers, with no error.

Read the sign with torch.where(d < 0, -1, 1) instead: the same values as
before whenever the diagonal is exactly +-1, and orthonormal columns for any
original tensor.
""",
    edit=edit,
    tests=("test_orthogonal_householder_weight_decay",),
)
