# mypy: allow-untyped-defs
import ast

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS, SKEW_EXP


def _calls_matrix_exp(node):
    return isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and (
        E.dotted(node.value.func) == "torch.matrix_exp"
    )


def edit(path, text):
    if path != PARAMETRIZATIONS:
        return text
    where = "_Orthogonal._map"
    text = E.replace_expr(
        text,
        where,
        lambda n: E.dotted(n) == "torch.matrix_exp",
        "skew_matrix_exp",
        "torch.matrix_exp",
    )
    text = E.insert_stmts(
        text,
        where,
        lambda n: isinstance(n, ast.Assign) and E.calls("skew_matrix_exp")(n),
        "# See Note [Skew matrix exponential via eigh] in _skew_matrix_exp.py",
        "the call of skew_matrix_exp",
        after=False,
    )
    return E.add_import_last(
        text, "from torch.nn.utils._skew_matrix_exp import skew_matrix_exp"
    )


PATCH = Patch(
    name="skew-matrix-exp",
    subject="Take the matrix_exp map and its derivatives from one eigh",
    body="""\
The default map of orthogonal() is torch.matrix_exp of a skew-symmetric
matrix. Its backward exponentiates a 2n x 2n block matrix, so a training step
of an orthogonal weight costs about ten times its forward.

Splitting the power series into even and odd terms, exp(A) = C(A^2) +
A Sn(A^2) with C(t) = cos(sqrt(-t)) and Sn(t) = sinc(sqrt(-t)). For a
skew-symmetric A, A^2 = -A^T A is symmetric, so one real symmetric eigh of
A^T A gives C(A^2), Sn(A^2) and, by the Daleckii-Krein formula with divided
differences evaluated without cancellation, their Frechet derivatives, for
any eigenbasis: repeated and zero eigenvalues need no special case. A
complex A, whose A^H A is complex as well, takes its own eigenvectors from
the Hermitian -iA instead, at the same cost. Add
torch/nn/utils/_skew_matrix_exp.py with skew_matrix_exp(A), which computes
the value and the derivatives of every order (backward, double backward,
forward AD, torch.func) from that one factorisation when a derivative may be
taken, and torch.matrix_exp(A) otherwise, so inference is unchanged. It takes
the eigh path on CPU only for now: on CUDA it calls torch.matrix_exp until
the trade-off has been measured there (Note [Devices for the eigh path]).

Under autograd the values agree with torch.matrix_exp to round-off, not
bitwise, with errors of order eps ||A||^2. On one CPU thread, forward and
backward of three 256 x 256 blocks take about a fifth of the time of
torch.matrix_exp's.
""",
    edit=edit,
    new_files=(SKEW_EXP,),
    tests=("test_orthogonal_matrix_exp_derivatives",),
)
