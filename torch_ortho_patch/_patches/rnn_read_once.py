# mypy: allow-untyped-defs
import ast

from .. import _edits as E
from .._stack import Patch, RNN


_READ = "[getattr(self, wn, None) for wn in self._flat_weights_names]"
# The weights as getattr() returns them: Parameters, or the Tensors that their
# parametrizations compute. A list of Any, as the list the methods built before
# was, so that the weak references to them keep their declared type.
_ARG = "flat_weights: list | None = None"


def _zip_call(node):
    return isinstance(node, ast.For) and E.calls("zip")(node.iter)


def edit(path, text):
    if path != RNN:
        return text
    # _init_flat_weights(flat_weights=None)
    header = f"def _init_flat_weights(self, {_ARG}) -> None:"
    if len(header) + 4 > E.LINE_LENGTH:  # as the formatter splits it
        header = f"""
        def _init_flat_weights(
            self, {_ARG}
        ) -> None:
        """
    text = E.replace_header(text, "RNNBase._init_flat_weights", header)
    text = E.replace_stmt(
        text,
        "RNNBase._init_flat_weights",
        E.assigns("self._flat_weights"),
        f"""
        if flat_weights is None:
            flat_weights = {_READ}
        self._flat_weights = flat_weights
        """,
        "assignment to self._flat_weights",
    )
    # _weights_have_changed(flat_weights=None)
    text = E.replace_header(
        text,
        "RNNBase._weights_have_changed",
        f"def _weights_have_changed(self, {_ARG}):",
    )
    loop = E.find_stmt(E.parse(text), "RNNBase._weights_have_changed", _zip_call, "loop over zip()")
    strict = any(k.arg == "strict" for k in loop.iter.keywords)  # type: ignore[attr-defined]
    text = E.replace_header(
        text,
        "RNNBase._weights_have_changed",
        "for ref, weight in zip(self._flat_weight_refs, flat_weights"
        + (", strict=True):" if strict else "):"),
        _zip_call,
        "loop over zip()",
    )
    text = E.replace_stmt(
        text,
        "RNNBase._weights_have_changed",
        E.assigns("weight"),
        "",
        "assignment to weight",
    )
    text = E.insert_stmts(
        text,
        "RNNBase._weights_have_changed",
        _zip_call,
        f"""
        if flat_weights is None:
            flat_weights = {_READ}
        """,
        "loop over zip()",
        after=False,
    )
    # _update_flat_weights reads each weight once and hands the list on.
    return E.replace_stmt(
        text,
        "RNNBase._update_flat_weights",
        lambda n: isinstance(n, ast.If) and E.calls("_weights_have_changed")(n.test),
        f"""
        # Note [RNN weights read once per forward]
        # A parametrized weight is computed anew on every attribute access, and
        # hasattr() is an access too. Read each weight once, and compare and
        # store the very tensors that were read.
        flat_weights = {_READ}
        if self._weights_have_changed(flat_weights):
            self._init_flat_weights(flat_weights)
        """,
        "the call of _weights_have_changed()",
    )


PATCH = Patch(
    name="rnn-read-once",
    subject="Read each RNN weight once per forward",
    body="""\
RNNBase.forward calls _update_flat_weights, which looks up every weight with
hasattr() and then getattr() in _weights_have_changed and, when a weight
changed, again in _init_flat_weights. For a plain Parameter that is four
dictionary look-ups. For a weight registered with
torch.nn.utils.parametrize it is four evaluations of the parametrization per
forward, three of them thrown away: an orthogonal weight_hh_l0 computes its
matrix exponential four times per step.

Read the weights once in _update_flat_weights, with getattr(self, name, None)
(which, like hasattr, treats only AttributeError as missing), and pass the list
to _weights_have_changed and _init_flat_weights. Both still read the weights
themselves when called without it (from __init__, _apply and __setstate__).
""",
    edit=edit,
    tests=("test_rnn_parametrized_weight_read_once",),
    fix=True,
)
