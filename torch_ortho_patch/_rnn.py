# mypy: allow-untyped-defs
r"""Make :class:`torch.nn.RNNBase` read each weight once per forward.

The two functions below are written as methods (their first argument is ``self``).
:func:`torch_ortho_patch.install` sets them on :class:`torch.nn.modules.rnn.RNNBase`
and :func:`torch_ortho_patch.uninstall` puts the originals back. The upstream diff
(``python -m torch_ortho_patch diff``) splices their source into
``torch/nn/modules/rnn.py``, so they only use names that module already imports.

See Note [RNN weights read once per forward].
"""

import weakref

import torch
from torch import Tensor


__all__: list[str] = []


def _init_flat_weights(
    self, flat_weights: list[Tensor | None] | None = None
) -> None:
    # See Note [RNN weights read once per forward]
    if flat_weights is None:
        flat_weights = [getattr(self, wn, None) for wn in self._flat_weights_names]
    self._flat_weights = list(flat_weights)
    self._flat_weight_refs = [
        weakref.ref(w) if w is not None else None for w in self._flat_weights
    ]
    self.flatten_parameters()


def _update_flat_weights(self) -> None:
    # Note [RNN weights read once per forward]
    # A weight registered with torch.nn.utils.parametrize is a property: each
    # attribute access runs the parametrization again. forward() used to look
    # every weight up with hasattr() and then getattr(), first in
    # _weights_have_changed() and again in _init_flat_weights(), so a
    # parametrized weight was computed four times per forward and three of the
    # results were thrown away. Here each weight is read exactly once, with
    # getattr(self, name, None), which, like hasattr(), treats only an
    # AttributeError as missing. That list is compared with the weak references
    # taken at the last update and, if anything changed, handed on to
    # _init_flat_weights(), so the kernels run on the very tensors that were
    # compared. _weights_have_changed() keeps its behaviour for other callers,
    # and _init_flat_weights() still works without arguments (__init__, _apply).
    if not torch.jit.is_scripting():
        flat_weights = [getattr(self, wn, None) for wn in self._flat_weights_names]
        for ref, weight in zip(self._flat_weight_refs, flat_weights, strict=True):
            if weight is not None and ref is not None and ref() is not weight:
                self._init_flat_weights(flat_weights)
                break
