"""Block-orthogonal parametrizations for PyTorch, shipped as a patch to ``torch.nn.utils``.

Importing this package changes nothing in torch. Call :func:`install` (or use
``python -m torch_ortho_patch run``) to put :func:`orthogonal` and the public maps
into ``torch.nn.utils.parametrizations``, and ``init.orthogonal_`` (which takes
``blocks``) into ``torch.nn.init``.
"""

from .parametrizations import (
    cayley_map,
    householder_map,
    matrix_exp_map,
    orthogonal,
    orthogonal_map,
)
from ._install import install, installed, is_installed, uninstall
from . import init  # noqa: F401  (torch_ortho_patch.init.orthogonal_)

__version__ = "0.1.0"

__all__ = [
    "orthogonal",
    "orthogonal_map",
    "matrix_exp_map",
    "cayley_map",
    "householder_map",
    "install",
    "uninstall",
    "installed",
    "is_installed",
    "__version__",
]
