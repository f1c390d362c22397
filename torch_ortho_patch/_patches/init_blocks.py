# mypy: allow-untyped-defs
import ast
import operator

from torch import Tensor

from .. import _edits as E
from .._stack import INIT, Patch
from ._source import source_of


# Note [Row blocks of orthogonal_]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# nn.GRU, nn.LSTM and their cells keep the matrices of their gates stacked by
# rows: weight_hh is (3 * H, H) for a GRU and (4 * H, H) for an LSTM. Filled as
# one tall matrix, such a weight gets orthonormal columns, and none of its
# gates is orthogonal. With blocks=k, dim 0 is split into k equal blocks, and
# each block is filled, one after the other, exactly as orthogonal_ fills a
# tensor of the block's shape: the result is that of k calls on the blocks
# with the same generator. A batched QR of the k blocks would be one call
# instead of k, but initialization is not on a hot path, and this way the
# values and the use of the random stream are those of the code for one
# matrix, which blocks=None and blocks=1 run unchanged.
def _check_blocks(tensor: Tensor, blocks: int | None) -> int:
    # Returns the number of row blocks, 1 without blocks.
    if blocks is None:
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
    rows = tensor.size(0)
    if blocks < 1 or rows % blocks != 0:
        raise ValueError(
            "Expected blocks to be a positive divisor of the number of rows "
            f"(dim 0) of the tensor, {rows}. Got blocks={blocks}."
        )
    return blocks


_ARG = "blocks: int | None = None"

_PARAGRAPH = """\
If ``blocks=k``, dimension 0 of the tensor holds `k` matrices of equal
size, stacked, and each of them is filled as above: (semi) orthogonal, then
scaled by ``gain``. For tensors with more than 2 dimensions, dimension 0 is
split into the `k` blocks and the trailing dimensions of each block are
flattened. This is how :class:`~torch.nn.GRU` and :class:`~torch.nn.GRUCell`
(``blocks=3``) and :class:`~torch.nn.LSTM` and :class:`~torch.nn.LSTMCell`
(``blocks=4``) store the matrices of their gates in ``weight_ih`` and
``weight_hh``: without ``blocks`` the stacked weight is one (semi) orthogonal
matrix, and none of its gates is orthogonal.
"""

_ARG_DOC = """\
blocks: the number of matrices stacked along dimension 0, each filled
    on its own: 3 for the gate weights of a GRU, 4 for those of an LSTM
    (default: None, the tensor is one matrix)
"""

_EXAMPLE = """\
>>> gru = nn.GRU(8, 8)
>>> nn.init.orthogonal_(gru.weight_hh_l0, blocks=3)
"""

_BLOCKS = """\
if blocks > 1:
    # See Note [Row blocks of orthogonal_]
    with torch.no_grad():
        for block in tensor.split(tensor.size(0) // blocks):
            orthogonal_(block, gain, generator)
    return tensor
"""


def _checks_ndim(node):
    return isinstance(node, ast.If) and "ndimension" in ast.unparse(node.test)


def _is_noop(node):
    return isinstance(node, ast.If) and "numel" in ast.unparse(node.test)


def edit(path, text):
    if path != INIT:
        return text
    text = E.add_kwonly_arg(text, "orthogonal_", _ARG)
    text = E.insert_stmts(
        text,
        "orthogonal_",
        _checks_ndim,
        "blocks = _check_blocks(tensor, blocks)",
        "the check of tensor.ndimension()",
        after=True,
    )
    text = E.insert_stmts(
        text, "orthogonal_", _is_noop, _BLOCKS, "the no-op return", after=True
    )
    # The docstring: a paragraph, an argument and an example.
    text = E.docstring_insert(
        text, "orthogonal_", _PARAGRAPH, before=lambda s: s == "Args:",
        what="an Args section",
    )
    text = E.docstring_insert(
        text, "orthogonal_", _ARG_DOC, before=lambda s: s.startswith("Example"),
        what="an Examples section", skip_blank_back=True, relative="    ",
    )
    text = E.docstring_insert(
        text, "orthogonal_", _EXAMPLE, before=lambda s: s in ('"""', "'''"),
        what="the end of the docstring", skip_blank_back=True, relative="    ",
    )
    text = E.insert_defs(text, source_of(__file__, "_check_blocks"), before="orthogonal_")
    return E.ensure_import(text, "operator")


PATCH = Patch(
    name="init-blocks",
    subject="Add blocks= to nn.init.orthogonal_ for stacked RNN gate weights",
    body="""\
nn.init.orthogonal_ fills a tensor as one matrix, its trailing dims
flattened. nn.GRU, nn.LSTM, nn.GRUCell and nn.LSTMCell stack the matrices of
their gates by rows: weight_hh is (3 * H, H) for a GRU and (4 * H, H) for an
LSTM. A common idiom for initialising a recurrent network orthogonally, in
reinforcement learning code in particular, is

    for name, param in lstm.named_parameters():
        if "bias" in name:
            nn.init.constant_(param, 0)
        elif "weight" in name:
            nn.init.orthogonal_(param, 1.0)

It gives each stack orthonormal columns and leaves no gate orthogonal. For
nn.GRU(64, 64) with torch.manual_seed(0) before it is built,
nn.init.orthogonal_(gru.weight_hh_l0) gives gate matrices whose singular
values run from 0.001-0.006 up to 0.93, and ||W_g^T W_g - I||_F is 5.7-5.8 for
each of the three gates. This is the fault of #102740 at initialisation. The
function gets a bare tensor, so it cannot tell a gate weight from any other
tall matrix, and it cannot warn.

Add a keyword-only blocks=k: dim 0 holds k matrices of equal size, and each
block is filled as orthogonal_ fills a tensor of its shape, one after the
other, from the same random stream, and scaled by gain. A tensor with more
than 2 dims is split along dim 0, and each block has its trailing dims
flattened, as the whole tensor had. blocks must be a positive divisor of
size(0), or None; other values raise the TypeError or ValueError that
orthogonal(..., blocks=) raises. Without blocks, and with blocks=1, the code
that runs is the code of today, so the values and what is drawn from the
random stream, with or without a generator, do not change.
""",
    edit=edit,
    refs=("See #102740",),
    tests=(
        "test_orthogonal_gate_blocks",
        "test_orthogonal_fills_each_block",
        "test_orthogonal_block_arguments",
    ),
)
