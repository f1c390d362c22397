# mypy: allow-untyped-defs
import ast

from torch import Tensor
from torch.nn.utils.parametrizations import _OrthMaps, _Orthogonal

from .. import _edits as E
from .._stack import Patch, PARAMETRIZATIONS
from ._source import source_of
from .blocks import _check_blocks, _merge_blocks, _split_blocks


DOCS = ("docs/source/nn.md", "docs/source/nn.rst")
NAMES = ("orthogonal_map", "matrix_exp_map", "cayley_map", "householder_map")


def _check_map_input(X, fn_name):
    if not isinstance(X, Tensor):
        raise TypeError(
            f"{fn_name}: Expected X to be a Tensor. Got {type(X).__name__}."
        )
    if X.ndim < 2:
        raise ValueError(
            f"{fn_name}: Expected a matrix or batch of matrices. "
            f"Got a tensor of {X.ndim} dimensions."
        )
    if not (X.is_floating_point() or X.is_complex()):
        raise TypeError(
            f"{fn_name}: Expected a floating point or complex tensor. Got {X.dtype}."
        )


def _apply_map(X: Tensor, orthogonal_map: _OrthMaps) -> Tensor:
    # The map of _Orthogonal without the base, for X of shape (..., n, k) with
    # any n and k.
    if X.is_complex() and orthogonal_map == _OrthMaps.householder:
        raise ValueError(
            "The householder parametrization does not support complex tensors."
        )
    transposed = X.size(-2) < X.size(-1)
    Q = _Orthogonal._map(X.mT if transposed else X, orthogonal_map)
    return Q.mT if transposed else Q


def matrix_exp_map(X: Tensor) -> Tensor:
    r"""Map a tensor to an orthogonal or unitary one with the matrix exponential.

    For a tall :math:`X \in \mathbb{K}^{n \times k}` (:math:`n \geq k`), the
    entries on and below the diagonal of :math:`X`, padded with zeros to an
    :math:`n \times n` matrix :math:`L`, give the skew-symmetric (skew-Hermitian)
    :math:`A = L - L^{\text{H}}`, and :math:`Q` is made of the first :math:`k`
    columns of

    .. math::

        \exp(A) \in \mathbb{K}^{n \times n}.

    A wide :math:`X` is mapped through its transpose, so that :math:`Q` has
    orthonormal rows. This is the map of :func:`orthogonal` with
    ``orthogonal_map="matrix_exp"``, without its trivialization base.

    Args:
        X (Tensor): tensor of shape `(*, n, k)`, floating point or complex.

    Returns:
        A tensor of the shape and dtype of :attr:`X` with orthonormal columns if
        :math:`n \geq k` and orthonormal rows otherwise. It is differentiable,
        and batched over the leading dimensions.

    Example::

        >>> X = torch.randn(3, 5, 5)
        >>> Q = matrix_exp_map(X)
        >>> torch.allclose(Q.mT @ Q, torch.eye(5).expand(3, 5, 5), atol=1e-5)
        True
        >>> matrix_exp_map(torch.zeros(3, 2))
        tensor([[1., 0.],
                [0., 1.],
                [0., 0.]])
    """
    _check_map_input(X, "matrix_exp_map")
    return _apply_map(X, _OrthMaps.matrix_exp)


def cayley_map(X: Tensor) -> Tensor:
    r"""Map a tensor to an orthogonal or unitary one with the Cayley map.

    With the skew-symmetric (skew-Hermitian) :math:`A` built from :math:`X` as in
    :func:`matrix_exp_map`, :math:`Q` is made of the first :math:`k` columns of

    .. math::

        \left(\mathrm{I}_n + \tfrac{1}{2}A\right)
        \left(\mathrm{I}_n - \tfrac{1}{2}A\right)^{-1}.

    This is the map of :func:`orthogonal` with ``orthogonal_map="cayley"``,
    without its trivialization base.

    Args:
        X (Tensor): tensor of shape `(*, n, k)`, floating point or complex.

    Returns:
        A tensor of the shape and dtype of :attr:`X` with orthonormal columns if
        :math:`n \geq k` and orthonormal rows otherwise.

    Example::

        >>> X = torch.randn(2, 3, 6, dtype=torch.complex128)
        >>> Q = cayley_map(X)
        >>> torch.allclose(Q @ Q.mH, torch.eye(3, dtype=Q.dtype).expand(2, 3, 3))
        True
    """
    _check_map_input(X, "cayley_map")
    return _apply_map(X, _OrthMaps.cayley)


