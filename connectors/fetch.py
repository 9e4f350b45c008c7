"""Fetching media from URLs that untrusted users gave us, without becoming a proxy into our network.

Each hop (the first URL and every redirect) is checked the same way: http/https only, host on the
allowlist (when one is set), every address the name resolves to public — private and loopback only
with ``fetch_allow_private``, link-local (cloud metadata at 169.254.169.254), multicast and reserved
never. The connection then goes to the address that was checked (the name is not resolved again, so
DNS rebinding cannot swap it), with the original name for the Host header and TLS verification. The
body is streamed under a size cap and a total deadline, and its content type must be one the caller
accepts.

>>> from moodshift.connectors.settings import ConnectorSettings
>>> fetcher = SafeFetcher(ConnectorSettings())
>>> fetcher.fetch("file:///etc/passwd", accept=("image/",))
Traceback (most recent call last):
...
moodshift.connectors.fetch.FetchError: file:///etc/passwd: scheme 'file' is not http or https
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3

from moodshift.connectors import metrics
from moodshift.connectors.record import Reason, Rejected
from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(Rejected):
    """A fetch refused by policy (``fetch_refused``), too large (``oversized``) or failed (``fetch_failed``).

    ``detail`` is the finer cause, the ``reason`` label of ``moodshift_connector_fetch_errors_total``.
    """

    def __init__(self, reason: str, detail: str, url: str, message: str) -> None:
        super().__init__(reason, f"{url}: {message}")
        self.detail = detail
        self.url = url


@dataclass(frozen=True)
class Fetched:
    """A fetched body, its media type (without parameters) and the URL it finally came from."""

    data: bytes
    content_type: str
    url: str


Resolver = Callable[[str, int], list[str]]


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_refusal(address: str, allow_private: bool) -> str | None:
    """Why connecting to ``address`` is refused (``link-local``, ``private``, …), or None if allowed."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return "link-local"
    if ip.is_loopback:  # before is_reserved: ::1 lies in the reserved ::/8
        return None if allow_private else "loopback"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return None if allow_private else "private"
    return None


def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    """An empty allowlist allows any host; ``*.example.com`` allows subdomains of example.com."""
    if not allowlist:
        return True
    host = host.lower().rstrip(".")
    return any(host == entry or (entry.startswith("*.") and host.endswith(entry[1:])) for entry in allowlist)


def content_type_accepted(content_type: str, accept: tuple[str, ...]) -> bool:
    """``accept`` holds exact types (``image/png``) or prefixes ending in ``/`` (``image/``)."""
    return any(content_type == a or (a.endswith("/") and content_type.startswith(a)) for a in accept)


