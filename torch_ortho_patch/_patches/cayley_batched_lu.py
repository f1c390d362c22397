# mypy: allow-untyped-defs
import ast

import torch
from torch import Tensor
from torch.torch_version import TorchVersion

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS
from ._source import source_of


# Note [CPU batched LU]
# ~~~~~~~~~~~~~~~~~~~~~
# On CPU with more than one thread, the batched LU factorization behind
# torch.linalg.solve can return wrong values, raise, or hang for a batch of
# two or more matrices of size 150 and larger
# (https://github.com/pytorch/pytorch/issues/142815). The cause is in ATen:
# apply_lu_factor computes a grain size for at::parallel_for that truncates to
# 0 for large matrices, so every thread calls getrf at once, and MKL's laswp is
# not safe to call that way. The fix belongs there, and is
# https://github.com/pytorch/pytorch/pull/181570. This Python workaround is
# therefore part of the runtime only, not of the upstream series.
#
# The boundary is sharp: in 20 tries out of 20 the batched solve hangs at
# n = 150 and is wrong at every n from 151 on, and it is right at every n up to
# 149, on 2.4.1, 2.13 and 2.15, in float32 and float64, with 2, 4 and 8
# threads (benchmarks/bench_cayley_solve.py's probe, on one x86 machine; MKL
# picks its kernels by CPU, so on another the boundary may move). The Cayley
# map solves exactly such batches once a weight holds several matrices. Solving
# one matrix at a time is correct at every size and thread count, and gives bit
# for bit what the batched kernel gives where that kernel is right, for the
# cost of a loop over the batch. We loop from _LU_UNSAFE_MIN_SIZE = 128 on,
# which leaves room below the boundary for other CPUs, because the loop costs
# little there (RFC.md, "The LU workaround"). Under torch.vmap the batch is not in A.shape and cannot be
# looped over, so there we solve the normal equations by Cholesky, which has no
# LU; they square the condition number of A, which is harmless here because
# every singular value of I - A/2 is at least 1. Under torch.compile the thread
# count is not a constant of the graph, so compiled code loops whenever the
# shape calls for it.
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


# Note [Which releases get the batched LU workaround]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The patch applies to the releases known to have the fault, by version, and
# not after a probe. A probe would have to run the faulty kernel: at some sizes
# it hangs rather than fails, which would hang install() or the import of
# torch_ortho_patch.parametrizations; a run that happens to be right proves
# nothing, since the fault depends on thread timing; MKL prints its errors to
# stderr; and the answer holds only for the thread count of the probe, which
# torch.set_num_threads changes later. Every supported release has the fault
# (checked on 2.4.1, 2.13 and 2.15 with the reproducer of the issue), and no
# release has the fix yet, so _LU_FIXED_IN is None: every release gets the
# workaround. Once the ATen fix ships, set it to the first release with it.
_LU_FIXED_IN: str | None = None


def has_lu_fault(version: str | None = None) -> bool:
    r"""Return whether torch ``version`` (default: the installed one) has the fault.

    See Note [Which releases get the batched LU workaround].
    """
    if _LU_FIXED_IN is None:
        return True
    return TorchVersion(torch.__version__ if version is None else version) < _LU_FIXED_IN


def _solves(node):
    return isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and (
        E.dotted(node.value.func) == "torch.linalg.solve"
    )


def edit(path, text):
    if path != PARAMETRIZATIONS or not has_lu_fault():
        return text
    tree = E.parse(text)
    # The maps are in _Orthogonal._map after the public-maps patch, and in
    # forward before it.
    where = "_Orthogonal._map"
    try:
        E.find_def(tree, where)
    except E.AnchorError:
        where = "_Orthogonal.forward"
    stmt = E.find_stmt(tree, where, _solves, "call of torch.linalg.solve")
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
    subject="(runtime only) Solve one matrix at a time where batched LU fails",
    body="""\
On CPU with two or more threads, torch.linalg.solve on a batch of matrices of
size 150 and larger can return wrong values, raise, or hang
(https://github.com/pytorch/pytorch/issues/142815). orthogonal(...,
orthogonal_map="cayley") on a batched weight then returns a non-orthogonal
matrix without a word.

The cause is the grain size of apply_lu_factor in ATen, and its fix is
https://github.com/pytorch/pytorch/pull/181570; a Python workaround does not
belong in the upstream change. The runtime solves one matrix at a time from
n = 128 on, on CPU, with more than one thread, on the releases that have the
fault (all of them, so far). See Note [CPU batched LU] and
Note [Which releases get the batched LU workaround].
""",
    edit=edit,
    upstream=False,
    fix=True,
)
