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
import shlex
from collections.abc import Iterable, Mapping
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
    measured: dict[str, dict[str, int | str] | str] = {}
    for name in sealed:
        try:
            measured.update(seal([directory / name]))
        except OSError as error:
            measured[name] = error.strerror or str(error)
    return differs(sealed, measured)


def differs(sealed: object, measured: Mapping[str, Mapping[str, int | str] | str]) -> str | None:
    """Why files measured as ``seal`` does (or, for a file that could not be read, why not)
    do not match ``sealed``, or None when they all do."""
    if not isinstance(sealed, dict) or not sealed:
        return "it has no seal (written by an older version, or half-written)"
    for name, expected in sealed.items():
        found = measured.get(name, "not found")
        if isinstance(found, str):
            return f"{name}: {found}"
        if not isinstance(expected, dict):
            return f"{name}: its seal is malformed"
        if found["size"] != expected.get("size"):
            return (f"{name} has {found['size']} bytes, sealed with {expected.get('size')} "
                    "(truncated or overwritten)")
        if found["mtime_ns"] != expected.get("mtime_ns") or found["ends"] != expected.get("ends"):
            return f"{name} was written to after it was sealed"
    return None


def measure_script(files: Iterable[str]) -> str:
    """A POSIX shell line that measures ``files`` (paths on another machine) as ``seal``
    does, with coreutils: a line per file, "name size mtime_ns ends", or "name missing"."""
    checks = []
    for path in files:
        quoted = shlex.quote(path)
        checks.append(
            f"if [ -f {quoted} ]; then s=$(stat -c %s {quoted}); m=$(stat -c %.9Y {quoted}); "
            f"if [ $((s - {_END})) -gt {_END} ]; then o=$((s - {_END})); else o={_END}; fi; "
            f"h=$({{ head -c {_END} {quoted}; if [ $s -gt {_END} ]; then "
            f"tail -c +$((o + 1)) {quoted}; fi; }} | sha256sum | cut -d' ' -f1); "
            f"echo {shlex.quote(Path(path).name)} $s $m $h; "
            f"else echo {shlex.quote(Path(path).name)} missing; fi")
    return "; ".join(checks)


def parse_measured(output: str) -> dict[str, dict[str, int | str] | str]:
    """What ``measure_script`` printed, as ``seal`` (or the reason) by file name."""
    measured: dict[str, dict[str, int | str] | str] = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2:
            measured[fields[0]] = "No such file or directory"
        elif len(fields) == 4 and "." in fields[2]:
            seconds, fraction = fields[2].split(".", 1)
            nanoseconds = int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9])
            measured[fields[0]] = {"size": int(fields[1]), "mtime_ns": nanoseconds,
                                   "ends": fields[3]}
    return measured
