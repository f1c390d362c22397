# mypy: allow-untyped-defs
r"""Patch the block-aware :func:`orthogonal` into the installed PyTorch and back out.

Importing :mod:`torch_ortho_patch` changes nothing. :func:`install` is the only
function here that touches torch, and :func:`uninstall` undoes exactly what it did.
"""

import contextlib
import gc
import inspect
import re
import sys
import threading
import time
import types
import warnings
from typing import Any, NamedTuple

import torch


__all__ = ["install", "uninstall", "installed", "is_installed"]

# Note [Supported PyTorch releases]
# The floor is the oldest release that CI runs the whole suite against (.ci/run
# runs it on the floor, on the on-disk 2.13.0 and on the newest release). This
# constant is the one place that states it: pyproject.toml asks pip for the same
# floor and the docs say the same, and test_install.TestFloor checks that they
# agree. The floor check is the only version string that is parsed; anything
# that differs between supported releases is chosen by looking at what the
# installed torch has (see _takes_blocks here and torch_ortho_patch._rnn.applies).
_MIN_TORCH_VERSION = (2, 4)

# The public names that install() adds to torch.nn.utils.parametrizations,
# next to the orthogonal that it replaces.
_NEW_NAMES = ("orthogonal_map", "matrix_exp_map", "cayley_map", "householder_map")

# The names of torch.nn.init that install() replaces: orthogonal_ and its
# deprecated alias, which calls it.
_INIT_NAMES = ("orthogonal_", "orthogonal")

# Note [What install() patches]
# install() sets exactly these attributes, in this order, and uninstall() restores
# them in reverse order:
#   1. torch.nn.utils.parametrizations.orthogonal   -> torch_ortho_patch's orthogonal
#   2. torch.nn.utils.parametrizations.<map>        -> the four public maps (new names)
#   3. torch.nn.utils.parametrizations.__all__      -> a new list with the new names
#   4. the methods of torch.nn.modules.rnn.RNNBase that the stack amends
#      (_init_flat_weights, _weights_have_changed, __deepcopy__ and
#      _update_flat_weights, which calls the first two: callees come first,
#      see Note [Swapping methods under running forwards]) -> see
#      torch_ortho_patch._rnn
#   5. torch.nn.init.orthogonal_ and its deprecated alias torch.nn.init.orthogonal
#      -> torch_ortho_patch.init's, which take `blocks`; left alone where
#      torch's own orthogonal_ takes `blocks` already
# Each entry of the plan is (target, name, new value); another amended file
# adds its entries the same way, and everything below treats them alike.
# The replacement is our orthogonal function object itself, not a functools.wraps
# wrapper, so inspect.signature() shows `blocks` and help() shows our docstring.
#
# The private _Orthogonal and _OrthMaps of torch are deliberately left alone.
# Parametrizations created while installed are instances of
# torch_ortho_patch.parametrizations._Orthogonal. Replacing torch's names as well
# would not make isinstance checks consistent (parametrizations created before
# install() would stop matching torch.nn.utils.parametrizations._Orthogonal
# instead), and it would break pickling of those older objects: pickle finds a
# class through its module path and refuses when that path leads to another
# object ("it's not the same object as ..._Orthogonal"). Keeping our classes
# under our own module path also means that a parametrization pickled with
# blocks=k cannot load silently as torch's class, which would ignore the blocks;
# it needs torch_ortho_patch importable instead. (torch refuses to pickle a
# parametrized module whole anyway; state dicts hold only tensors.)


class _Patch(NamedTuple):
    target: Any  # a module or a class
    name: str
    old: Any  # _MISSING when the attribute did not exist
    new: Any


_MISSING = object()
_lock = threading.RLock()
# The patches applied by the current install(), in order; None when not installed.
_active: list[_Patch] | None = None
# What each attribute held before the first install(), as a fallback so that we
# never record one of our own objects as "the original".
_true_originals: dict[tuple[Any, str], Any] = {}


def _qualname(target: Any, name: str) -> str:
    prefix = getattr(target, "__module__", None)
    if inspect.ismodule(target) or prefix is None:
        return f"{target.__name__}.{name}"
    return f"{prefix}.{target.__qualname__}.{name}"


