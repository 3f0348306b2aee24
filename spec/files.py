"""Opening the files a spec names (its ``extends:`` bases, its ``weights:``) safely.

Only regular files are read: no directories, devices (``/dev/zero``), FIFOs or
sockets. The file is opened without blocking (a FIFO cannot hang the open) and its
type is checked on the open descriptor, so what is read is what was checked. Reads
are bounded: at most the limit and one byte more, whatever size the file claims
(files under ``/proc`` claim 0). With a ``root``, a path must resolve (symbolic
links followed) to a file inside that folder.

``zoo:NAME`` names a spec of the model zoo (``nnspec.zoo``): ``zoo_file`` checks the
name and gives the file.
"""

from __future__ import annotations

import os
import stat

from .errors import suggest

__all__ = [
    "ZOO_PREFIX",
    "FileRefused",
    "inside",
    "is_zoo",
    "open_regular",
    "read_bounded",
    "zoo_file",
]

#: What a spec path starts with to name a spec of the model zoo.
ZOO_PREFIX = "zoo:"

_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class FileRefused(Exception):
    """A file that cannot or may not be read; the message names it and says why."""


def is_zoo(spec: object) -> bool:
    """Whether a spec path names a spec of the model zoo: ``zoo:NAME``."""
    return isinstance(spec, str) and spec.startswith(ZOO_PREFIX)


def zoo_file(spec: str) -> str:
    """The file of the zoo spec ``spec`` (``zoo:NAME``); FileRefused, listing the
    zoo's names and suggesting the closest, when there is none. The name must be a
    plain lowercase identifier: nothing after ``zoo:`` is read as a path."""
    # The zoo is imported when a spec names it: loading a file reads nothing of it.
    from ..zoo import NAME_PATTERN, names, path

    name = spec[len(ZOO_PREFIX) :]
    known = names()
    listing = f"the zoo's models: {', '.join(known) or 'none'}"
    if not NAME_PATTERN.match(name):
        raise FileRefused(
            f"{spec!r} names no zoo model: after {ZOO_PREFIX!r} comes a model's name, "
            f"lowercase letters, digits and _ ({listing})"
        )
    file = path(name)
    if file is None:
        raise FileRefused(
            f"the zoo has no model {name!r}{suggest(name, known)}; {listing}"
        )
    return str(file)


def inside(path: str, root: str) -> bool:
    """Whether ``path`` resolves, symbolic links followed, to a place inside ``root``."""
    real = os.path.realpath(path)
    top = os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def open_regular(path: str, what: str = "file", root: str | None = None) -> int:
    """A descriptor open on the regular file at ``path``; FileRefused otherwise.

    ``what`` names the file in messages ("spec file", "weights file").
    """
    if "\0" in path:
        raise FileRefused(f"the {what} path {path!r} contains a NUL character")
    if root is not None and not inside(path, root):
        raise FileRefused(
            f"the {what} {path} is outside {root}, the folder specs are confined to"
        )
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        raise FileRefused(f"no such {what}: {path}") from None
    except IsADirectoryError:
        raise FileRefused(f"the {what} {path} is a directory") from None
    except OSError as exc:
        raise FileRefused(f"cannot open the {what} {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a directory"
                if stat.S_ISDIR(mode)
                else "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a device"
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket"
                if stat.S_ISSOCK(mode)
                else "not a regular file"
            )
            raise FileRefused(f"the {what} {path} is {kind}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(fd: int, limit: int) -> bytes | None:
    """The contents of an open file, or None when it holds more than ``limit`` bytes.

    Reads at most ``limit + 1`` bytes, and closes the descriptor.
    """
    chunks: list[bytes] = []
    left = limit + 1
    try:
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return None if len(data) > limit else data
