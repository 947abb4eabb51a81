"""Portability: a target's export, measured alike for both (its content, and that at gzip -1)."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from pytest_vmcontainer.comparison.probes.context import Measured, ProbeContext
from pytest_vmcontainer.comparison.results import Figures
from pytest_vmcontainer.errors import ProbeError
from pytest_vmcontainer.targets.base import Target

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Packed:
    """A file's content: its size uncompressed and at gzip level 1."""

    raw_bytes: int
    gzip1_bytes: int
    gzip1_seconds: float  # time spent compressing
    was_gzip: bool  # the file itself was gzip (its content was decompressed first)


def gzip1(path: Path) -> Packed:
    """Stream ``path`` (decompressed first if it is gzip) through deflate level 1 in a gzip
    wrapper, counting bytes; nothing is written. zlib's level 1 uses the same deflate
    parameters as ``gzip -1``, so sizes agree to within a fraction of a percent."""
    with open(path, "rb") as source:
        was_gzip = source.read(2) == GZIP_MAGIC
        source.seek(0)
        unpack = zlib.decompressobj(zlib.MAX_WBITS | 16) if was_gzip else None
        pack = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        raw = packed = 0
        seconds = 0.0
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            data = chunk
            if unpack is not None:
                data = unpack.decompress(chunk)
                while unpack.eof and unpack.unused_data:  # the next gzip member
                    rest = unpack.unused_data
                    unpack = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    data += unpack.decompress(rest)
            raw += len(data)
            started = time.perf_counter()
            packed += len(pack.compress(data))
            seconds += time.perf_counter() - started
        started = time.perf_counter()
        packed += len(pack.flush())
        seconds += time.perf_counter() - started
    return Packed(raw, packed, seconds, was_gzip)


def _gzip1_of(path: Path, target: Target) -> Packed:
    try:
        return gzip1(path)
    except (OSError, zlib.error) as error:
        raise ProbeError(f"cannot read the {target.kind}'s export {path}: {error}",
                         "the export is damaged (a full disk?); free space and run again: "
                         "each run exports anew") from None


def probe_export(ctx: ProbeContext, target: Target) -> Measured:
    """The export as its standard tool makes it, then measured alike: its content
    uncompressed, and that content at gzip level 1 (a box is a gzip tar: it is decompressed
    and recompressed at level 1; a docker save tar is compressed at level 1). For an image,
    also its layers above the base: what moves to a host that already has the base."""
    exported = ctx.instances.export(target.kind, timer=ctx.timer)
    packed = _gzip1_of(exported.path, target)
    figures: Figures = {
        "export_bytes": exported.bytes, "export_seconds": exported.seconds,
        "format": exported.format, "uncompressed_bytes": packed.raw_bytes,
        "gzip1_bytes": packed.gzip1_bytes, "gzip1_seconds": packed.gzip1_seconds,
        "export_compressed": packed.was_gzip,
        # Time to a compressed artifact: the tool's own when it compresses, else plus gzip -1.
        "make_seconds": exported.seconds + (0.0 if packed.was_gzip else packed.gzip1_seconds)}
    if exported.delta_path is not None:
        delta = _gzip1_of(exported.delta_path, target)
        figures.update(app_layers_bytes=delta.raw_bytes, app_layers_gzip1_bytes=delta.gzip1_bytes,
                       app_layers_what=exported.delta_what)
    return figures, None


