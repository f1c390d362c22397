# mypy: allow-untyped-defs
r"""Keep what the stack builds for the runtime on disk, from one process to the next.

:mod:`torch_ortho_patch._stack` builds the runtime by applying the patches to
the installed torch's files, which takes a few hundred milliseconds, and stores
the result here, keyed by everything it was built from. See Note [The runtime
cache].
"""

# Note [The runtime cache]
# ~~~~~~~~~~~~~~~~~~~~~~~~
# Building the runtime parses upstream's file once per edit: about a second
# of every `import torch_ortho_patch`, in every process, DataLoader workers and
# DDP ranks included. What it builds (the amended text, and the code objects
# compiled from it) is a function of
#   * the installed torch file that the patches amend, which the key holds as
#     a hash of its text, with torch's version and where it is installed (both
#     appear in the file names compiled into the code);
#   * this package's source: the key hashes every .py file of the package, so
#     any change to a patch, to the edits, to __version__ in __init__.py or to a
#     file the stack copies into torch makes a new key. An edit depends on
#     nothing else: it is a function of the text it is given;
#   * the Python that compiled it: its version, the magic number of its
#     bytecode and its -O level.
# So a cache entry is never stale: an entry whose key differs is not used, and
# is overwritten by the new build. The stack stays the single source of truth;
# the cache only remembers its last answer.
#
# Each entry is one file per amended file, torch installation and Python (the
# slot), holding marshal's encoding of (format, key, value); the key inside it
# is checked on every read. So an upgrade of torch replaces the entry instead
# of adding one, and several environments that share one copy of this package
# (a checkout on PYTHONPATH) keep an entry each. A file is written to a
# temporary name in the same directory and renamed over the entry: a reader
# sees the old entry or the new one, never half of one, and two processes that
# build at once both write whole entries, which are the same. Anything that
# cannot be read or decoded is a miss.
#
# Where: first next to this package's bytecode (the directory that
# importlib.util.cache_from_source names, so PYTHONPYCACHEPREFIX is followed),
# then, where that cannot be written (a read-only system site-packages) or
# sys.dont_write_bytecode is set, $XDG_CACHE_HOME/torch_ortho_patch/runtime
# (~/.cache by default), and where neither can be written, nowhere: the runtime
# is then built in every process, as correct as ever. Setting
# TORCH_ORTHO_PATCH_RUNTIME_CACHE to a directory uses that one only, and
# setting it to the empty string turns the cache off.

import functools
import hashlib
import importlib.util
import marshal
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


__all__: list[str] = []

ENV = "TORCH_ORTHO_PATCH_RUNTIME_CACHE"
_FORMAT = "torch_ortho_patch runtime cache 1"
_PACKAGE = Path(__file__).parent
_MISS = object()


def directories() -> list[Path]:
    r"""Return the directories to use, in order. See Note [The runtime cache]."""
    chosen = os.environ.get(ENV)
    if chosen is not None:
        return [Path(chosen)] if chosen else []
    dirs = []
    if not sys.dont_write_bytecode:
        dirs.append(Path(importlib.util.cache_from_source(__file__)).parent)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    if os.path.isabs(base):
        dirs.append(Path(base) / "torch_ortho_patch" / "runtime")
    return dirs


@functools.cache
def package_digest() -> bytes:
    r"""Return a hash of the source of this package, every ``.py`` file in it."""
    h = hashlib.sha256()
    for file in sorted(_PACKAGE.rglob("*.py")):
        h.update(file.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        try:
            h.update(file.read_bytes())
        except OSError:
            h.update(b"\0unreadable")
        h.update(b"\0")
    return h.digest()


def python_key() -> list[str]:
    r"""What the code compiled by this Python depends on."""
    return [
        sys.version,
        importlib.util.MAGIC_NUMBER.hex(),
        str(sys.flags.optimize),
    ]


def key_of(parts: Iterable[str | bytes]) -> str:
    r"""Return the hex digest of ``parts``, each length-prefixed."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _file_name(slot: str) -> str:
    return f"{slot}.{sys.implementation.cache_tag}.amended"


def _read(file: Path, key: str) -> Any:
    try:
        with open(file, "rb") as f:
            data = f.read()
        entry = marshal.loads(data)
    except (OSError, EOFError, ValueError, TypeError):
        return _MISS
    if (
        isinstance(entry, tuple)
        and len(entry) == 3
        and entry[0] == _FORMAT
        and entry[1] == key
    ):
        return entry[2]
    return _MISS


def _write(directory: Path, name: str, data: bytes) -> bool:
    tmp = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # Readable by whoever can read the directory, as bytecode is.
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / name)
    except OSError:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass
        return False
    return True


def load_or_build(slot: str, key: str, build: Callable[[], Any]) -> Any:
    r"""Return the value cached for ``slot`` under ``key``, or ``build()`` and cache it.

    ``build()`` must return what :mod:`marshal` encodes (code objects, strings,
    dicts, tuples). A directory that cannot be read or written is skipped,
    silently. See Note [The runtime cache].
    """
    name = _file_name(slot)
    dirs = directories()
    for directory in dirs:
        value = _read(directory / name, key)
        if value is not _MISS:
            return value
    value = build()
    data = marshal.dumps((_FORMAT, key, value))
    for directory in dirs:
        if _write(directory, name, data):
            break
    return value
