# mypy: allow-untyped-defs
import ast

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS


def edit(path, text):
    if path != PARAMETRIZATIONS:
        return text
    text = E.insert_stmts(
        text,
        "orthogonal",
        lambda n: isinstance(n, ast.Expr) and E.calls("register_parametrization")(n),
        "_amend_rnn_class(module)",
        "the call of register_parametrization",
        after=True,
    )
    return E.add_import_last(
        text, "from torch_ortho_patch._rnn import amend_rnn_class as _amend_rnn_class"
    )


PATCH = Patch(
    name="runtime-rnn-subclass",
    subject="(runtime only) Amend the parametrized RNN's own class",
    body="""\
Without install(), RNNBase is the installed torch's, and an RNN whose weight
tp.orthogonal() parametrizes would evaluate it four times per forward and fail
deepcopy. register_parametrization gives the module a class of its own; set the
amended RNNBase methods of the stack on that class. Removing the
parametrization restores the module's class, and with it torch's methods. Not
part of the upstream change, where RNNBase itself is amended.
""",
    edit=edit,
    upstream=False,
)
