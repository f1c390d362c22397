# mypy: allow-untyped-defs
import copy
import weakref

from torch import Tensor

from .. import _edits as E
from .._stack import Patch, RNN
from ._source import source_of


def __deepcopy__(self, memo):
    # The flat weights of a parametrized weight are the output of its
    # parametrization, not leaves, and cannot be deep-copied: copy them
    # detached. They are not the copy's own weights, so the copy reads those
    # anew on its first forward.
    replica = self.__new__(type(self))
    memo[id(self)] = replica
    state = self.__dict__.copy()
    state["_flat_weights"] = [
        w.detach() if isinstance(w, Tensor) and not w.is_leaf else w
        for w in self._flat_weights
    ]
    del state["_flat_weight_refs"]
    replica.__dict__ = copy.deepcopy(state, memo)
    replica._flat_weight_refs = [
        weakref.ref(w) if w is not None else None for w in replica._flat_weights
    ]
    return replica


def edit(path, text):
    if path != RNN:
        return text
    text = E.insert_method(
        text, "RNNBase", source_of(__file__, "__deepcopy__"), after="__setstate__"
    )
    return E.ensure_import(text, "copy")


PATCH = Patch(
    name="rnn-deepcopy",
    subject="Allow deepcopy of an RNN with a parametrized weight after a forward",
    body="""\
After a forward with grad enabled, RNNBase._flat_weights holds the output of
each parametrized weight, a non-leaf tensor, and copy.deepcopy(rnn) fails with
"Only Tensors created explicitly by the user (graph leaves) support the
deepcopy protocol". Copying a model for an exponential moving average or to
keep the best checkpoint in memory is a common pattern, and it breaks as soon
as an RNN weight is parametrized (orthogonal, weight_norm, spectral_norm):
the deepcopy that parametrize provides copies the module's __dict__ as is.

Give RNNBase a __deepcopy__ that copies the non-leaf flat weights detached
and takes fresh weak references to the copied list. The copy's first forward
finds that its weights are not those tensors and reads them again, so it
computes with its own parametrizations. parametrize uses a class's own
__deepcopy__ when there is one, so this covers parametrized RNNs too.
""",
    edit=edit,
    tests=("test_rnn_deepcopy_after_forward",),
    fix=True,
)
