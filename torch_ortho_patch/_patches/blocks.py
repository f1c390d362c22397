# mypy: allow-untyped-defs
import ast
import operator
import warnings

import torch
from torch import Tensor
from torch.nn.modules import Module

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS
from ._source import source_of


# Note [Row blocks]
# ~~~~~~~~~~~~~~~~~
# nn.GRU and nn.LSTM keep the matrices of their gates stacked by rows:
# weight_hh_l0 is [W_hr; W_hz; W_hn] of shape (3 * H, H) for a GRU and
# [W_hi; W_hf; W_hg; W_ho] of shape (4 * H, H) for an LSTM (weight_ih_l* and
# proj_size give non-square gates of the same layout). nn.GRUCell and
# nn.LSTMCell stack theirs the same way in weight_ih and weight_hh. As one tall matrix such
# a weight gets orthonormal columns, and none of its gates is orthogonal.
# blocks=k reads a (..., k * n, m) tensor as k matrices of shape (n, m). The
# rows of one block are contiguous, so the split is a view, (..., k, n, m), and
# the k blocks are k more batch elements of the same batched computation; the
# base of the trivialization gets shape (..., k, N, N), N = max(n, m). Without
# blocks, one block is the tensor itself and nothing changes.
def _split_blocks(X: Tensor, blocks: int) -> Tensor:
    # (..., blocks * n, m) -> (..., blocks, n, m). See Note [Row blocks].
    return X if blocks == 1 else X.unflatten(-2, (blocks, -1))


def _merge_blocks(Q: Tensor, blocks: int) -> Tensor:
    # The inverse of _split_blocks.
    return Q if blocks == 1 else Q.flatten(-3, -2)


