# Owner(s): ["module: nn"]
"""OpInfo-driven tests of the public maps: see ``_op_db.py``."""

import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.testing._internal.common_device_type import (
    instantiate_device_type_tests,
    OpDTypes,
    ops,
)
from torch.testing._internal.common_utils import run_tests, TestCase

from _block_checks import block_orthogonality_error, orthogonality_tol
from _op_db import op_db


def _call(op, sample, X=None):
    return op(sample.input if X is None else X, *sample.args, **sample.kwargs)


# gradcheck runs in fast mode (random projections of the Jacobian), as core
# does for its slower linalg ops; the full Jacobians of the complex samples take
# minutes on two cores.
class TestOrthogonalMaps(TestCase):
    @ops(op_db, dtypes=OpDTypes.supported)
    def test_orthogonality(self, device, dtype, op):
        for sample in op.sample_inputs(device, dtype):
            Q = _call(op, sample)
            self.assertEqual(Q.shape, sample.input.shape)
            self.assertEqual(Q.dtype, dtype)
            blocks = sample.kwargs.get("blocks")
            self.assertLessEqual(
                block_orthogonality_error(Q, blocks), orthogonality_tol(Q, blocks)
            )

    @ops(op_db, allowed_dtypes=(torch.float64, torch.complex128))
    def test_gradcheck(self, device, dtype, op):
        for sample in op.sample_inputs(device, dtype, requires_grad=True):
            self.assertTrue(
                gradcheck(lambda X: _call(op, sample, X), (sample.input,), fast_mode=True)
            )

    @ops(op_db, allowed_dtypes=(torch.float64, torch.complex128))
    def test_gradgradcheck(self, device, dtype, op):
        for sample in op.sample_inputs(device, dtype, requires_grad=True):
            if sample.input.numel() == 0:
                continue  # nothing to differentiate twice; covered by gradcheck
            self.assertTrue(
                gradgradcheck(
                    lambda X: _call(op, sample, X), (sample.input,), fast_mode=True
                )
            )

    @ops(op_db, allowed_dtypes=(torch.float64, torch.complex128))
    def test_forward_ad(self, device, dtype, op):
        for sample in op.sample_inputs(device, dtype, requires_grad=True):
            self.assertTrue(
                gradcheck(
                    lambda X: _call(op, sample, X),
                    (sample.input,),
                    check_forward_ad=True,
                    check_backward_ad=False,
                    check_undefined_grad=False,
                    check_batched_grad=False,
                    fast_mode=True,
                )
            )

    @ops(op_db, dtypes=OpDTypes.unsupported)
    def test_unsupported_dtypes(self, device, dtype, op):
        # Integer and bool inputs have no orthogonal image; complex inputs have
        # none for householder. Each raises instead of returning garbage.
        X = torch.ones(3, 3, device=device).to(dtype)
        with self.assertRaises((TypeError, ValueError)):
            op(X)

    @ops(op_db, allowed_dtypes=(torch.float32,))
    def test_half_precision(self, device, dtype, op):
        # float16 and bfloat16 are computed in float32 and cast back.
        for sample in op.sample_inputs(device, dtype):
            expected = _call(op, sample)
            for half in (torch.float16, torch.bfloat16):
                Q = _call(op, sample, sample.input.to(half))
                self.assertEqual(Q.dtype, half)
                # The only error is the rounding of input and output to half.
                self.assertEqual(
                    Q.float(), expected, atol=8 * torch.finfo(half).eps, rtol=0
                )

    @ops(op_db, allowed_dtypes=(torch.float64,))
    def test_batched_equals_loop(self, device, dtype, op):
        # Batching (and blocks) is a view over independent matrices.
        for sample in op.sample_inputs(device, dtype):
            X = sample.input
            if X.ndim < 3 or X.size(0) == 0:
                continue
            Q = _call(op, sample)
            for i in range(X.size(0)):
                self.assertEqual(Q[i], _call(op, sample, X[i]))


instantiate_device_type_tests(TestOrthogonalMaps, globals(), only_for=("cpu", "cuda"))


if __name__ == "__main__":
    run_tests()
