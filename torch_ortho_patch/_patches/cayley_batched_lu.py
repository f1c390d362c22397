# mypy: allow-untyped-defs
import ast

import torch
from torch import Tensor

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS
from ._source import source_of


# Note [CPU batched LU]
# ~~~~~~~~~~~~~~~~~~~~~
# On CPU with more than one thread, the batched LU factorization behind
# torch.linalg.solve can return wrong values, raise, or hang for a batch of
# two or more matrices of size about 150 and larger (pytorch#142815). It was
# seen wrong at n = 151, 152 and from 159 on, hanging at n = 150, and never
# wrong at n <= 144. The Cayley map solves exactly such batches once a weight
# holds several matrices. Solving one matrix at a time is correct at every
# size and thread count, and gives bit for bit what the batched kernel gives
# where that kernel is right, for the cost of a loop over the batch; we loop
# from _LU_UNSAFE_MIN_SIZE on, which leaves room below the smallest failing
# size. Under torch.vmap the batch is not in A.shape and cannot be looped
# over, so there we solve the normal equations by Cholesky, which has no LU;
# they square the condition number of A, which is harmless here because every
# singular value of I - A/2 is at least 1. Under torch.compile the thread count
# is not a constant of the graph, so compiled code loops whenever the shape
# calls for it.
_LU_UNSAFE_MIN_SIZE = 128


def _solve(A: Tensor, B: Tensor) -> Tensor:
    # torch.linalg.solve(A, B) for square A. See Note [CPU batched LU].
    n = A.size(-1)
    if n < _LU_UNSAFE_MIN_SIZE or A.device.type != "cpu":
        return torch.linalg.solve(A, B)
    if torch.compiler.is_compiling():
        vmapped, threaded = False, True
    else:
        vmapped = torch._C._functorch.is_batchedtensor(A)
        threaded = torch.get_num_threads() > 1
    if not threaded or not (vmapped or A.shape[:-2].numel() > 1):
        return torch.linalg.solve(A, B)
    if vmapped:
        return torch.cholesky_solve(A.mH @ B, torch.linalg.cholesky(A.mH @ A))
    As = A.reshape(-1, n, n).unbind(0)
    Bs = B.reshape(-1, n, B.size(-1)).unbind(0)
    X = torch.stack([torch.linalg.solve(a, b) for a, b in zip(As, Bs, strict=True)])
    return X.reshape(B.shape)


def _solves(node):
    return isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and (
        E.dotted(node.value.func) == "torch.linalg.solve"
    )


def edit(path, text):
    if path != PARAMETRIZATIONS:
        return text
    where = "_Orthogonal.forward"
    stmt = E.find_stmt(E.parse(text), where, _solves, "call of torch.linalg.solve")
    target = E.segment(text, stmt.targets[0])  # type: ignore[attr-defined]
    args = ", ".join(E.segment(text, a) for a in stmt.value.args)  # type: ignore[attr-defined, misc]
    indent = stmt.col_offset
    one_line = f"{target} = _solve({args})"
    if indent + len(one_line) > E.LINE_LENGTH:
        one_line = f"{target} = _solve(\n    {args}\n)"
    text = E.replace_stmt(text, where, _solves, one_line, "call of torch.linalg.solve")
    return E.insert_defs(
        text, source_of(__file__, "_LU_UNSAFE_MIN_SIZE", "_solve"), after="_make_orthogonal"
    )


PATCH = Patch(
    name="cayley-batched-lu",
    subject="Solve one matrix at a time in the Cayley map where batched LU fails",
    body="""\
On CPU with two or more threads, torch.linalg.solve on a batch of matrices of
size about 150 and larger can return wrong values, raise, or hang
(pytorch#142815). orthogonal(..., orthogonal_map="cayley") on a batched weight
then returns a non-orthogonal matrix without a word.

Add _solve, which loops over the batch from n = 128 on, on CPU, with more
than one thread, and calls torch.linalg.solve otherwise. Where the batched
kernel is right the loop gives bit for bit the same values. Under torch.vmap,
where the batch cannot be looped over, it solves the normal equations by
Cholesky instead. The reasons and the sizes that were seen failing are in
Note [CPU batched LU].
""",
    edit=edit,
    tests=("test_orthogonal_cayley_batched_large",),
)
