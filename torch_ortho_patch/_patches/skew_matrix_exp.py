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
        "# See Note [Backward of the skew matrix exponential] in _skew_matrix_exp.py",
        "the call of skew_matrix_exp",
        after=False,
    )
    return E.add_import_last(
        text, "from torch.nn.utils._skew_matrix_exp import skew_matrix_exp"
    )


_TEST_PLAN = """\
The test checks that the value equals torch.matrix_exp's with and without
grad; gradcheck and gradgradcheck (with forward AD) in double precision,
where the backward stays torch.matrix_exp's; and that in float32 and
complex64, where the eigh backward runs, the gradient error against a double
precision reference is at most that of torch.matrix_exp's own gradient up to
||A||_2 = 1000 (over 150 seeds of the test's inputs the ratio was at most
0.46 and 0.38).

Accuracy, float32, A of shape (3, n, n), n in {8, 64, 65, 256}, random and
rank-2, ||A||_2 from 0.1 to 1000: the gradient's relative error against
float64 is at most 0.47 times torch.matrix_exp's (1.0e-7 to 1.5e-5, against
2.4e-7 to 3.6e-4). In float64 against a 40-digit reference (n = 8) the eigh
backward was at most 1.29 times torch.matrix_exp's error, which is why float64
and complex128 keep torch.matrix_exp's backward.

Benchmark: forward + backward of three n x n blocks in float32, one CPU
thread, ratio to torch.matrix_exp, median of 5 interleaved rounds (range):

    import torch
    from torch.utils.benchmark import Timer
    from torch.nn.utils._skew_matrix_exp import skew_matrix_exp
    torch.set_num_threads(1)
    for n in (64, 128, 256, 512):
        X = torch.randn(3, n, n) / n**0.5
        A = (X - X.mT).requires_grad_()
        G = torch.randn_like(A)
        for f in (torch.matrix_exp, skew_matrix_exp):
            t = Timer("torch.autograd.grad(f(A), A, G)", globals=globals())
            print(n, f.__name__, t.blocked_autorange(min_run_time=0.5).median)

      n   torch.matrix_exp   skew_matrix_exp   ratio (range)
     64            4.92 ms           2.55 ms   0.52 (0.49-0.62)
    128           23.2 ms            8.77 ms   0.39 (0.35-0.44)
    256          174 ms             51.8 ms    0.29 (0.27-0.31)
    512         1166 ms              325 ms    0.29 (0.25-0.32)

Of that, the forward (torch.matrix_exp itself) is 0.09 to 0.11 and the
double precision eigh 0.11 to 0.15 of torch.matrix_exp's forward + backward.
Measured on a shared 2-core AMD EPYC virtual machine, torch 2.13.0+cpu.
"""


PATCH = Patch(
    name="skew-matrix-exp",
    subject="Give the matrix_exp map of orthogonal() a cheaper backward",
    body="""\
The default map of orthogonal() is torch.matrix_exp of a skew-symmetric
matrix A. Its backward exponentiates the 2n x 2n block matrix
[[A^H, G], [0, A^H]], so a training step of an orthogonal weight costs about
eight times its forward.

A skew A is normal, so the adjoint of its Frechet derivative is diagonal in
an eigenbasis of A (Daleckii-Krein). Add torch/nn/utils/_skew_matrix_exp.py
with skew_matrix_exp(A), an autograd.Function whose forward is
torch.matrix_exp(A) itself and whose first-order backward takes an eigh:

* for float32 A, of the real symmetric A^T A in float64, where A^T A = -A^2
  gives exp(A) = C(A^2) + A Sn(A^2) with C = cos(sqrt(-t)) and
  Sn = sinc(sqrt(-t)) and their divided differences need no complex
  arithmetic and no case for repeated eigenvalues;
* for complex64 A, of the Hermitian -iA in complex128.

Both run in double precision because an eigh is backward stable for the
matrix it factors: A^T A has norm ||A||^2. float64 and complex128 keep
torch.matrix_exp's backward: with no wider type for the eigh, it is only
about as accurate as torch.matrix_exp's, and sometimes less (Note [Dtypes of
the eigh backward]).

The value is torch.matrix_exp's bit for bit in every mode (grad on or off,
frozen, traced, exported, compiled). A backward that is differentiated again (create_graph), forward
AD and torch.jit.trace use torch.matrix_exp's own formulas, so higher
derivatives are unchanged. Non-finite inputs give NaN as before. The eigh
backward runs on CPU only; other devices keep torch.matrix_exp's backward
until it has been measured there (Note [Devices for the eigh backward]).
""",
    edit=edit,
    refs=("See #42243",),
    test_plan=_TEST_PLAN,
    new_files=(SKEW_EXP,),
    tests=("test_orthogonal_matrix_exp_derivatives",),
)
