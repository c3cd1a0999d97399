"""Which webhook URLs may be called, and calling them only where the check said.

A webhook URL comes from a user, so by default it may only reach the public internet: no
private, loopback, link-local, CGNAT, multicast or reserved address (IPv4 written in any
form inet_aton accepts, IPv6 and the IPv4 addresses that IPv6 forms embed), no cloud
metadata or local-only name, only http and https, no userinfo. The host is resolved once and
every address must be public; the request then connects to one of exactly those addresses,
with the URL's host in the Host header and as the TLS name, so a DNS answer that changes
between check and send (rebinding) cannot reach anything else.
`api.webhook_allow_private` lifts the address and name rules for trusted deployments.
"""

import http.client
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import BadInput

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata hands out credentials: never a webhook target, even where
# private targets are allowed.
METADATA_NAMES = {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                  "instance-data.ec2.internal", "metadata.azure.internal",
                  "metadata.tencentyun.com", "metadata.oraclecloud.com"}
METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")}
# Names that only mean something on this machine or its network, whatever a resolver says.
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
LOCAL_SUFFIXES = (".localhost", ".internal", ".local", ".home.arpa", ".localdomain")
# IPv6 ranges that carry an IPv4 address in their low 32 bits (NAT64, well-known and local).
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# One label of a legacy IPv4 literal: hex, octal or decimal, as inet_aton reads them.
_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+")


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str                       # for the Host header and the TLS name
    port: int
    path: str                       # path and query, as sent
    addresses: tuple[IP, ...]       # the checked addresses; the only ones connected to


def check(url: str, *, allow_private: bool = False) -> Target:
    """The URL's target if a webhook may call it, else BadInput saying why (at registration:
    the API answers 4xx)."""
    try:
        return _target(url, allow_private)
    except socket.gaierror as e:
        raise BadInput(f"webhook_url host does not resolve ({e.strerror or e}); use a "
                       "public host name or address") from None


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float,
         allow_private: bool = False) -> int:
    """POST to the URL through a connection pinned to the addresses just checked; the
    answer's status (redirects are not followed). BadInput: refused, do not retry; OSError
    (DNS, refused, timeout, a broken answer): worth a retry."""
    target = _target(url, allow_private)
    conn = (_PinnedTLS if target.scheme == "https" else _Pinned)(target, timeout)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        return conn.getresponse().status
    except http.client.HTTPException as e:      # not an answer a server should give
        raise ConnectionError(f"bad HTTP answer: {type(e).__name__}: {e}") from e
    finally:
        conn.close()


def is_public(ip: IP) -> bool:
    """Whether an address is on the public internet, IPv4 inside IPv6 forms included."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    n = int(ip)
    if n >> 32 == 0 or any(ip in net for net in NAT64):    # IPv4-compatible ::a.b.c.d, NAT64
        return ipaddress.IPv4Address(n & 0xFFFFFFFF)
    return None


def _target(url: str, allow_private: bool) -> Target:
    scheme, host, port, path = _parse(url)
    literal = _literal(host)
    if literal is not None:
        host, addresses = str(literal), (literal,)
    else:
        _check_name(host, allow_private)
        addresses = _resolve(host, port)
    metadata = [str(a) for a in addresses if _is_metadata(a)]
    if metadata:
        raise BadInput(f"webhook_url host {host!r} is a cloud metadata address "
                       f"({', '.join(metadata)}); webhooks may never call it")
    if not allow_private:
        refused = [str(a) for a in addresses if not is_public(a)]
        if refused:
            raise BadInput(f"webhook_url host {host!r} is not a public address "
                           f"({', '.join(refused)}); webhooks may only call the public "
                           "internet here")
    return Target(scheme, host, port, path, addresses)


def _parse(url: str) -> tuple[str, str, int, str]:
    url = url.strip()
    if not url.isprintable() or any(c.isspace() for c in url):
        raise BadInput("webhook_url has control characters or spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput("webhook_url must be an absolute http or https URL")
    if "@" in parts.netloc:
        raise BadInput("webhook_url must not carry a user name or password")
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError as e:
        raise BadInput(f"webhook_url has a bad host or port ({e})") from None
    if not host:
        raise BadInput("webhook_url has no host")
    host = host.rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise BadInput(f"webhook_url host {host!r} is not a valid name") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path


def _literal(host: str) -> IP | None:
    """The address a numeric host stands for, in every form a resolver would accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    labels = host.split(".")
    if not all(_NUMBER.fullmatch(label) for label in labels):
        return None
    # inet_aton: 'a', 'a.b', 'a.b.c' and 'a.b.c.d'; the last number fills the bytes left.
    numbers = [_number(label) for label in labels]
    if None in numbers or len(labels) > 4 or any(n > 255 for n in numbers[:-1]) \
            or numbers[-1] >= 256 ** (5 - len(labels)):
        raise BadInput(f"webhook_url host {host!r} looks like an IP address but is not one")
    value = 0
    for n in numbers[:-1]:
        value = value << 8 | n
    return ipaddress.IPv4Address(value << 8 * (5 - len(labels)) | numbers[-1])


def _number(label: str) -> int | None:
    """One label as inet_aton reads it: 0x hex, 0 octal, else decimal; None if invalid."""
    try:
        if label.startswith("0x"):
            return int(label[2:] or "0", 16)
        return int(label, 8) if len(label) > 1 and label.startswith("0") else int(label)
    except ValueError:          # '08': not octal
        return None


def _check_name(host: str, allow_private: bool) -> None:
    if host in METADATA_NAMES:
        raise BadInput(f"webhook_url host {host!r} is a cloud metadata name; webhooks may "
                       "never call it")
    if not allow_private and (host in LOCAL_NAMES or host.endswith(LOCAL_SUFFIXES)):
        raise BadInput(f"webhook_url host {host!r} is a local name; webhooks may only call "
                       "the public internet here")


def _is_metadata(ip: IP) -> bool:
    inner = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    return ip in METADATA_ADDRESSES or inner in METADATA_ADDRESSES


def _resolve(host: str, port: int) -> tuple[IP, ...]:
    """Every address the name has now (socket.gaierror when it has none)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IP] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        if isinstance(ip, ipaddress.IPv6Address) and len(sockaddr) > 3 and sockaddr[3]:
            ip = ipaddress.IPv6Address(f"{sockaddr[0].split('%')[0]}%{sockaddr[3]}")
        if ip not in out:
            out.append(ip)
    return tuple(out)


def _connect(addresses: tuple[IP, ...], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers; no resolver."""
    error: OSError = ConnectionError("no address to connect to")
    for ip in addresses:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((str(ip), port))
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error


class _Pinned(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self.addresses = target.addresses

    def connect(self) -> None:
        self.sock = _connect(self.addresses, self.port, self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    # The certificate is checked against the URL's host (SNI too), not the address.
    def __init__(self, target: Target, timeout: float):
        self.tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.addresses = target.addresses

    def connect(self) -> None:
        sock = _connect(self.addresses, self.port, self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
