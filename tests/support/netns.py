"""A second test host: a network namespace joined to this one by a veth pair.

Processes started with ``prefix`` run in the namespace and reach this host only at
``host_ip`` over the pair; ``cut()`` takes the link down (packets are dropped, as
when a cable or a switch goes) and ``restore()`` brings it back.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class SecondHost:
    name: str
    index: int

    @property
    def host_ip(self) -> str:
        return f"10.77.{self.index}.1"

    @property
    def ip(self) -> str:
        return f"10.77.{self.index}.2"

    @property
    def subnet(self) -> str:
        return f"10.77.{self.index}.0/30"

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    @property
    def _host_end(self) -> str:
        return f"{self.name}h"[:15]

    def create(self) -> SecondHost:
        inner = f"{self.name}n"[:15]
        _ip("netns", "add", self.name)
        _ip("link", "add", self._host_end, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self._host_end)
        _ip("link", "set", self._host_end, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ip}/30", "dev", inner)
        _ip("-n", self.name, "link", "set", inner, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def cut(self) -> None:
        _ip("link", "set", self._host_end, "down")

    def restore(self) -> None:
        _ip("link", "set", self._host_end, "up")

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self._host_end], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


def _subnets_in_use() -> set[int]:
    """The third numbers of the 10.77.x.y addresses on this host's interfaces."""
    shown = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    return {int(m) for m in re.findall(r"inet 10\.77\.(\d+)\.", shown)}


def second_host() -> SecondHost:
    """A namespace and a subnet no other test process (another run, an xdist worker) uses."""
    pid = os.getpid()
    used = _subnets_in_use()
    start = pid % 250
    index = next((i % 250 + 1 for i in range(start, start + 250) if i % 250 + 1 not in used), None)
    if index is None:
        raise RuntimeError("every 10.77.x.0/30 subnet is in use")
    return SecondHost(name=f"tb{pid}", index=index).create()
