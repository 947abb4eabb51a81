"""The end of a tool's log, as a person wants to read it under an error message.

Vagrant logs are mostly noise at the end of a failure: colour codes, progress
lines rewritten in place hundreds of times, and Ruby backtraces that push the
actual error ("No such file or directory - virt-sysprep") out of any fixed tail.
"""

from __future__ import annotations

import re
from pathlib import Path

_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_REWRITE = re.compile(r"\r|\x1b\[[0-9;]*K")  # carriage return or "clear line"
_RUBY_FRAME = re.compile(r"^\s+from \S+:\d+:in ")


def strip_escapes(text: str) -> str:
    """``text`` without terminal control sequences (colours, clear line, cursor moves)."""
    return _CSI.sub("", text)


def readable_lines(text: str) -> list[str]:
    """Non-blank lines as a terminal would have left them, without Ruby backtrace frames."""
    kept = []
    for raw in text.split("\n"):
        shown = [part for part in map(strip_escapes, _REWRITE.split(raw)) if part.strip()]
        if shown and not _RUBY_FRAME.match(shown[-1]):
            kept.append(shown[-1].rstrip())
    return kept


def tail(path: Path, lines: int = 25) -> str:
    try:
        # Bytes, not read_text: universal newlines would turn each "\r" rewrite into a line.
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(readable_lines(text)[-lines:])