class SafeFetcher:
    """Fetches a URL under the settings' SSRF policy, size cap, timeout and redirect limit.

    ``resolver`` maps (host, port) to addresses; tests replace it to play DNS.
    """

    def __init__(self, settings: ConnectorSettings, resolver: Resolver = resolve_addresses) -> None:
        self.allowlist = tuple(h.strip().lower() for h in settings.fetch_allowed_hosts.split(",") if h.strip())
        self.allow_private = settings.fetch_allow_private
        self.max_bytes = settings.fetch_max_bytes
        self.timeout = settings.fetch_timeout_seconds
        self.max_redirects = settings.fetch_max_redirects
        self.resolver = resolver

    def fetch(self, url: str, accept: tuple[str, ...]) -> Fetched:
        """GET ``url``; :class:`FetchError` (counted by detail) unless every check passes."""
        try:
            return self._fetch(url, accept)
        except FetchError as error:
            metrics.FETCH_ERRORS.labels(reason=error.detail).inc()
            log.info("fetch %s: %s", error.reason, error)
            raise

    def _fetch(self, url: str, accept: tuple[str, ...]) -> Fetched:
        deadline = time.monotonic() + self.timeout
        for _hop in range(self.max_redirects + 1):
            response = self._request(url, deadline)
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                response.release_conn()
                if not location:
                    raise FetchError(Reason.FETCH_FAILED, "http_status", url, f"HTTP {response.status} without Location")
                url = urljoin(url, location)
                continue
            try:
                return self._read(url, response, accept, deadline)
            finally:
                response.release_conn()
        raise FetchError(Reason.FETCH_REFUSED, "redirects", url, f"more than {self.max_redirects} redirects")

    def _request(self, url: str, deadline: float) -> urllib3.BaseHTTPResponse:
        try:
            parts = urlsplit(url)
        except ValueError as error:  # e.g. "http://[::1": an unclosed IPv6 literal
            raise FetchError(Reason.FETCH_REFUSED, "scheme", url, f"is not a valid URL ({error})") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise FetchError(Reason.FETCH_REFUSED, "scheme", url, f"scheme {parts.scheme!r} is not http or https")
        host = parts.hostname
        if not host:
            raise FetchError(Reason.FETCH_REFUSED, "scheme", url, "has no host")
        if not host_allowed(host, self.allowlist):
            raise FetchError(Reason.FETCH_REFUSED, "host_not_allowed", url, f"host {host!r} is not on the allowlist")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
            addresses = self.resolver(host, port)
        except (OSError, ValueError) as error:
            raise FetchError(Reason.FETCH_FAILED, "dns", url, f"cannot resolve {host!r}: {error}") from None
        for address in addresses:
            refusal = address_refusal(address, self.allow_private)
            if refusal:
                raise FetchError(Reason.FETCH_REFUSED, "address", url, f"{host!r} resolves to {refusal} address {address}")
        if not addresses:
            raise FetchError(Reason.FETCH_FAILED, "dns", url, f"{host!r} resolves to no address")
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        remaining = max(deadline - time.monotonic(), 0.001)
        pool_args = dict(timeout=urllib3.Timeout(connect=remaining, read=remaining), retries=False, maxsize=1)
        if parts.scheme == "https":
            pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                addresses[0], port, server_hostname=host, assert_hostname=host,
                cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(), **pool_args,
            )
        else:
            pool = urllib3.HTTPConnectionPool(addresses[0], port, **pool_args)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            return pool.urlopen(
                "GET", path, headers={"Host": host_header, "User-Agent": "moodshift-connector/1"},
                redirect=False, preload_content=False, assert_same_host=False,
            )
        except urllib3.exceptions.TimeoutError:
            raise FetchError(Reason.FETCH_FAILED, "timeout", url, f"no answer within {self.timeout}s") from None
        except urllib3.exceptions.HTTPError as error:
            raise FetchError(Reason.FETCH_FAILED, "network", url, str(error)) from None

    def _read(self, url: str, response: urllib3.BaseHTTPResponse, accept: tuple[str, ...], deadline: float) -> Fetched:
        if response.status != 200:
            raise FetchError(Reason.FETCH_FAILED, "http_status", url, f"HTTP {response.status}")
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not content_type_accepted(content_type, accept):
            raise FetchError(Reason.FETCH_REFUSED, "content_type", url,
                             f"content type {content_type or 'missing'!r} is not one of {accept}")
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(Reason.OVERSIZED, "oversized", url, f"{declared} bytes declared, cap is {self.max_bytes}")
        body = bytearray()
        try:
            for chunk in response.stream(64 * 1024):
                body += chunk
                if len(body) > self.max_bytes:
                    raise FetchError(Reason.OVERSIZED, "oversized", url, f"body exceeds the cap of {self.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(Reason.FETCH_FAILED, "timeout", url, f"body not complete within {self.timeout}s")
        except urllib3.exceptions.TimeoutError:
            raise FetchError(Reason.FETCH_FAILED, "timeout", url, f"body not complete within {self.timeout}s") from None
        except urllib3.exceptions.HTTPError as error:
            raise FetchError(Reason.FETCH_FAILED, "network", url, str(error)) from None
        return Fetched(bytes(body), content_type, url)