def _parse_version(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", str(version))
    if match is None:
        raise RuntimeError(f"Expected a version like '2.1.0'. Got {version!r}.")
    return int(match.group(1)), int(match.group(2))


def _check_torch_version() -> None:
    if _parse_version(torch.__version__) < _MIN_TORCH_VERSION:
        floor = ".".join(map(str, _MIN_TORCH_VERSION))
        raise RuntimeError(
            "torch_ortho_patch.install() does not support this PyTorch: no "
            f"release older than {floor} is tested. "
            f"Expected torch >= {floor}. Got {torch.__version__}."
        )


def _takes_blocks(fn: Any) -> bool:
    try:
        return "blocks" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _torch_orthogonal() -> Any:
    r"""Return torch's own ``orthogonal``, also while the patch is installed."""
    import torch.nn.utils.parametrizations as P

    with _lock:
        if _active is not None and _active[0].old is not _MISSING:
            return _active[0].old
        return P.orthogonal


def _torch_init_orthogonal() -> Any:
    r"""Return torch's own ``nn.init.orthogonal_``, also while the patch is installed."""
    import torch.nn.init as I

    with _lock:
        for patch in _active or ():
            if patch.target is I and patch.name == "orthogonal_" and patch.old is not _MISSING:
                return patch.old
        return I.orthogonal_


def _torch_has_blocks() -> bool:
    r"""Return whether torch's own ``orthogonal`` already accepts ``blocks``."""
    return _takes_blocks(_torch_orthogonal())


def _plan() -> list[tuple[Any, str, Any]]:
    import torch.nn.init as I
    import torch.nn.utils.parametrizations as P
    from torch.nn.modules.rnn import RNNBase

    from . import _rnn, init as ours_init, parametrizations as ours

    plan: list[tuple[Any, str, Any]] = [(P, "orthogonal", ours.orthogonal)]
    plan += [(P, name, getattr(ours, name)) for name in _NEW_NAMES]
    old_all = list(getattr(P, "__all__", []))
    plan.append((P, "__all__", old_all + [n for n in _NEW_NAMES if n not in old_all]))
    # The amended RNNBase methods; none where this torch's RNNBase cannot be
    # amended (see torch_ortho_patch._rnn.applies).
    plan += [(RNNBase, name, fn) for name, fn in _callees_first(_rnn.methods())]
    # nn.init.orthogonal_, unless this torch's own takes `blocks` already.
    own = vars(I).get("orthogonal_")
    if own is ours_init.orthogonal_ or not _takes_blocks(own):
        plan += [(I, name, getattr(ours_init, name)) for name in _INIT_NAMES if name in vars(I)]
    return plan


def _callees_first(methods: dict) -> list[tuple[str, Any]]:
    r"""Order ``{name: function}`` so that a method comes after those it calls.

    See Note [Swapping methods under running forwards].
    """
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name in path:
            return
        calls = getattr(getattr(methods[name], "__code__", None), "co_names", ())
        for callee in sorted(set(calls) & set(methods)):
            visit(callee, (*path, name))
        seen.add(name)
        out.append((name, methods[name]))

    for name in methods:
        visit(name, ())
    return out


# Note [Swapping methods under running forwards]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# install() and uninstall() rebind RNNBase's methods while other threads may
# be in the forward of an RNN, and a forward looks each method up when it
# calls it. The amended _update_flat_weights calls _weights_have_changed and
# _init_flat_weights with the list of weights it read, which torch's own take
# no argument for; the amended ones take it or not. So:
#   * install() sets the callees first and _update_flat_weights last: a forward
#     that runs torch's _update_flat_weights meanwhile calls the amended
#     callees without the argument, which is what torch's do;
#   * uninstall() restores _update_flat_weights first, so that no forward
#     enters the amended one again, then waits until no other thread is still
#     inside it, and only then restores the callees. A thread that has looked
#     the method up may not show in sys._current_frames() until it runs again,
#     so "no thread inside" must hold twice, _SETTLE_S apart; a stress test of
#     4 threads against 200 install/uninstall cycles failed about once in a
#     few full-suite runs with a single check.
# Every forward computes the same values either way. Modules whose
# parametrized class has the amended methods of its own are not affected at
# all (see Note [Parametrized RNN classes keep the amended methods] in
# torch_ortho_patch._rnn). The wait gives up after _WAIT_S, with a warning,
# for a thread that never returns from a parametrization (one that waits for
# a lock that the caller of uninstall() holds, say).
_WAIT_S = 10.0
_SETTLE_S = 1e-3


def _foreign(target: Any, value: Any) -> bool:
    r"""Return whether ``value`` is a function that ``target``'s own file did not define."""
    if value is _MISSING or not callable(value):
        return False
    module = target if inspect.ismodule(target) else sys.modules.get(target.__module__)
    code = getattr(value, "__code__", None)
    return code is None or code.co_filename != getattr(module, "__file__", None)


def _warn_foreign(target: Any, name: str, value: Any) -> None:
    warnings.warn(
        f"{_qualname(target, name)} is not torch's own: it is {value!r}, which "
        "another library put there. torch_ortho_patch.install() replaces it while "
        "installed, so that change has no effect until uninstall(), which puts it "
        "back. Apply the other library's patch after torch_ortho_patch.install() "
        "to keep both in effect.",
        UserWarning,
        stacklevel=3,
    )


def _busy(codes: set, me: int) -> bool:
    # The walk must not let another thread run: each f_back makes a frame object,
    # which can start a garbage collection, whose finalizers are Python code
    # that can switch threads, and a thread that runs on pops the frames being
    # walked. With the collector off nothing switches. Anything that is not a
    # frame counts as busy, to be looked at again.
    enabled = gc.isenabled()
    gc.disable()
    try:
        for ident, frame in sys._current_frames().items():
            while ident != me and frame is not None:
                if not isinstance(frame, types.FrameType) or frame.f_code in codes:
                    return True
                frame = frame.f_back
        return False
    finally:
        if enabled:
            gc.enable()


def _wait_until_no_thread_runs(codes: set, what: str) -> None:
    r"""Wait until no other thread executes one of ``codes``.

    See Note [Swapping methods under running forwards].
    """
    me = threading.get_ident()
    deadline = time.monotonic() + _WAIT_S
    while True:
        # Not busy twice, _SETTLE_S apart: a thread that has looked the
        # restored function up but is not yet seen inside it gets the time to
        # enter it, and is then waited for.
        if not _busy(codes, me):
            if len(sys._current_frames()) == 1:
                return  # no other thread
            time.sleep(_SETTLE_S)
            if not _busy(codes, me):
                return
        if time.monotonic() > deadline:
            warnings.warn(
                f"uninstall() waited {_WAIT_S:g} s for other threads to leave {what} "
                "and restores the methods it calls anyway; a forward that is still "
                "inside it may fail. Call uninstall() when no RNN forward runs to "
                "avoid this.",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        time.sleep(1e-4)


def _restore(patches: list[_Patch]) -> None:
    # Functions already restored that other threads may still be running: what
    # they call is restored once those threads are out. See Note [Swapping
    # methods under running forwards].
    left: list[_Patch] = []
    for patch in reversed(patches):
        callers = {
            p.new.__code__
            for p in left
            if p.target is patch.target
            and patch.name in getattr(getattr(p.new, "__code__", None), "co_names", ())
        }
        if callers:
            what = ", ".join(sorted(_qualname(p.target, p.name) for p in left))
            _wait_until_no_thread_runs(callers, what)
        current = vars(patch.target).get(patch.name, _MISSING)
        if current is not patch.new:
            warnings.warn(
                f"{_qualname(patch.target, patch.name)} was replaced by "
                f"{current!r} after torch_ortho_patch.install(), so uninstall() "
                "leaves it in place instead of restoring the original. Restore it "
                "yourself, or uninstall() before replacing it, to silence this "
                "warning.",
                UserWarning,
                stacklevel=3,
            )
            continue
        if patch.old is _MISSING:
            delattr(patch.target, patch.name)
        else:
            setattr(patch.target, patch.name, patch.old)
        left.append(patch)


def install() -> None:
    r"""Patch the block-aware orthogonal parametrization into the installed PyTorch.

    After this call, :func:`torch.nn.utils.parametrizations.orthogonal` is
    :func:`torch_ortho_patch.orthogonal`, which takes the keyword-only argument
    ``blocks``, and :mod:`torch.nn.utils.parametrizations` also offers
    :func:`~torch_ortho_patch.orthogonal_map`,
    :func:`~torch_ortho_patch.matrix_exp_map`,
    :func:`~torch_ortho_patch.cayley_map` and
    :func:`~torch_ortho_patch.householder_map` (they are added to its ``__all__``).
    It also makes :class:`torch.nn.RNN`, :class:`torch.nn.LSTM` and
    :class:`torch.nn.GRU` read each weight once per forward, so that a parametrized
    RNN weight is computed once per call rather than four times, and it replaces
    :func:`torch.nn.init.orthogonal_` by :func:`torch_ortho_patch.init.orthogonal_`,
    which takes ``blocks`` too.

    Calling it again does nothing. It is safe to call from several threads, also
    while others run forwards of RNNs (see Note [Swapping methods under running
    forwards]). If a function it replaces is not torch's own (another library
    patched it), it warns, naming it: that patch has no effect while installed,
    and :func:`uninstall` puts it back.

    .. note::
        This is a monkeypatch: it rebinds module attributes. A name bound before
        :func:`install` with ``from torch.nn.utils.parametrizations import orthogonal``
        still refers to torch's original function. Look the function up through the
        module (``torch.nn.utils.parametrizations.orthogonal``) or import it after
        :func:`install`.

    .. note::
        Save parametrized models through ``model.state_dict()``: PyTorch refuses
        to pickle a parametrized module whole. A state dict holds only tensors, so
        :func:`torch.load` reads it with or without :mod:`torch_ortho_patch`
        (``weights_only=True`` included); load it into a model parametrized the
        same way, with the same ``blocks``. A parametrization pickled on its own
        (for example ``torch.save(model.parametrizations)``) is recorded under its
        class path ``torch_ortho_patch.parametrizations._Orthogonal``, so loading
        it needs :mod:`torch_ortho_patch` importable, installed or not.

    If torch's own ``orthogonal`` already accepts ``blocks``, it warns and does
    nothing.

    Raises:
        RuntimeError: if the installed PyTorch is older than the oldest supported one.

    Example::

        >>> import torch_ortho_patch
        >>> torch_ortho_patch.install()
        >>> import torch.nn.utils.parametrizations as P
        >>> gru = P.orthogonal(torch.nn.GRU(4, 4), "weight_hh_l0", blocks=3)
        >>> torch_ortho_patch.uninstall()
    """
    global _active
    with _lock:
        if _active is not None:
            return
        _check_torch_version()
        import torch.nn.utils.parametrizations as P

        if _takes_blocks(P.orthogonal):
            warnings.warn(
                "torch.nn.utils.parametrizations.orthogonal already accepts `blocks`, "
                "so torch_ortho_patch.install() changed nothing: this PyTorch "
                "includes the change. Call torch's own orthogonal(..., blocks=k) and "
                "remove the install() call to silence this warning.",
                UserWarning,
                stacklevel=2,
            )
            return

        applied: list[_Patch] = []
        try:
            for target, name, new in _plan():
                key = (target, name)
                old = vars(target).get(name, _MISSING)
                if old is new:
                    # Never record our own object as the original.
                    old = _true_originals.get(key, _MISSING)
                elif _foreign(target, old):
                    _warn_foreign(target, name, old)
                _true_originals.setdefault(key, old)
                setattr(target, name, new)
                applied.append(_Patch(target, name, old, new))
        except BaseException:
            _restore(applied)
            raise
        _active = applied


def uninstall() -> None:
    r"""Undo :func:`install`.

    Restores, in reverse order, the very objects that :func:`install` replaced,
    removes the names it added (also from ``__all__``, which gets back its original
    list) and puts back the original :class:`torch.nn.RNNBase` methods and
    :func:`torch.nn.init.orthogonal_`. Does nothing
    when the patch is not installed. An attribute that someone else replaced after
    :func:`install` is left alone, with a :class:`UserWarning`.

    Parametrizations registered while installed keep working: they are ordinary
    modules of :mod:`torch_ortho_patch`. An RNN parametrized while installed
    keeps the amended methods on its own class, so it still reads each weight
    once per forward and can be deep-copied (see Note [Parametrized RNN classes
    keep the amended methods] in ``torch_ortho_patch._rnn``). Forwards that
    other threads run meanwhile are safe.
    """
    global _active
    with _lock:
        if _active is None:
            return
        patches, _active = _active, None
        from torch.nn.modules.rnn import RNNBase

        from . import _rnn

        # See Note [Parametrized RNN classes keep the amended methods].
        _rnn.keep_amended({p.name: p.new for p in patches if p.target is RNNBase})
        _restore(patches)


def is_installed() -> bool:
    r"""Return whether :func:`install` is in effect."""
    with _lock:
        return _active is not None


class _Installed(contextlib.ContextDecorator):
    r"""What :func:`installed` returns: reusable, reentrant, and a decorator too.

    Each entry records whether the patch was installed before it, on a stack, so
    that one object can be entered again (``with cm: ... with cm: ...``), nested,
    or used as a decorator of a recursive function. A generator-based context
    manager (``contextlib.contextmanager``) can be entered once only and fails
    with an ``AttributeError`` of its own the second time.
    """

    def __init__(self) -> None:
        self._was_installed: list[bool] = []

    def __enter__(self) -> None:
        with _lock:
            was_installed = _active is not None
            install()
            self._was_installed.append(was_installed)

    def __exit__(self, *exc_info: object) -> None:
        if not self._was_installed:
            raise AssertionError("installed().__exit__ called without __enter__")
        if not self._was_installed.pop():
            uninstall()


def installed() -> contextlib.AbstractContextManager[None]:
    r"""Context manager that installs the patch on entry and uninstalls it on exit.

    The patch is removed even when the body raises. If the patch was already
    installed on entry, it stays installed on exit. The patch is global to the
    process, not to the thread that entered the context. The object returned
    can be entered again and also decorates a function (``@installed()``).

    .. note::
        Contexts nest within one thread. Contexts that overlap across threads
        without nesting do not: the first to have installed the patch removes
        it on exit, while the other's body may still run. Call :func:`install`
        once at start-up for threaded programs.

    Example::

        >>> import torch_ortho_patch
        >>> import torch.nn.utils.parametrizations as P
        >>> with torch_ortho_patch.installed():
        ...     lstm = P.orthogonal(torch.nn.LSTM(4, 4), "weight_hh_l0", blocks=4)
    """
    return _Installed()
