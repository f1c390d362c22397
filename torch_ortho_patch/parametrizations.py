# mypy: allow-untyped-defs
r"""The installed torch's ``torch.nn.utils.parametrizations``, amended by the stack.

This module holds no code of its own. On import it applies the patches of
:mod:`torch_ortho_patch._patches` to the installed torch's
``torch/nn/utils/parametrizations.py`` and compiles, here, the top-level
definitions that they change or add: :func:`orthogonal` (with ``blocks``), the
public maps :func:`orthogonal_map`, :func:`matrix_exp_map`, :func:`cayley_map`
and :func:`householder_map`, and the private helpers they use. Every other
name (``spectral_norm``, ``weight_norm``, ``_OrthMaps``, ...) is the installed
torch's own object. Importing it changes nothing in torch. See
Note [Amend, don't replace] in :mod:`torch_ortho_patch._stack`.
"""

from . import _stack


_stack.runtime_namespace(_stack.PARAMETRIZATIONS, __name__, namespace=globals())
