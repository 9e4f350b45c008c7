"""Safe media fetching: every SSRF refusal, the size cap, the timeout, the content-type check."""

from __future__ import annotations

import pytest

from moodshift.connectors import metrics
from moodshift.connectors.fetch import FetchError, SafeFetcher, address_refusal, host_allowed
from moodshift.connectors.record import Reason
from moodshift.pipeline.settings import Settings

from .standins import Reply, StandIn

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
IMAGES = ("image/",)


def fetcher(**settings) -> SafeFetcher:
    return SafeFetcher(Settings(**{"fetch_allow_private": True, "fetch_timeout_seconds": 1.0, **settings}))


def refusal(fetch: SafeFetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch.fetch(url, IMAGES)
    return caught.value


def test_an_allowed_image_is_fetched(stand_in: StandIn) -> None:
    stand_in.route("/a.png", Reply(body=PNG, headers={"Content-Type": "image/png; charset=binary"}))
    fetched = fetcher().fetch(stand_in.url + "/a.png", IMAGES)
    assert (fetched.data, fetched.content_type) == (PNG, "image/png")
    assert stand_in.seen[0].headers["Host"] == stand_in.url.removeprefix("http://")


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.1", "private"),
    ("172.16.5.5", "private"), ("100.64.0.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("::ffff:169.254.169.254", "link-local"),
    ("0.0.0.0", "reserved"), ("224.0.0.1", "reserved"), ("93.184.216.34", None),
])
def test_address_policy_without_the_private_flag(address: str, why: str | None) -> None:
    assert address_refusal(address, allow_private=False) == why


def test_the_private_flag_never_allows_link_local() -> None:
    assert address_refusal("127.0.0.1", allow_private=True) is None
    assert address_refusal("10.0.0.1", allow_private=True) is None
    assert address_refusal("169.254.169.254", allow_private=True) == "link-local"


def test_loopback_is_refused_without_the_flag_before_connecting(stand_in: StandIn) -> None:
    stand_in.route("/a.png", Reply(body=PNG, headers={"Content-Type": "image/png"}))
    error = refusal(fetcher(fetch_allow_private=False), stand_in.url + "/a.png")
    assert (error.reason, error.detail) == (Reason.FETCH_REFUSED, "address")
    assert "loopback address 127.0.0.1" in str(error)
    assert stand_in.seen == []


def test_a_name_resolving_to_a_private_address_is_refused_whatever_else_it_resolves_to() -> None:
    fetch = SafeFetcher(Settings(), resolver=lambda host, port: ["93.184.216.34", "10.0.0.7"])
    error = refusal(fetch, "https://cdn.example.com/cat.jpg")
    assert "private address 10.0.0.7" in str(error) and error.reason == Reason.FETCH_REFUSED


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "http:///nohost"])
def test_only_http_and_https_urls_with_a_host(url: str) -> None:
    error = refusal(fetcher(), url)
    assert (error.reason, error.detail) == (Reason.FETCH_REFUSED, "scheme")


def test_hosts_off_the_allowlist_are_refused(stand_in: StandIn) -> None:
    assert host_allowed("img.cdn.example.com", ("*.example.com",))
    assert not host_allowed("example.com.evil.net", ("*.example.com",))
    error = refusal(fetcher(fetch_allowed_hosts="media.example.org"), stand_in.url + "/a.png")
    assert error.detail == "host_not_allowed"


def test_each_redirect_hop_is_checked_again(stand_in: StandIn) -> None:
    stand_in.route("/to-metadata", Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}))
    stand_in.route("/to-other-host", Reply(301, headers={"Location": "http://localhost:1/a.png"}))
    stand_in.route("/to-file", Reply(307, headers={"Location": "file:///etc/passwd"}))
    assert "link-local" in str(refusal(fetcher(), stand_in.url + "/to-metadata"))
    assert refusal(fetcher(fetch_allowed_hosts="127.0.0.1"), stand_in.url + "/to-other-host").detail == "host_not_allowed"
    assert refusal(fetcher(), stand_in.url + "/to-file").detail == "scheme"


def test_redirects_are_followed_up_to_the_limit(stand_in: StandIn) -> None:
    stand_in.route("/a.png", Reply(body=PNG, headers={"Content-Type": "image/png"}))
    for hop in range(3):
        stand_in.route(f"/r{hop}", Reply(302, headers={"Location": f"/r{hop + 1}" if hop < 2 else "/a.png"}))
    assert fetcher(fetch_max_redirects=3).fetch(stand_in.url + "/r0", IMAGES).data == PNG
    error = refusal(fetcher(fetch_max_redirects=2), stand_in.url + "/r0")
    assert (error.reason, error.detail) == (Reason.FETCH_REFUSED, "redirects")


def test_oversized_bodies_are_refused_by_declared_and_by_streamed_size(stand_in: StandIn) -> None:
    big = b"\0" * 5_000
    stand_in.route("/declared.png", Reply(body=big, headers={"Content-Type": "image/png"}))
    stand_in.route("/streamed.png", lambda handler: _chunked(handler, big))
    for path in ("/declared.png", "/streamed.png"):
        error = refusal(fetcher(fetch_max_bytes=1_000), stand_in.url + path)
        assert error.reason == Reason.OVERSIZED, path


def _chunked(handler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for start in range(0, len(body), 500):
        chunk = body[start:start + 500]
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    handler.wfile.write(b"0\r\n\r\n")


def test_wrong_or_missing_content_types_are_refused(stand_in: StandIn) -> None:
    stand_in.route("/page", Reply(body="<html>", headers={"Content-Type": "text/html"}))
    stand_in.route("/none", Reply(body=PNG))
    for path in ("/page", "/none"):
        error = refusal(fetcher(), stand_in.url + path)
        assert (error.reason, error.detail) == (Reason.FETCH_REFUSED, "content_type")


def test_slow_servers_and_errors_fail_the_fetch_and_are_counted(stand_in: StandIn) -> None:
    before = metrics.FETCH_ERRORS.labels(reason="timeout")._value.get()
    stand_in.route("/slow.png", Reply(body=PNG, headers={"Content-Type": "image/png"}, delay=1.5))
    stand_in.route("/gone.png", Reply(404))
    assert refusal(fetcher(fetch_timeout_seconds=0.5), stand_in.url + "/slow.png").detail == "timeout"
    assert metrics.FETCH_ERRORS.labels(reason="timeout")._value.get() == before + 1
    error = refusal(fetcher(), stand_in.url + "/gone.png")
    assert (error.reason, error.detail) == (Reason.FETCH_FAILED, "http_status")
