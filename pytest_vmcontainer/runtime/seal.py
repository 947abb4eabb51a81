"""Seals on large files the harness trusts later (VM cache images, saved VM states).

A seal records a file's size, its modification time and a hash of its first and last MiB,
at the moment the harness commits it. Before the file is trusted again, the seal is checked:
a truncated file, one written to after the commit (``dd conv=notrunc`` included: any write
moves the modification time) or one replaced by another fails. Hashing the whole file would
also catch a change that restored the old modification time, but costs seconds per start
for a gigabyte; these files are only ever written by the harness, so that is not the fault
to guard against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_END = 2**20  # bytes hashed at each end


def _ends_hash(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        digest.update(data.read(_END))
        if size > _END:
            data.seek(max(_END, size - _END))
            digest.update(data.read(_END))
    return digest.hexdigest()


def seal(files: Iterable[Path]) -> dict[str, dict[str, int | str]]:
    """The seal of each file, by file name."""
    sealed: dict[str, dict[str, int | str]] = {}
    for path in files:
        stat = path.stat()
        sealed[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                             "ends": _ends_hash(path, stat.st_size)}
    return sealed


def broken(directory: Path, sealed: object) -> str | None:
    """Why the sealed files in ``directory`` cannot be trusted, or None when they can.
    A missing or malformed seal is a reason too: nothing unsealed is trusted."""
    if not isinstance(sealed, dict) or not sealed:
        return "it has no seal (written by an older version, or half-written)"
    for name, expected in sealed.items():
        path = directory / name
        try:
            stat = path.stat()
            if not isinstance(expected, dict):
                return f"{name}: its seal is malformed"
            if stat.st_size != expected.get("size"):
                return (f"{name} has {stat.st_size} bytes, sealed with {expected.get('size')} "
                        "(truncated or overwritten)")
            if stat.st_mtime_ns != expected.get("mtime_ns") or \
                    _ends_hash(path, stat.st_size) != expected.get("ends"):
                return f"{name} was written to after it was sealed"
        except OSError as error:
            return f"{name}: {error.strerror or error}"
    return None
