"""What a scan holds, and what comparing two scans gives: plain data that round-trips JSON.

A ``Scan`` is one host's facts, category -> item -> value, every value a string (so
that comparing is string equality, and a saved scan compares like a live one), plus
the processes that listen, whose environment, limits and working directory are
compared only for those that serve the ports the run forwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The report's category names, in the order they are shown.
CATEGORIES = ("package", "user", "group", "port", "process", "file", "environment", "limit",
              "sysctl", "system")
SIDES = ("vm", "container")  # the two columns: a scan of any two hosts uses them too
SCHEMA = "pytest-vmcontainer/scan/1"


@dataclass
class Server:
    """A process (by name and user) holding a listening socket, and what it runs with."""

    ports: list[int] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    # Where ``environment`` was read: "" is /proc/PID/environ; a daemon that sets its process
    # title overwrites that, and then it is what its systemd unit or container starts it with.
    environment_from: str = ""


@dataclass
class Scan:
    """One host's facts; ``categories`` says which were collected (a base has no processes)."""

    facts: dict[str, dict[str, str]] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)  # "nginx (root)" -> its server
    categories: list[str] = field(default_factory=list)
    seconds: float | None = None  # how long the collection took, round trip included

    def items(self, category: str) -> dict[str, str]:
        return self.facts.get(category, {})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scan:
        servers = {name: Server(**server) for name, server in (data.get("servers") or {}).items()}
        return cls(facts={str(c): {str(k): str(v) for k, v in items.items()}
                          for c, items in (data.get("facts") or {}).items()},
                   servers=servers, categories=list(data.get("categories") or []),
                   seconds=data.get("seconds"))


@dataclass
class Difference:
    category: str
    item: str
    vm: str | None  # None: the item is absent on that side
    container: str | None
    expected: str | None = None  # None: unexpected; else the reason it is expected

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScanResult:
    """Two scans compared: what ``scan.json`` holds."""

    collected_in_s: dict[str, float | None]
    differences: list[Difference]
    same: int
    ignored: int = 0  # values that identify one machine or boot, dropped before comparing
    hosts: dict[str, str] = field(default_factory=dict)  # side -> what was scanned
    notes: list[str] = field(default_factory=list)  # e.g. "bases not scanned: ..."
    skipped: str | None = None  # why no scan was made (then nothing else is set)

    @property
    def unexpected(self) -> list[Difference]:
        return [d for d in self.differences if d.expected is None]

    @property
    def expected(self) -> list[Difference]:
        return [d for d in self.differences if d.expected is not None]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "collected_in_s": dict(self.collected_in_s),
                "differences": [d.to_json() for d in self.differences], "same": self.same,
                "ignored": self.ignored, "hosts": dict(self.hosts), "notes": list(self.notes),
                "skipped": self.skipped}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanResult:
        """From ``to_json()``; ValueError when it is not of that shape."""
        try:
            return cls(collected_in_s=dict(data.get("collected_in_s") or {}),
                       differences=[Difference(**d) for d in data.get("differences") or []],
                       same=int(data.get("same") or 0), ignored=int(data.get("ignored") or 0),
                       hosts=dict(data.get("hosts") or {}), notes=list(data.get("notes") or []),
                       skipped=data.get("skipped"))
        except (AttributeError, TypeError) as error:
            raise ValueError(f"not a scan result ({error})") from None

    @classmethod
    def skip(cls, reason: str) -> ScanResult:
        return cls(collected_in_s={}, differences=[], same=0, skipped=reason)
