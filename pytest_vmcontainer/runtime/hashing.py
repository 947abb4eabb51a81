"""Content hashes that key caches: base builds, target images, reusable targets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def content_hash(paths: Iterable[Path], extra: Iterable[str] = ()) -> str:
    """sha256 over file names (relative to each given root), exec bits and bytes."""
    digest = hashlib.sha256()
    for root in paths:
        for file in _files_under(root):
            name = file.name if file == root else str(file.relative_to(root))
            digest.update(f"{root.name}/{name}\0{file.stat().st_mode & 0o111:o}\0".encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    for item in extra:
        digest.update(f"extra\0{item}\0".encode())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
