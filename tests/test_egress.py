"""Webhook egress: user-given URLs reach only the public internet unless the operator allows
private targets, the check holds at send time (DNS rebinding), and a real local receiver gets
a signed event when private targets are allowed."""

import ipaddress
import socket

import pytest

from core.config import ApiSettings, Settings
from core.errors import BadInput, TransientError
from store.db import session_scope
from store.schema import READY, Video, Webhook
from web.live import WebhookReceiver, make_key
from workers import egress, webhooks

REFUSED = [
    "http://127.0.0.1:6379/", "http://localhost:5432/", "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://metadata/",
    "http://instance-data/latest/", "http://0x7f000001/", "http://2130706433/",
    "http://0177.0.0.1/", "http://127.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/", "http://[::127.0.0.1]/", "http://[2002:7f00:1::]/",
    "http://[64:ff9b::a9fe:a9fe]/", "http://10.0.0.5/", "http://172.16.3.4/",
    "http://192.168.1.1/", "http://100.64.0.1/", "http://[fc00::1]/", "http://[fd00:ec2::254]/",
    "http://[fe80::1]/", "http://0.0.0.0/", "http://0/", "http://[::]/", "http://224.0.0.1/",
    "http://[ff02::1]/", "http://240.0.0.1/", "http://255.255.255.255/", "http://198.18.0.1/",
    "http://192.0.2.1/", "http://foo.localhost/", "http://db.internal/", "http://printer.local/",
    "http://LOCALHOST./", "http://127.0.0.1.:8080/", "http://0x7f.1/", "http://0x7f.0.0.1/",
    "ftp://93.184.216.34/", "file:///etc/passwd", "gopher://93.184.216.34/",
    "http://user:pw@93.184.216.34/", "http://93.184.216.34@127.0.0.1/",
    "http://999.1.1.1/", "http://08.1.1.1/", "http:///nohost", "http://93.184.216.34:99999/",
    "http://93.184.216.34/a b", "http://93.184.216.34/\r\nX: y",
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_metadata_and_odd_urls_are_refused(url):
    with pytest.raises(BadInput):
        egress.check(url)


@pytest.mark.parametrize("host, ip", [
    ("0x7f000001", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"), ("10.1", "10.0.0.1"), ("192.168.257", "192.168.1.1"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254")])
def test_numeric_hosts_read_as_inet_aton_does(host, ip):
    assert egress._literal(host) == ipaddress.ip_address(ip)
    assert socket.inet_ntoa(socket.inet_aton(host)) == ip        # the libc agrees


def test_metadata_stays_refused_when_private_targets_are_allowed():
    for url in ("http://169.254.169.254/", "http://metadata.google.internal/",
                "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/"):
        with pytest.raises(BadInput, match="metadata"):
            egress.check(url, allow_private=True)
    assert egress.check("http://127.0.0.1:8080/hook", allow_private=True).port == 8080


@pytest.mark.parametrize("url", ["http://93.184.216.34/hook?x=1", "https://93.184.216.34",
                                 "http://[2606:2800:220:1:248:1893:25c8:1946]:8443/"])
def test_public_literal_ip_is_allowed_without_dns(url, monkeypatch):
    def no_dns(*args, **kwargs):
        raise AssertionError("a literal IP needs no DNS")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    target = egress.check(url)
    assert [str(a) for a in target.addresses] == [target.host]
    assert target.path.startswith("/")


def test_a_name_that_resolves_to_loopback_is_refused():
    with pytest.raises(BadInput, match="not a public address|local name"):
        egress.check("http://localhost/")
    assert all(a.is_loopback for a in egress.check("http://localhost/", allow_private=True)
               .addresses)


def _fake_dns(monkeypatch, answers: dict[str, list[str]]):
    """The resolver at the network edge: named hosts get the given answers, in turn."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            ips = answers[host].pop(0) if isinstance(answers[host][0], list) else answers[host]
            return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6,
                     "", (ip, port)) for ip in ips]
        return real(host, port, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_every_resolved_address_must_be_public(monkeypatch):
    _fake_dns(monkeypatch, {"mixed.example": ["93.184.216.34", "10.0.0.1"],
                            "public.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    with pytest.raises(BadInput, match="10.0.0.1"):
        egress.check("https://mixed.example/hook")
    assert len(egress.check("https://public.example/hook").addresses) == 2


def test_unresolvable_host_is_a_clear_bad_input(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(BadInput, match="does not resolve"):
        egress.check("https://nowhere.example/")


def _video_with_hook(settings: Settings, url: str) -> str:
    make_key(settings, "acme")
    with session_scope(settings) as s:
        s.add(Video(id="v1", tenant="acme", filename="a.mp4", path="/nonexistent/a.mp4",
                    status=READY, notes=[]))
        s.flush()
        s.add(Webhook(video_id="v1", url=url))
    return "v1"


def test_rebinding_between_check_and_send_is_refused(sqlite_settings, monkeypatch):
    # Public when the URL was registered, loopback when the event is sent.
    _fake_dns(monkeypatch, {"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    egress.check("http://rebind.example/hook")
    vid = _video_with_hook(sqlite_settings, "http://rebind.example/hook")

    def no_connect(*args):
        raise AssertionError("a refused target is never connected to")
    monkeypatch.setattr(egress, "_connect", no_connect)
    assert webhooks.deliver(sqlite_settings, vid, READY) is False        # final, no retry
    with session_scope(sqlite_settings) as s:
        assert "127.0.0.1" in s.get(Webhook, vid).last_error


def test_refused_connection_of_a_public_target_is_transient(sqlite_settings, monkeypatch):
    vid = _video_with_hook(sqlite_settings, "http://93.184.216.34/hook")

    def refused(*args):
        raise ConnectionRefusedError(111, "Connection refused")
    monkeypatch.setattr(egress, "_connect", refused)
    with pytest.raises(TransientError):
        webhooks.deliver(sqlite_settings, vid, READY)


def test_signed_webhook_reaches_a_local_receiver_when_allowed(sqlite_settings):
    receiver = WebhookReceiver()
    try:
        secret = make_key(sqlite_settings, "acme")[1]
        vid = _video_with_hook(sqlite_settings, receiver.url + "?a=1")
        with pytest.raises(BadInput):                    # the default refuses loopback
            egress.check(receiver.url)
        assert webhooks.deliver(sqlite_settings, vid, READY) is False
        assert not receiver.received

        settings = sqlite_settings.model_copy(update={"api": ApiSettings(
            webhook_allow_private=True)})
        assert webhooks.deliver(settings, vid, READY, first_attempt=False) is True
        (path, headers, body), = receiver.received
        assert path == "/hook?a=1" and headers["Host"] == receiver.url.split("/")[2]
        assert webhooks.verify(secret, headers[webhooks.SIGNATURE_HEADER], body)
        assert webhooks.json.loads(body)["event"] == "video.ready"
    finally:
        receiver.close()
