# mypy: allow-untyped-defs
r"""The installed torch's ``torch.nn.init``, amended by the stack.

This module holds no code of its own. On import it applies the patches of
:mod:`torch_ortho_patch._patches` to the installed torch's ``torch/nn/init.py``
and compiles, here, the top-level definitions that they change or add:
:func:`orthogonal_` (with ``blocks``), its helper, and the deprecated alias
``orthogonal`` that wraps it. Every other name (``xavier_uniform_``,
``kaiming_normal_``, ...) is the installed torch's own object. Importing it
changes nothing in torch; :func:`torch_ortho_patch.install` puts
:func:`orthogonal_` into :mod:`torch.nn.init`. See Note [Amend, don't replace]
in :mod:`torch_ortho_patch._stack`.
"""

from . import _stack


_stack.runtime_namespace(_stack.INIT, __name__, namespace=globals())
