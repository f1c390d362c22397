# mypy: allow-untyped-defs
import ast

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS


def _is_sgn_call(node):
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "sgn"
    )


def edit(path, text):
    if path != PARAMETRIZATIONS:
        return text
    tree = E.parse(text)
    stmt = E.find_stmt(tree, "_make_orthogonal", E.calls("sgn"), "statement that calls .sgn()")
    call = E.find_expr(tree, "_make_orthogonal", _is_sgn_call, "call of .sgn()")
    diag = E.segment(text, call.func.value)  # type: ignore[attr-defined]
    if not isinstance(stmt, ast.AugAssign):
        raise E.AnchorError("Expected _make_orthogonal to scale Q in place with *=.")
    target = E.segment(text, stmt.target)
    return E.replace_stmt(
        text,
        "_make_orthogonal",
        E.calls("sgn"),
        f"""
        sgn = {diag}.sgn()
        # sgn is 0 where R has a zero on its diagonal (A is rank deficient). That
        # column of Q has norm 1 already, so keep it rather than zero it.
        {target} *= torch.where(sgn == 0, 1, sgn).unsqueeze(-2)
        """,
        "statement that calls .sgn()",
    )


PATCH = Patch(
    name="make-orthogonal-rank",
    subject="Keep unit columns in _make_orthogonal for rank-deficient input",
    body="""\
_make_orthogonal scales the Q factor of a QR decomposition by sgn(diag(R)) so
that diag(R) is non-negative. When the input is rank deficient, diag(R) has
zeros, sgn() is 0 there, and the matching columns of Q become zero. That Q is
the base of the dynamic trivialization, so orthogonal() then returns a matrix
with zero columns, silently and for good: a weight initialised with
nn.init.zeros_, an assigned rank-deficient matrix or an expand()ed parameter
never becomes orthogonal, however long it trains.

The columns of householder_product's Q have norm 1 whatever R is; scale by 1
where sgn() is 0. Full-rank input gives the same values as before.
""",
    edit=edit,
    tests=("test_orthogonal_rank_deficient",),
    fix=True,
)
