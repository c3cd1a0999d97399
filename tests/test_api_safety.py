"""Issue 12 through the HTTP API: webhook targets refused at registration (SSRF), media served
as what probe found and never as the uploaded name says, the page's CSP, media URLs bound
to their video and tenant, a search storm answered with 503 + Retry-After, and /healthz
answering while every search slot is held."""

import socket
import time

import pytest
from fastapi.testclient import TestClient

import badfiles
from api.http import create_app
from api.media_tokens import media_token, server_secret
from core.config import Settings
from web.live import make_key

REFUSED = ["http://127.0.0.1:6379/", "http://localhost:5432/", "http://169.254.169.254/latest",
           "http://metadata.google.internal/computeMetadata/v1/", "http://0x7f000001/",
           "http://[::1]/", "http://loopback.example/hook"]


@pytest.fixture
def app_settings(pg_url, tmp_path) -> Settings:
    settings = Settings(home=tmp_path / "home", database_url=pg_url)
    # Nothing here needs the index: keep the background indexing thread cheap.
    settings.speech.enabled = settings.ocr.enabled = settings.visual.enabled = False
    return settings


@pytest.fixture
def client(app_settings) -> TestClient:
    key, _ = make_key(app_settings, "alpha")
    with TestClient(create_app(app_settings), headers={"X-API-Key": key}) as c:
        yield c


@pytest.mark.parametrize("url", REFUSED)
def test_webhook_to_private_or_metadata_target_is_refused_at_registration(client, url,
                                                                          monkeypatch):
    real = socket.getaddrinfo

    def loopback_dns(host, *args, **kwargs):      # a public-looking name that is loopback
        return real("127.0.0.1" if host == "loopback.example" else host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", loopback_dns)
    r = client.post("/v1/videos", files={"file": ("a.mp4", b"x", "video/mp4")},
                    data={"webhook_url": url})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "webhook_refused"
    assert "webhook_url" in r.json()["error"]["message"]
    assert client.get("/v1/videos").json()["videos"] == []


@pytest.mark.parametrize("name", ["x.html", "x.svg"])
def test_html_appended_to_mp4_is_served_as_video(client, app_settings, tmp_path, name):
    data = badfiles.html_after_mp4(tmp_path).read_bytes()
    r = client.post("/v1/videos", files={"file": (name, data, "text/html")})
    assert r.status_code == 202, r.text
    media = client.get(f"/v1/videos/{r.json()['id']}/media")
    assert media.status_code == 200
    assert media.headers["content-type"] == "video/mp4"
    assert media.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in media.headers["content-security-policy"]
    assert media.headers["content-disposition"].startswith('inline; filename="x.')
    assert media.headers["content-disposition"].endswith('.mp4"')


def test_media_url_is_short_lived_and_bound_to_video_and_tenant(client, app_settings):
    data = (badfiles.MEDIA / "his_girl_friday_6s.mp4").read_bytes()
    video = client.post("/v1/videos", files={"file": ("c.mp4", data, "video/mp4")}).json()
    expires = int(video["media_url"].split("token=")[1].split(".")[0])
    assert expires - time.time() <= app_settings.api.media_url_ttl_s <= 15 * 60
    anon = TestClient(client.app)
    assert anon.get(video["media_url"]).status_code == 200
    secret = server_secret(app_settings, app_settings.api)
    forged = media_token(secret, video["id"], "beta", int(time.time()) + 60)   # other tenant
    assert anon.get(f"/v1/videos/{video['id']}/media?token={forged}").status_code == 401


def test_web_page_and_its_files_carry_the_csp(client):
    for path in ("/", "/static/app.js", "/static/style.css"):
        r = client.get(path)
        assert r.status_code == 200
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"


def test_directory_or_device_is_named_in_the_media_route(client, app_settings, tmp_path):
    data = (badfiles.MEDIA / "his_girl_friday_6s.mp4").read_bytes()
    video = client.post("/v1/videos", files={"file": ("d.mp4", data, "video/mp4")}).json()
    from store import queries
    from store.db import session_scope
    with session_scope(app_settings) as s:
        queries.get_video(s, video["id"]).path = str(tmp_path)
    r = client.get(f"/v1/videos/{video['id']}/media")
    assert r.status_code == 404 and "is a directory" in r.json()["error"]["message"]


def test_full_search_slots_answer_503_with_retry_after_and_healthz_stays_fast(client):
    """Every slot held and the queue full: a search gets 503 + Retry-After at once, and
    /healthz answers without waiting."""
    limiter = _full_limiter(client)
    try:
        started = time.perf_counter()
        r = client.get("/v1/search", params={"q": "anything"})
        assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
        assert time.perf_counter() - started < limiter.wait_s + 1
        client.get("/healthz")                              # first check fills the cache
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        assert time.perf_counter() - started < 1.0
    finally:
        limiter.active = 0


def _full_limiter(client: TestClient):
    from api.limits import search_limiter
    state = client.app.state
    state.search_limiter = limiter = search_limiter(state.api_settings)
    limiter.active, limiter.max_waiting = limiter.limit, 0
    return limiter
