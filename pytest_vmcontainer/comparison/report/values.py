"""One figure as text: units (bytes, seconds, ratios, ...) and 95% intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from pytest_vmcontainer.comparison.results import RowResult

MISSING = "-"

_BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def _bytes(value: float) -> str:
    scaled, exponent = float(value), 0
    while abs(round(scaled, 1)) >= 1000 and exponent < len(_BYTE_UNITS) - 1:
        scaled, exponent = scaled / 1000, exponent + 1
    if exponent == 0:
        return f"{value:.0f} B"
    return f"{scaled:.1f} {_BYTE_UNITS[exponent]}"


def _seconds(value: float) -> str:
    size = abs(value)
    if size >= 120:
        return f"{value / 60:.1f} min"
    if size >= 10:
        return f"{value:.1f} s"
    if 0 < size < 1e-4:
        return f"{value * 1e6:.2f} us" if size < 1e-5 else f"{value * 1e6:.1f} us"
    if 0 < size < 0.01:
        return f"{value * 1000:.2f} ms" if size < 1e-3 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _milliseconds(value: float) -> str:
    return f"{value:.2f} ms" if abs(value) < 10 else f"{value:.1f} ms"


def _plain(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


_FORMATTERS: dict[str, Callable[[float], str]] = {
    "bytes": _bytes,
    "s": _seconds,
    "ms": _milliseconds,
    "ratio": lambda v: f"{v:.2f}x",
    "count": lambda v: f"{round(v):,}",
    "req/s": lambda v: f"{round(v):,} req/s",
    "MB/s": lambda v: f"{v:.1f} MB/s",
    "IOPS": lambda v: f"{round(v):,} IOPS",
    "%": lambda v: f"{v:.1f}%",
}


def format_value(value: object, unit: str) -> str:
    """One figure as text: ``None`` is "-", bools are "yes"/"no", lists are comma-joined.

    Known units: bytes (decimal SI), s, ms, ratio, bool, count, req/s, MB/s, IOPS, %.
    Anything else is ``str(value)``, floats to 3 significant digits (whole above 1000).
    """
    if value is None:
        return MISSING
    if isinstance(value, list | tuple):
        return ", ".join(format_value(item, unit) for item in value) if value else "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_value(v, '')}" for k, v in sorted(value.items(), key=str))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    formatter = _FORMATTERS.get(unit, _plain)
    return formatter(value)


_KEY_UNITS = {
    "seconds": "s",
    "rps": "req/s",
    "requests": "count",
    "errors": "count",
    "started": "count",
    "visible_processes": "count",
    "extrapolated_instances": "count",
    "ratio_to_native": "ratio",
    "ratio_to_container": "ratio",
}
_SUFFIX_UNITS = (
    ("_ci95", "ratio"),
    ("_bytes", "bytes"),
    ("_mb_s", "MB/s"),
    ("_ms", "ms"),
    ("_percent", "%"),
    ("_iops", "IOPS"),
    ("_seconds", "s"),
    ("_s", "s"),
    ("_count", "count"),
)


def figure_unit(key: str, row: RowResult | None = None) -> str:
    """The unit a figure is formatted with: the row's unit for its headline, else by name."""
    if row is not None and key == row.headline:
        return row.unit
    if key in _KEY_UNITS:
        return _KEY_UNITS[key]
    for suffix, unit in _SUFFIX_UNITS:
        if key.endswith(suffix):
            return unit
    return ""


def number(value: object) -> float | None:
    """A finite int or float as a float; None for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def one_line(text: object) -> str:
    """Text with its white space folded to single spaces; "" for None."""
    return " ".join(str(text).split()) if text is not None else ""


def interval_text(interval: object) -> str:
    """An interval (``stats.Interval.as_dict()``) as "2.73x (95% CI 2.61x-2.85x, n=5)"."""
    if not isinstance(interval, Mapping):
        return MISSING
    estimate, low, high = (number(interval.get(key)) for key in ("estimate", "low", "high"))
    reason = one_line(interval.get("reason"))
    if estimate is None:
        return f"no ratio ({reason})" if reason else MISSING
    if low is None or high is None:
        return f"{estimate:.2f}x (no interval: {reason})" if reason else f"{estimate:.2f}x"
    n = interval.get("n")
    return f"{estimate:.2f}x (95% CI {low:.2f}x-{high:.2f}x, n={format_value(n, 'count')})"