def _rnn_gates(module: Module | None, name: str) -> int:
    # The number of gate matrices that an RNN module stacks in its weight `name`.
    if isinstance(module, torch.nn.RNNBase) and name.startswith(
        ("weight_ih_l", "weight_hh_l")
    ):
        return {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    if isinstance(module, torch.nn.RNNCellBase) and name in ("weight_ih", "weight_hh"):
        if isinstance(module, torch.nn.LSTMCell):
            return 4
        if isinstance(module, torch.nn.GRUCell):
            return 3
    return 1


def _check_blocks(module: Module | None, name: str, weight: Tensor, blocks) -> int:
    # Returns the number of row blocks, 1 without blocks. See Note [Row blocks].
    gates = _rnn_gates(module, name)
    if blocks is None:
        if gates > 1:
            n, m = weight.size(-2) // gates, weight.size(-1)
            if n == m:
                each = "be orthogonal"
            else:
                each = f"have orthonormal {'columns' if n > m else 'rows'}"
            warnings.warn(
                f"orthogonal: {name!r} of {type(module).__name__} stacks {gates} "
                f"gate matrices of shape {(n, m)} along dim 0. Without blocks it "
                f"is constrained as one {tuple(weight.shape)} matrix, and its gate "
                f"matrices are not orthogonal. Pass blocks={gates} for each gate matrix "
                f"to {each}, or blocks=1 to keep the constraint on the whole "
                "matrix without this warning.",
                UserWarning,
                stacklevel=3,
            )
        return 1
    try:
        if isinstance(blocks, bool):
            raise TypeError
        blocks = operator.index(blocks)
    except TypeError:
        raise TypeError(
            "Expected blocks to be an int or None. "
            f"Got {blocks!r} of type {type(blocks).__name__}."
        ) from None
    rows = weight.size(-2)
    if blocks < 1 or rows % blocks != 0:
        raise ValueError(
            "Expected blocks to be a positive divisor of the number of rows "
            f"(dim -2) of {name!r}, {rows}. Got blocks={blocks}."
        )
    if gates > 1 and blocks not in (1, gates):
        raise ValueError(
            f"Expected blocks={gates} (or blocks=1) for {name!r} of "
            f"{type(module).__name__}, which stacks {gates} gate matrices. "
            f"Got blocks={blocks}."
        )
    return blocks


def extra_repr(self) -> str:
    return f"blocks={self.blocks}" if self.blocks > 1 else ""


_ARG = "blocks: int | None = None"

_PARAGRAPH = """\
If ``blocks=k``, a tensor of shape `(..., k m, n)` is read as `k` matrices of
shape `(m, n)` stacked along dimension `-2`, and each of them is made
orthogonal as above (its default ``orthogonal_map`` is chosen from the shape of
one block). This is how :class:`~torch.nn.GRU` (``blocks=3``) and
:class:`~torch.nn.LSTM` (``blocks=4``) store the matrices of their gates in
``weight_ih_l[k]`` and ``weight_hh_l[k]``, and :class:`~torch.nn.GRUCell` and
:class:`~torch.nn.LSTMCell` in ``weight_ih`` and ``weight_hh``: without
``blocks`` the stacked matrix gets orthonormal columns, and none of its gates
is orthogonal.
"""

_ARG_DOC = """\
blocks (int, optional): number of matrices stacked along dimension `-2`,
    each of which is made orthogonal. ``3`` for the gate weights of
    :class:`~torch.nn.GRU` and :class:`~torch.nn.GRUCell`, ``4`` for
    :class:`~torch.nn.LSTM` and :class:`~torch.nn.LSTMCell`.
    Default: ``None``, the tensor is one matrix (or a batch of them).
"""

_WARNING = """\
.. warning::
    For a gate weight of :class:`~torch.nn.GRU`, :class:`~torch.nn.LSTM`,
    :class:`~torch.nn.GRUCell` or :class:`~torch.nn.LSTMCell` that is given no
    ``blocks``, this function warns with a :class:`UserWarning`: the weight
    stacks the matrices of several gates, and none of them becomes orthogonal.
    Pass ``blocks`` with the number of gates to constrain each gate, or
    ``blocks=1`` to constrain the stacked matrix as a whole.
"""


_EXAMPLE = """\
>>> gru = orthogonal(nn.GRU(8, 8), "weight_hh_l0", blocks=3)
>>> W_hr, W_hz, W_hn = gru.weight_hh_l0.detach().split(8)
>>> torch.allclose(W_hn.T @ W_hn, torch.eye(8), atol=1e-5)
True
"""


def edit(path, text):
    if path != PARAMETRIZATIONS:
        return text
    # _Orthogonal keeps the number of blocks and works block by block.
    text = E.add_kwonly_arg(text, "_Orthogonal.__init__", _ARG)
    text = E.insert_stmts(
        text,
        "_Orthogonal.__init__",
        E.assigns("self.orthogonal_map"),
        "self.blocks = 1 if blocks is None else blocks",
        "assignment to self.orthogonal_map",
        after=True,
    )
    text = E.insert_method(text, "_Orthogonal", source_of(__file__, "extra_repr"), after="__init__")
    forward = E.find_def(E.parse(text), "_Orthogonal.forward")
    first = forward.body[0]  # type: ignore[attr-defined]
    text = E.insert_stmts(
        text,
        "_Orthogonal.forward",
        lambda n: n.lineno == first.lineno,
        "X = _split_blocks(X, self.blocks)",
        "first statement",
        after=False,
    )
    text = E.replace_expr(
        text,
        "_Orthogonal.forward",
        _return_value("_Orthogonal.forward", text),
        "_merge_blocks(Q, self.blocks)",
        "returned value",
    )
    text = E.insert_stmts(
        text,
        "_Orthogonal.right_inverse",
        E.assigns("Q_init"),
        "Q = _split_blocks(Q, self.blocks)",
        "assignment to Q_init",
        after=False,
    )
    returns = [
        n
        for n in ast.walk(E.find_def(E.parse(text), "_Orthogonal.right_inverse"))
        if isinstance(n, ast.Return) and n.value is not None
    ]
    for ret in sorted(returns, key=lambda n: n.lineno, reverse=True):
        value = E.segment(text, ret.value)
        text = E.replace_expr(
            text,
            "_Orthogonal.right_inverse",
            lambda n, ret=ret: isinstance(n, ast.expr)
            and (n.lineno, n.col_offset) == (ret.value.lineno, ret.value.col_offset)
            and type(n) is type(ret.value),
            f"_merge_blocks({value}, self.blocks)",
            "returned value",
        )
    # orthogonal(..., blocks=None)
    text = E.add_kwonly_arg(text, "orthogonal", _ARG)
    text = E.insert_stmts(
        text,
        "orthogonal",
        lambda n: isinstance(n, ast.If) and "is_floating_point" in ast.unparse(n.test),
        "blocks = _check_blocks(module, name, weight, blocks)",
        "the check of the dtype of weight",
        after=True,
    )
    # The default map is chosen from the shape of one block.
    text = E.replace_expr(
        text,
        "orthogonal",
        lambda n: isinstance(n, ast.Call) and ast.unparse(n) == "weight.size(-2)",
        "weight.size(-2) // blocks",
        "weight.size(-2)",
    )
    text = E.replace_stmt(
        text,
        "orthogonal",
        lambda n: isinstance(n, ast.Assign) and E.calls("_Orthogonal")(n),
        """
        orth = _Orthogonal(
            weight, orth_enum, use_trivialization=use_trivialization, blocks=blocks
        )
        """,
        "construction of _Orthogonal",
    )
    # The docstring: a paragraph and a warning, an argument and an example.
    text = E.docstring_insert(
        text, "orthogonal", _PARAGRAPH, before=lambda s: s.startswith(".. note::"),
        what="a note",
    )
    text = E.docstring_insert(
        text, "orthogonal", _WARNING, before=lambda s: s.startswith(".. note::"),
        what="a note",
    )
    text = E.docstring_insert(
        text, "orthogonal", _ARG_DOC, before=lambda s: s == "Returns:",
        what="a Returns section", skip_blank_back=True, relative="    ",
    )
    text = E.docstring_insert(
        text, "orthogonal", _EXAMPLE, before=lambda s: s in ('"""', "'''"),
        what="the end of the docstring", skip_blank_back=True, relative="    ",
    )
    text = E.insert_defs(
        text,
        source_of(__file__, "_split_blocks", "_merge_blocks", "_rnn_gates", "_check_blocks"),
        after="_OrthMaps",
    )
    return E.ensure_import(E.ensure_import(text, "operator"), "warnings")


def _return_value(path, text):
    node = E.find_def(E.parse(text), path)
    ret = [n for n in node.body if isinstance(n, ast.Return)][-1]  # type: ignore[attr-defined]
    key = (ret.value.lineno, ret.value.col_offset)  # type: ignore[union-attr]
    return lambda n: isinstance(n, ast.Name) and (n.lineno, n.col_offset) == key


PATCH = Patch(
    name="blocks",
    subject="Add blocks= to orthogonal() for stacked matrices such as RNN gates",
    body="""\
nn.GRU and nn.LSTM store the matrices of their gates stacked by rows:
weight_hh_l0 is (3 * H, H) for a GRU and (4 * H, H) for an LSTM. orthogonal()
sees one tall matrix, gives it orthonormal columns, and no gate matrix is
orthogonal, which is not what anyone asking for an orthogonal recurrent weight
wants (see the discussion in #102740). Nothing says so.

Add a keyword-only blocks=k: a (..., k * n, m) tensor is k matrices of shape
(n, m) stacked along dim -2, each constrained on its own. The split is a view
(..., k, n, m), so the blocks are extra batch elements of the same batched
computation, the base of the trivialization gets shape (..., k, N, N) and the
state dict keeps its keys. The default map is chosen from the shape of one
block. For a gate weight of GRU, LSTM, GRUCell or LSTMCell, blocks must
match the number of gates (or be 1), and leaving it out warns, naming the
argument that fixes it; other tensors do not warn, since orthonormal columns
are what orthogonal() documents for them. blocks=None and blocks=1 give the
same values as before. The docstring documents the warning as a
.. warning::.
""",
    edit=edit,
    tests=(
        "test_orthogonal_blocks",
        "test_orthogonal_blocks_errors",
        "test_orthogonal_rnn_gates_warn",
    ),
    refs=("Fixes #102740",),
)
