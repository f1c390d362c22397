r"""The patches of the stack, one module each, in the order they apply.

Each module defines ``PATCH``, a :class:`torch_ortho_patch._stack.Patch`. A patch
that adds definitions writes them in its own module, as ordinary code: its
``edit`` copies their source (found with :mod:`ast`) into PyTorch's file. Those
definitions are never called from the patch module itself; they run where the
stack puts them. See Note [Amend, don't replace].
"""

STACK = (
    "householder_sign",
    "make_orthogonal_rank",
    "rnn_read_once",
    "rnn_deepcopy",
    "orthogonal_arguments",
    "blocks",
    "public_maps",
    "half_precision",
    "skew_matrix_exp",
    "init_blocks",
    "cayley_batched_lu",
    "runtime_rnn_subclass",
)
