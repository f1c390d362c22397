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
    # The comment above the statement says that the diagonal is +-1 and names
    # the cast, which is gone; it is replaced. See the body below.
    return E.replace_comment_above(
        text,
        "_Orthogonal.forward",
        lambda n: n.lineno == stmt.lineno and isinstance(n, ast.Assign),
        """
        # right_inverse sets the diagonal of X to 1's and -1's, and weight decay
        # moves it towards 0. Read the sign of each entry, with 0 counted as +1:
        # .int() would truncate every entry of magnitude below 1 to 0 and zero
        # its column. The signs get no gradient, so neither does the diagonal.
        """,
        "statement that reads the signs",
    )


PATCH = Patch(
    name="householder-sign",
    subject="Keep orthonormal columns in the householder map under weight decay",
    body="""\
The householder map of orthogonal() takes the sign of each column from the
diagonal of the original tensor, which right_inverse sets to exactly +1 or -1,
and reads it with .int(). Weight decay shrinks the whole diagonal towards 0,
and .int() truncates every entry of magnitude below 1 to 0, of either sign:
the diagonal [0.99, 1, 0.5] gives column norms [0, 1, 0]. One AdamW step at
its defaults moves every entry off +-1, and the weight of
orthogonal(nn.Linear(3, 6)), whose default map is householder, becomes all
zeros, for good and with no error.

Read the sign with torch.where(d < 0, -1, 1) instead: the same values as
before whenever the diagonal is exactly +-1, and orthonormal columns for any
original tensor. The comment above that line said that the diagonal is 1's
and -1's and that the cast keeps it out of autograd; it is replaced by one that
says what holds now.
""",
    edit=edit,
    tests=("test_orthogonal_householder_weight_decay",),
    fix=True,
)
