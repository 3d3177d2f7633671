"""Who may open an association: the called AE title and a calling-AE allow-list.

Allow-list entries are ``"AE"`` (that calling AE title from any host) or ``"AE@host"``
(only from that host; an IP address, or a host name resolved once when the policy is
built). An empty list accepts any calling AE. A refused request gets an A-ASSOCIATE-RJ
with the result, source and reason that PS3.8 9.3.4 defines for it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ivcontrast.config import ScpSettings

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ fields (PS3.8 9.3.4)
RESULT_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
REASON_CALLING_AE_NOT_RECOGNIZED = 0x03
REASON_CALLED_AE_NOT_RECOGNIZED = 0x07


@dataclass(frozen=True)
class Rejection:
    result: int
    source: int
    reason_code: int
    reason: str


@dataclass(frozen=True)
class AllowEntry:
    ae_title: str
    host: str | None = None
    addresses: frozenset[str] = frozenset()

    def matches(self, calling_ae: str, peer_address: str) -> bool:
        if calling_ae != self.ae_title:
            return False
        return self.host is None or normalize_address(peer_address) in self.addresses


def normalize_address(address: str) -> str:
    """An IP address in canonical form; IPv4-mapped IPv6 becomes plain IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def resolve_host(host: str) -> frozenset[str]:
    """The addresses of ``host`` (itself if it is an IP address); empty if it cannot resolve."""
    try:
        return frozenset({normalize_address(str(ipaddress.ip_address(host)))})
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        log.warning("allow-list host %r does not resolve (%s): its entries never match", host, exc)
        return frozenset()
    return frozenset(normalize_address(str(info[4][0])) for info in infos)


def parse_allow_list(
    entries: Iterable[str], resolve: Callable[[str], frozenset[str]] = resolve_host
) -> list[AllowEntry]:
    """Parse ``AE`` / ``AE@host`` entries; raises ValueError for an empty AE title or host."""
    out = []
    for raw in entries:
        entry = raw.strip()
        ae, sep, host = entry.rpartition("@")
        if not sep:
            ae, host = entry, ""
        ae, host = ae.strip(), host.strip()
        if not ae or len(ae) > 16 or (sep and not host):
            raise ValueError(f"allowed calling AE entry {raw!r}: expected 'AE' or 'AE@host'")
        out.append(AllowEntry(ae, host or None, resolve(host) if host else frozenset()))
    return out


class AccessPolicy:
    """Decides whether to accept an association request."""

    def __init__(self, ae_title: str, require_called_ae: bool, allowed: list[AllowEntry]) -> None:
        self.ae_title = ae_title.strip()
        self.require_called_ae = require_called_ae
        self.allowed = allowed

    @classmethod
    def from_settings(cls, scp: ScpSettings) -> AccessPolicy:
        return cls(scp.ae_title, scp.require_called_ae, parse_allow_list(scp.allowed_calling_aes))

    def check(self, calling_ae: str, called_ae: str, peer_address: str) -> Rejection | None:
        """None to accept, or the rejection to send."""
        calling_ae, called_ae = calling_ae.strip(), called_ae.strip()
        if self.require_called_ae and called_ae != self.ae_title:
            return Rejection(
                RESULT_PERMANENT,
                SOURCE_SERVICE_USER,
                REASON_CALLED_AE_NOT_RECOGNIZED,
                f"called AE title {called_ae!r} is not ours ({self.ae_title!r})",
            )
        if not self.allowed:
            return None
        if any(entry.matches(calling_ae, peer_address) for entry in self.allowed):
            return None
        if any(entry.ae_title == calling_ae for entry in self.allowed):
            why = f"calling AE title {calling_ae!r} is not allowed from {peer_address}"
        else:
            why = f"calling AE title {calling_ae!r} is not in the allow-list"
        return Rejection(
            RESULT_PERMANENT, SOURCE_SERVICE_USER, REASON_CALLING_AE_NOT_RECOGNIZED, why
        )
