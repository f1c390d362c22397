# mypy: allow-untyped-defs
r"""The ``RNNBase`` methods that the stack amends, and where they are set.

:func:`torch_ortho_patch.install` sets them on :class:`torch.nn.RNNBase`. Without
it, :func:`amend_rnn_class` sets them on the class of its own that
:func:`~torch.nn.utils.parametrize.register_parametrization` gives a
parametrized RNN, so :func:`torch_ortho_patch.orthogonal` amends just the RNNs
it parametrizes; removing the parametrization restores the module's class and
with it torch's methods. See Note [RNN weights read once per forward] in the
amended ``torch/nn/modules/rnn.py`` (``python -m torch_ortho_patch diff``).
"""

import torch
from torch.nn.modules.rnn import RNNBase
from torch.nn.utils import parametrize

from . import _stack


__all__: list[str] = []


def methods() -> dict:
    r"""Return ``{name: function}`` for the ``RNNBase`` methods that the stack amends.

    Empty where this torch's ``RNNBase`` does not have the structure the patches
    expect (:func:`applies` says whether it does).
    """
    return _stack.rnn_methods() if applies() else {}


def applies() -> bool:
    r"""Return whether the ``RNNBase`` of this torch can be amended.

    It cannot where the methods that the patches edit are missing, or where
    ``_init_flat_weights`` already takes the list of weights (a torch that has
    the change).
    """
    import inspect

    try:
        amended = _stack.rnn_methods()
    except RuntimeError:  # the patches do not find what they amend
        return False
    needed = ("_init_flat_weights", "_update_flat_weights", "_weights_have_changed")
    if not all(name in vars(RNNBase) for name in needed):
        return False
    init = vars(RNNBase)["_init_flat_weights"]
    if init is amended.get("_init_flat_weights"):  # installed already
        return True
    return list(inspect.signature(init).parameters) == ["self"]


def amend_rnn_class(module: torch.nn.Module) -> None:
    r"""Set the amended ``RNNBase`` methods on the parametrized class of ``module``.

    Does nothing unless ``module`` is a parametrized RNN, or when ``RNNBase``
    itself is amended already (:func:`torch_ortho_patch.install`).
    """
    if not (isinstance(module, RNNBase) and parametrize.is_parametrized(module)):
        return
    amended = methods()
    cls = type(module)
    # The class that register_parametrization made for this module alone.
    if not cls.__name__.startswith("Parametrized") or cls.__bases__[0] is RNNBase:
        return
    for name, fn in amended.items():
        if vars(RNNBase).get(name) is not fn:
            setattr(cls, name, fn)
