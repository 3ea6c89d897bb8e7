"""What the host itself can reach: its routes (/proc/net/route). A test must never open a
connection to an address the host has no route for: it would leave the machine."""

from __future__ import annotations

import socket


def subnet_routes() -> list[tuple[int, int]]:
    """(destination, mask) of every IPv4 route this host has, from /proc/net/route."""
    rows = []
    with open("/proc/net/route") as routes:
        for line in routes.read().splitlines()[1:]:
            fields = line.split()
            rows.append((int(fields[1], 16), int(fields[7], 16)))
    return rows


def ip_to_int_le(address: str) -> int:
    # /proc/net/route prints addresses in host (little-endian) byte order.
    return int.from_bytes(socket.inet_aton(address), "little")


def local_routes_to(address: str) -> list[tuple[int, int]]:
    """The host's routes into `address`'s network, other than the default route."""
    target = ip_to_int_le(address)
    return [(d, m) for d, m in subnet_routes() if m and (target & m) == d]