def householder_map(X: Tensor) -> Tensor:
    r"""Map a real tensor to an orthogonal one as a product of Householder reflectors.

    For a tall :math:`X \in \mathbb{R}^{n \times k}`, the part of column
    :math:`j` below the diagonal gives the reflector
    :math:`H_j = \mathrm{I}_n - \tau_j v_j v_j^{\top}`, with
    :math:`v_j = e_j + X_{j+1:n,\,j}` and :math:`\tau_j = 2 / \lVert v_j \rVert^2`
    (see :func:`torch.linalg.householder_product`), and

    .. math::

        Q = H_1 H_2 \cdots H_k \,\mathrm{I}_{n \times k}\, \operatorname{diag}(s),
        \qquad s_j = \begin{cases} -1 & X_{jj} < 0 \\ +1 & X_{jj} \geq 0. \end{cases}

    The diagonal of :math:`X` only chooses the sign of each column and gets no
    gradient. This is the map of :func:`orthogonal` with
    ``orthogonal_map="householder"``, without its trivialization base.

    Args:
        X (Tensor): real tensor of shape `(*, n, k)`.

    Returns:
        A tensor of the shape and dtype of :attr:`X` with orthonormal columns if
        :math:`n \geq k` and orthonormal rows otherwise.

    Example::

        >>> Q = householder_map(torch.randn(6, 3))
        >>> torch.allclose(Q.mT @ Q, torch.eye(3), atol=1e-6)
        True
    """
    _check_map_input(X, "householder_map")
    return _apply_map(X, _OrthMaps.householder)


def orthogonal_map(
    X: Tensor, method: str = "matrix_exp", *, blocks: int | None = None
) -> Tensor:
    r"""Map a tensor to an orthogonal or unitary one, or each of its row blocks.

    Calls :func:`matrix_exp_map`, :func:`cayley_map` or :func:`householder_map`.
    With ``blocks=k``, a tensor of shape `(*, k n, m)` is read as `k` matrices of
    shape `(n, m)` stacked along dimension `-2`, as in :func:`orthogonal`, and
    each of them is mapped.

    Args:
        X (Tensor): tensor of shape `(*, n, m)`, or `(*, k n, m)` with ``blocks=k``.
        method (str, optional): one of ``"matrix_exp"``, ``"cayley"`` and
            ``"householder"``. Default: ``"matrix_exp"``.

    Keyword args:
        blocks (int, optional): number of matrices stacked along dimension `-2`.
            Default: ``None``, :attr:`X` is one matrix (or a batch of them).

    Returns:
        A tensor of the shape and dtype of :attr:`X` whose every block has
        orthonormal columns (tall or square blocks) or rows (wide blocks).

    Example::

        >>> W = torch.randn(3 * 4, 4)  # three stacked 4 x 4 matrices
        >>> Q = orthogonal_map(W, "cayley", blocks=3)
        >>> [torch.allclose(G.mT @ G, torch.eye(4), atol=1e-5) for G in Q.split(4)]
        [True, True, True]
    """
    _check_map_input(X, "orthogonal_map")
    orth_enum = getattr(_OrthMaps, method, None) if isinstance(method, str) else None
    if not isinstance(orth_enum, _OrthMaps):
        raise ValueError(
            # The words of orthogonal()'s error for the same mistake.
            'method has to be one of "matrix_exp", "cayley", "householder". '
            f"Got: {method}"
        )
    blocks = _check_blocks(None, "X", X, blocks)
    return _merge_blocks(_apply_map(_split_blocks(X, blocks), orth_enum), blocks)


def _map_block(node):
    # The if/else of forward that computes Q from X with one of the maps.
    return isinstance(node, ast.If) and "orthogonal_map" in ast.unparse(node.test)


_HEADER = """\
@staticmethod
def _map(X: Tensor, orthogonal_map: _OrthMaps) -> Tensor:
    # X is tall here; returns the map of X, of the same shape, without the base.
    n, k = X.size(-2), X.size(-1)
"""


