"""OpInfo entries for the public orthogonal maps.

Core keeps these in ``torch/testing/_internal/common_methods_invocations.py``;
until the maps land there, this local db plays that role, the way functorch kept
its own db for ops not yet in core.
"""

import functools

import torch
from torch.testing._internal.common_dtype import (
    floating_and_complex_types_and,
    floating_types_and,
)
from torch.testing._internal.opinfo.core import OpInfo, SampleInput

import torch_ortho_patch as tp


def _make_input(shape, device, dtype, requires_grad):
    # Diagonal entries kept away from 0: householder reads their sign, and a
    # finite-difference step across 0 would flip a column. See the householder-sign
    # patch (torch_ortho_patch/_patches/householder_sign.py).
    X = torch.randn(shape, device=device, dtype=dtype)
    d = X.diagonal(dim1=-2, dim2=-1)
    d.copy_(torch.where(d.real >= 0, 1.0, -1.0).to(dtype) * (d.abs() + 0.5))
    return X.requires_grad_(requires_grad)


# square, tall, wide, batched, batched non-square, empty batch, 1 x 1
_SHAPES = [(4, 4), (5, 3), (3, 5), (2, 4, 4), (2, 5, 3), (0, 3, 3), (1, 1)]


def sample_inputs_map(op_info, device, dtype, requires_grad, **kwargs):
    make = functools.partial(
        _make_input, device=device, dtype=dtype, requires_grad=requires_grad
    )
    for shape in _SHAPES:
        yield SampleInput(make(shape))


def sample_inputs_orthogonal_map(op_info, device, dtype, requires_grad, **kwargs):
    make = functools.partial(
        _make_input, device=device, dtype=dtype, requires_grad=requires_grad
    )
    methods = ["matrix_exp", "cayley"]
    if not dtype.is_complex:
        methods.append("householder")
    for method in methods:
        yield SampleInput(make((4, 4)), args=(method,))
        # GRU-like: three square gates stacked by rows
        yield SampleInput(make((6, 2)), args=(method,), kwargs={"blocks": 3})
        # LSTM with projections: four tall gates
        yield SampleInput(make((2, 12, 2)), args=(method,), kwargs={"blocks": 4})
        # wide blocks
        yield SampleInput(make((4, 5)), args=(method,), kwargs={"blocks": 2})
        yield SampleInput(make((0, 6, 3)), args=(method,), kwargs={"blocks": 2})


def _map_opinfo(name, op, dtypes):
    return OpInfo(
        name,
        op=op,
        dtypes=dtypes,
        sample_inputs_func=sample_inputs_map,
        supports_out=False,
        supports_autograd=True,
        supports_forward_ad=True,
        supports_fwgrad_bwgrad=True,
    )


op_db = [
    _map_opinfo("matrix_exp_map", tp.matrix_exp_map, floating_and_complex_types_and(torch.float16, torch.bfloat16)),
    _map_opinfo("cayley_map", tp.cayley_map, floating_and_complex_types_and(torch.float16, torch.bfloat16)),
    _map_opinfo(
        "householder_map",
        tp.householder_map,
        # Real only: the householder map does not support complex tensors. A
        # helper, not a plain tuple: older OpInfo accepts only the
        # _dispatch_dtypes that the helpers return.
        floating_types_and(torch.float16, torch.bfloat16),
    ),
    OpInfo(
        "orthogonal_map",
        op=tp.orthogonal_map,
        dtypes=floating_and_complex_types_and(torch.float16, torch.bfloat16),
        sample_inputs_func=sample_inputs_orthogonal_map,
        supports_out=False,
        supports_autograd=True,
        supports_forward_ad=True,
        supports_fwgrad_bwgrad=True,
    ),
]
