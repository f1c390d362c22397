# mypy: allow-untyped-defs
import ast

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS


def _looks_up_map(node):
    return isinstance(node, ast.Assign) and E.assigns("orth_enum")(node)


def _checks_ndim(node):
    return isinstance(node, ast.If) and "ndim" in ast.unparse(node.test)


def _tests_base(node):
    return isinstance(node, ast.If) and "base" in ast.unparse(node.test)


def edit(path, text):
    if path != PARAMETRIZATIONS:
        return text
    # A name that is not a member of _OrthMaps is unknown, "__class__" included.
    text = E.replace_expr(
        text,
        "orthogonal",
        lambda n: isinstance(n, ast.Compare)
        and ast.unparse(n) == "orth_enum is None",
        "not isinstance(orth_enum, _OrthMaps)",
        "the test of orth_enum",
    )
    text = E.insert_stmts(
        text,
        "orthogonal",
        _looks_up_map,
        """
        if not isinstance(orthogonal_map, str):
            raise TypeError(
                "Expected orthogonal_map to be a str or None. "
                f"Got {type(orthogonal_map).__name__}."
            )
        """,
        "the look-up of orthogonal_map",
        after=False,
    )
    text = E.insert_stmts(
        text,
        "orthogonal",
        _checks_ndim,
        """
        if not (weight.is_floating_point() or weight.is_complex()):
            raise TypeError(
                "Expected a floating point or complex tensor. "
                f"Got a tensor of dtype {weight.dtype}."
            )
        """,
        "the check of weight.ndim",
        after=True,
    )
    # register_parametrization does not call right_inverse for a tensor that is
    # parametrized already, so the base may never be set.
    return E.replace_header(
        text,
        "_Orthogonal.forward",
        'if getattr(self, "base", None) is not None:',
        _tests_base,
        "the test for a base",
    )


PATCH = Patch(
    name="orthogonal-arguments",
    subject="Reject bad arguments of orthogonal() at the call",
    body="""\
Three inputs of orthogonal() fail late or in an unrelated way:

* orthogonal_map is looked up with getattr() on the enum, so a name that is
  some other attribute of the Enum class, such as "__class__", "mro" or
  "__len__", is accepted: the parametrization registers, is neither
  matrix_exp nor cayley, and silently runs the householder map. A non-string
  gives "attribute name must be string, not 'int'". Accept only members of
  _OrthMaps, and raise a TypeError for a non-string.
* An integer weight gets "torch.finfo() requires a floating point input
  type" from inside right_inverse. Raise a TypeError that names the dtype.
* On a tensor that is parametrized already (orthogonal() applied twice, or
  after another parametrization), register_parametrization does not call
  right_inverse, the base stays None and every read fails with
  "unsupported operand type(s) for @: 'NoneType' and 'Tensor'". Treat a base
  that was never set as the identity, which is what the docstring promises:
  the initial value is then the composition of the registered
  parametrizations.
""",
    edit=edit,
    tests=("test_orthogonal_argument_types", "test_orthogonal_on_parametrized_tensor"),
    fix=True,
)
