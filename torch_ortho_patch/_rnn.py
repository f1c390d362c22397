# mypy: allow-untyped-defs
r"""The ``RNNBase`` methods that the stack amends, and where they are set.

:func:`torch_ortho_patch.install` sets them on :class:`torch.nn.RNNBase`.
:func:`amend_rnn_class` sets them on the class of its own that
:func:`~torch.nn.utils.parametrize.register_parametrization` gives a
parametrized RNN, so :func:`torch_ortho_patch.orthogonal` amends just the RNNs
it parametrizes (installed or not); removing the parametrization restores the
module's class and with it torch's methods. See Note [RNN weights read once per
forward] in the amended ``torch/nn/modules/rnn.py`` (``python -m
torch_ortho_patch diff``). The amended methods name this module as their
``__module__``, and its ``__loader__`` serves their source (see Note [Serving
the amended source] in :mod:`torch_ortho_patch._stack`).
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


# Note [Parametrized RNN classes keep the amended methods]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# register_parametrization gives a module a class of its own, and it gives that
# class a __deepcopy__ (a plain copy of __dict__) only if the module's class has
# none. While install() is in effect RNNBase has ours, so a class made then has
# no __deepcopy__ of its own; once uninstall() takes RNNBase's away, deepcopy
# falls back to pickling, which parametrize refuses ("Serialization of
# parametrized modules is only supported through state_dict()"), and the module
# reads its weights four times per forward again. So a parametrized RNN keeps
# the amended methods on its own class whatever happens to RNNBase:
# amend_rnn_class sets them there for the RNNs that
# torch_ortho_patch.orthogonal parametrizes, installed or not, and uninstall()
# sets them on every other parametrized class made while RNNBase was amended
# (those of weight_norm, spectral_norm or register_parametrization itself).
# What counts is when the module was parametrized: an RNN made while installed
# and parametrized after uninstall() is torch's. A method that the module's
# own class hierarchy overrides, between RNNBase and the parametrized class, is
# left alone.


def _made_by_parametrize(cls: type) -> bool:
    # The class that register_parametrization made for one module.
    getstate = vars(cls).get("__getstate__")
    return (
        len(cls.__bases__) == 1
        and cls.__name__ == f"Parametrized{cls.__bases__[0].__name__}"
        and getattr(getstate, "__module__", None) == parametrize.__name__
    )


def _set_amended(cls: type, amended: dict) -> None:
    for name, fn in amended.items():
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        # parametrize's own __deepcopy__ is in cls itself; anything in a class
        # between RNNBase and cls is the user's.
        if owner in (None, RNNBase, cls) and vars(cls).get(name) is not fn:
            setattr(cls, name, fn)


def amend_rnn_class(module: torch.nn.Module) -> None:
    r"""Set the amended ``RNNBase`` methods on the parametrized class of ``module``.

    Does nothing unless ``module`` is a parametrized RNN. The class keeps them
    after :func:`torch_ortho_patch.uninstall`. See Note [Parametrized RNN
    classes keep the amended methods].
    """
    if not (isinstance(module, RNNBase) and parametrize.is_parametrized(module)):
        return
    amended = methods()
    cls = type(module)
    if not _made_by_parametrize(cls) or cls.__bases__[0] is RNNBase:
        return
    _set_amended(cls, amended)


def keep_amended(amended: dict) -> None:
    r"""Set ``amended`` on each parametrized RNN class that was made while
    ``RNNBase`` had them, before :func:`torch_ortho_patch.uninstall` takes them away.

    See Note [Parametrized RNN classes keep the amended methods].
    """
    copy = amended.get("__deepcopy__")
    if copy is None or vars(RNNBase).get("__deepcopy__") is not copy:
        return
    stack = list(RNNBase.__subclasses__())
    while stack:
        cls = stack.pop()
        stack += cls.__subclasses__()
        if (
            _made_by_parametrize(cls)
            and "__deepcopy__" not in vars(cls)
            and getattr(cls, "__deepcopy__", None) is copy
        ):
            _set_amended(cls, amended)
