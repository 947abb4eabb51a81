"""TCP ports in LISTEN state, read from /proc/net/tcp and /proc/net/tcp6 text.

Read inside a target (``cat /proc/net/tcp /proc/net/tcp6``), this needs no tool
in the image: no ``ss`` or ``netstat``, which minimal images lack.
"""

from __future__ import annotations

import ipaddress

LISTEN = "0A"
COMMAND = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"


def address(hex_address: str) -> str:
    """An address as /proc/net/tcp* and udp* print it (hex), as text: "0.0.0.0", "::"."""
    raw = bytes.fromhex(hex_address)
    # The kernel prints each 32-bit word of the address in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening(text: str) -> dict[int, set[str]]:
    """Port -> addresses it listens on ("0.0.0.0", "::", "127.0.0.1", ...)."""
    found: dict[int, set[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN or ":" not in fields[1]:
            continue
        host, _, port = fields[1].partition(":")
        try:
            found.setdefault(int(port, 16), set()).add(address(host))
        except ValueError:
            continue  # the header line, or something this parser does not know
    return found


def reachable(addresses: set[str]) -> bool:
    """Whether a listener on these addresses can be reached through a forward (not loopback)."""
    return any(not ipaddress.ip_address(a).is_loopback for a in addresses)


def describe(ports: dict[int, set[str]]) -> str:
    """E.g. "8080, 22" or "8080 (only on 127.0.0.1)"; "nothing" when empty."""
    if not ports:
        return "no TCP port"
    return ", ".join(str(port) if reachable(addrs) else
                     f"{port} (only on {', '.join(sorted(addrs))})"
                     for port, addrs in sorted(ports.items()))