def _move_maps(text):
    # Move the maps out of forward into a static method that the public
    # functions share; the moved lines keep their indentation.
    where = "_Orthogonal.forward"
    tree = E.parse(text)
    body = E.find_def(tree, where).body  # type: ignore[attr-defined]
    found = [n for n in body if _map_block(n)]
    if len(found) != 1:
        raise E.AnchorError(
            f"Expected one if/else over the maps at the top level of {where}. "
            f"Found {len(found)}."
        )
    stmt = found[0]
    lines = text.splitlines(keepends=True)
    moved = "".join(lines[stmt.lineno - 1 : stmt.end_lineno])
    # self.orthogonal_map -> orthogonal_map, right to left, line by line.
    moved_lines = moved.splitlines(keepends=True)
    for node in sorted(
        (
            n
            for n in ast.walk(stmt)
            if isinstance(n, ast.Attribute) and E.dotted(n) == "self.orthogonal_map"
        ),
        key=lambda n: (n.lineno, n.col_offset),
        reverse=True,
    ):
        i = node.lineno - stmt.lineno
        line = moved_lines[i]
        moved_lines[i] = line[: node.col_offset] + "orthogonal_map" + line[node.end_col_offset :]
    moved_lines = _join_test(moved_lines, stmt, E._header_end(text, stmt) - stmt.lineno + 1)
    indent = " " * stmt.col_offset
    method_indent = " " * (stmt.col_offset - 4)
    method = [
        method_indent + line if line.strip() else line
        for line in _HEADER.splitlines(keepends=True)
    ]
    method += moved_lines
    method.append(f"{indent}return Q\n")
    lines[stmt.lineno - 1 : stmt.end_lineno] = [
        f"{indent}Q = self._map(X, self.orthogonal_map)\n"
    ]
    text = "".join(lines)
    # The static method goes right after forward.
    node = E.find_def(E.parse(text), where)
    lines = text.splitlines(keepends=True)
    lines[node.end_lineno : node.end_lineno] = ["\n", *method]
    return "".join(lines)


def _join_test(lines, stmt, body_line):
    # After the rename the test of the if may fit on one line, and the
    # formatter then writes it there: so do we.
    header = "".join(lines[:body_line])
    if header.count("\n") == 1 or "#" in header:
        return lines
    test = ast.parse(header.strip().removeprefix("if").strip().rstrip(":") + "\n", mode="eval")
    joined = " " * stmt.col_offset + f"if {ast.unparse(test)}:\n"
    if len(joined) - 1 > E.LINE_LENGTH:
        return lines
    return [joined, *lines[body_line:]]


def _edit_docs(text):
    lines = text.splitlines(keepends=True)
    present = {line.strip() for line in lines}
    for i, line in enumerate(lines):
        if line.strip() == "parametrizations.orthogonal":
            indent = line[: len(line) - len(line.lstrip())]
            new = [
                f"{indent}parametrizations.{n}\n"
                for n in NAMES
                if f"parametrizations.{n}" not in present
            ]
            lines[i + 1 : i + 1] = new
            return "".join(lines)
    raise E.AnchorError("Expected an entry parametrizations.orthogonal in the nn docs.")


def edit(path, text):
    if path in DOCS:
        return _edit_docs(text)
    if path != PARAMETRIZATIONS:
        return text
    text = _move_maps(text)
    text = E.insert_defs(
        text,
        source_of(
            __file__,
            "_check_map_input",
            "_apply_map",
            "matrix_exp_map",
            "cayley_map",
            "householder_map",
            "orthogonal_map",
        ),
        after="orthogonal",
    )
    return E.replace_in_list(text, "__all__", "orthogonal", list(NAMES))


PATCH = Patch(
    name="public-maps",
    subject="Expose the orthogonal maps as public functions",
    body="""\
The three maps behind orthogonal() are only reachable through a
parametrization module, so code that needs an orthogonal matrix from an
unconstrained one (a custom parametrization, a functional model, a
Riemannian optimizer) copies them, sign conventions and all.

Move the maps out of _Orthogonal.forward into a static method,
_Orthogonal._map, unchanged but for the argument that replaces
self.orthogonal_map, and add matrix_exp_map, cayley_map, householder_map and
orthogonal_map(X, method, *, blocks=None) on top of it: differentiable,
batched, for tall, square and wide input, with the same values as the
parametrization without its base. forward computes what it did before.
""",
    edit=edit,
    tests=("test_orthogonal_maps", "test_orthogonal_maps_errors"),
    refs=("See #102740",),
)
