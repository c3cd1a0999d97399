"""The HTTP API over a real socket, on Postgres, in the embedded mode (no broker: uploads
are indexed by the server's own background thread): upload, status, search, segments,
captions, media with ranges, webhooks, tenancy, limits, metrics, and a bounded schemathesis
run over the served OpenAPI document that must find no 5xx."""

import hashlib
import io
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from core.config import ApiSettings
from api.http import create_app
from core.config import Settings
from web.live import WebhookReceiver, make_key, scratch_database, serve, wait_for
from workers import webhooks

CLIP = "his_girl_friday_6s.mp4"
UPLOAD_LIMIT_MB = 2
# The fuzzer invents webhook URLs: only loopback may ever be called from a test.
LOOPBACK = "127.0.0.1,localhost"


@pytest.fixture(scope="module")
def service(pg_template, tmp_path_factory, media):
    """One server for the module; tenants alpha and beta each upload the same clip, so the
    same words live in two tenants' videos."""
    home = tmp_path_factory.mktemp("api") / "home"
    receiver = WebhookReceiver()
    with scratch_database(pg_template) as url:
        settings = Settings(home=home, database_url=url)
        settings.api.webhook_allow_private = True       # the receiver is on loopback
        # Two chunks (the second a 167 ms tail): whole phrases, and quick.
        settings.chunk.length_s, settings.chunk.overlap_s = 6.0, 1.0
        app = create_app(settings, ApiSettings(max_upload_mb=UPLOAD_LIMIT_MB,
                                                     webhook_hosts=LOOPBACK))
        with serve(app) as base:
            keys = {t: make_key(settings, t) for t in ("alpha", "beta")}
            clients = {t: httpx.Client(base_url=base, timeout=60,
                                       headers={"Authorization": f"Bearer {k}"})
                       for t, (k, _) in keys.items()}
            videos = {}
            for tenant, client in clients.items():
                with open(media / CLIP, "rb") as f:
                    r = client.post("/v1/videos", files={"file": (CLIP, f, "video/mp4")},
                                    data={"webhook_url": receiver.url})
                assert r.status_code == 202, r.text
                videos[tenant] = r.json()["id"]
            for tenant, client in clients.items():
                url = f"/v1/videos/{videos[tenant]}"
                wait_for(lambda c=client, u=url: c.get(u).json()["status"] in ("ready", "failed"),
                         timeout=180, what=f"{tenant}'s video")
            yield dict(base=base, settings=settings, keys=keys, clients=clients,
                       videos=videos, receiver=receiver, anon=httpx.Client(base_url=base))
            for client in clients.values():
                client.close()
    receiver.close()


def spoken(client: httpx.Client, video_id: str) -> dict:
    """The video's longest speech segment that does not start at 0: what a search for its
    own words must find (whatever the speech model heard)."""
    said = [s for s in client.get(f"/v1/videos/{video_id}/segments",
                                  params={"kind": "speech"}).json()["segments"]
            if s["start"] > 1.0]
    assert said, "the clip has speech after its first second"
    return max(said, key=lambda s: len(s["text"]))


def test_uploaded_video_is_indexed_and_found(service):
    alpha, vid = service["clients"]["alpha"], service["videos"]["alpha"]
    v = alpha.get(f"/v1/videos/{vid}").json()
    assert v["status"] == "ready", v["error"]
    assert v["progress"] == 100.0 and v["chunks_done"] == v["chunks_total"] == 2
    assert v["eta_s"] is None and 6.0 <= v["duration"] <= 6.4
    assert {"speech", "screen_text"} <= {s["signal"] for s in v["signals"]}
    listed = {x["id"]: x for x in alpha.get("/v1/videos").json()["videos"]}
    assert listed[vid]["signals"] == v["signals"]
    said = spoken(alpha, vid)
    r = alpha.get("/v1/search", params={"q": said["text"], "k": 3})
    assert r.status_code == 200
    top = r.json()["moments"][0]
    assert top["video_id"] == vid and top["filename"] == CLIP
    assert top["start"] <= said["start"] < said["end"] <= top["end"] <= v["duration"]
    assert said["text"] in [seg["text"] for seg in top["segments"]]


def test_same_content_again_returns_the_existing_video(service, media):
    alpha, vid = service["clients"]["alpha"], service["videos"]["alpha"]
    with open(media / CLIP, "rb") as f:
        r = alpha.post("/v1/videos", files={"file": ("renamed.mp4", f, "video/mp4")})
    assert r.status_code == 200 and r.json()["id"] == vid
    assert r.headers["location"] == f"/v1/videos/{vid}"
    assert [v["id"] for v in alpha.get("/v1/videos").json()["videos"]] == [vid]
    stored = service["settings"].media_dir / "alpha"
    assert [p.name for p in stored.iterdir()] == [
        hashlib.sha256((media / CLIP).read_bytes()).hexdigest() + ".mp4"]
    assert not any((service["settings"].media_dir / ".incoming").iterdir())


def test_webhook_is_signed_with_the_tenants_secret(service):
    receiver, vid = service["receiver"], service["videos"]["alpha"]
    secret = service["keys"]["alpha"][1]
    wait_for(lambda: any(e["video"]["id"] == vid for e in receiver.events()), timeout=30,
             what="the webhook")
    [(path, headers, body)] = [r for r in receiver.received
                               if webhooks.json.loads(r[2])["video"]["id"] == vid]
    event = webhooks.json.loads(body)
    assert event["event"] == "video.ready" and event["video"]["status"] == "ready"
    signature = headers[webhooks.SIGNATURE_HEADER]
    assert webhooks.verify(secret, signature, body)
    assert not webhooks.verify(secret, signature, body.replace(b"ready", b"failed"))
    assert not webhooks.verify(service["keys"]["beta"][1], signature, body)
    assert not webhooks.verify(secret, signature, body, now=time.time() + 3600)   # replay


def test_a_tenant_never_sees_another_tenants_video(service):
    alpha, beta = service["clients"]["alpha"], service["clients"]["beta"]
    a, b = service["videos"]["alpha"], service["videos"]["beta"]
    for path in ("", "/summary", "/segments", "/captions.vtt", "/captions.json", "/media"):
        assert beta.get(f"/v1/videos/{a}{path}").status_code == 404, path
        assert alpha.get(f"/v1/videos/{b}{path}").status_code == 404, path
    assert beta.delete(f"/v1/videos/{a}").status_code == 404
    assert [v["id"] for v in beta.get("/v1/videos").json()["videos"]] == [b]
    # The same words are in both videos: each tenant finds only its own.
    words = spoken(alpha, a)["text"]
    for client, own in ((alpha, a), (beta, b)):
        moments = client.get("/v1/search", params={"q": words, "k": 50}).json()["moments"]
        assert moments and {m["video_id"] for m in moments} == {own}
    # another tenant's video named in a filter is no video at all, as in a path
    assert beta.get("/v1/search", params={"q": words, "video": a}).status_code == 404
    assert beta.get("/v1/search", params={"q": words, "video": a[:6]}).status_code == 404
    assert beta.get("/v1/search", params={"like": f"{a[:6]}@2"}).status_code == 404
    assert alpha.get(f"/v1/videos/{a}").status_code == 200     # still there


def test_every_v1_request_needs_a_valid_key(service):
    anon, a = service["anon"], service["videos"]["alpha"]
    for path in ("/v1/videos", f"/v1/videos/{a}", "/v1/search?q=x", f"/v1/videos/{a}/media"):
        r = anon.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
    assert anon.get("/v1/videos", headers={"X-API-Key": "cs_not-a-key"}).status_code == 401
    key = service["keys"]["alpha"][0]
    assert anon.get("/v1/videos", headers={"X-API-Key": key}).status_code == 200
    assert anon.get("/healthz").json() == {"status": "ok", "database": "ok",
                                           "broker": "in-process"}


def test_segments_and_captions(service):
    alpha, vid = service["clients"]["alpha"], service["videos"]["alpha"]
    everything = alpha.get(f"/v1/videos/{vid}/segments").json()["segments"]
    assert everything and everything == sorted(everything, key=lambda s: (s["start"], s["end"]))
    window = alpha.get(f"/v1/videos/{vid}/segments",
                       params={"start": 3, "end": 6, "kind": "speech"}).json()["segments"]
    assert window and all(s["kind"] == "speech" and s["end"] > 3 and s["start"] < 6
                          for s in window)
    assert alpha.get(f"/v1/videos/{vid}/segments", params={"start": 5, "end": 2}).status_code == 422
    for absurd in ("nan", "-inf", "1e300"):       # parse as floats; no time is one
        assert alpha.get(f"/v1/videos/{vid}/segments", params={"end": absurd}).status_code == 422
        assert alpha.get("/v1/search", params={"q": "x", "start": absurd}).status_code == 422
    assert alpha.get(f"/v1/videos/{vid}/segments", params={"kind": "smell"}).status_code == 422
    vtt = alpha.get(f"/v1/videos/{vid}/captions.vtt")
    assert vtt.headers["content-type"].startswith("text/vtt") and vtt.text.startswith("WEBVTT")
    srt = alpha.get(f"/v1/videos/{vid}/captions.srt")
    assert srt.headers["content-type"].startswith("application/x-subrip") and " --> " in srt.text
    js = alpha.get(f"/v1/videos/{vid}/captions.json").json()
    assert js["video_id"] == vid and len(js["segments"]) == len(everything)
    assert alpha.get(f"/v1/videos/{vid}/captions.txt").status_code == 422
    summary = alpha.get(f"/v1/videos/{vid}/summary").json()
    assert summary["chapters"] and summary["chapters"][0]["start"] == 0
    thumb = alpha.get(summary["chapters"][0]["thumbnail"])        # the keyframe it opens on
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_segments_come_in_pages_that_join_into_the_whole_list(service):
    alpha, vid = service["clients"]["alpha"], service["videos"]["alpha"]
    whole = alpha.get(f"/v1/videos/{vid}/segments").json()
    assert whole["next_page_token"] is None and len(whole["segments"]) >= 2
    pages, token = [], None
    while True:
        page = alpha.get(f"/v1/videos/{vid}/segments",
                         params={"limit": 1, **({"page_token": token} if token else {})}).json()
        pages.append(page["segments"])
        token = page["next_page_token"]
        if token is None:
            break
    assert [s for p in pages for s in p] == whole["segments"]
    assert all(len(p) == 1 for p in pages)


def test_search_pages_walk_the_k_best_moments(service):
    alpha, vid = service["clients"]["alpha"], service["videos"]["alpha"]
    params = {"q": spoken(alpha, vid)["text"], "k": 4}
    whole = alpha.get("/v1/search", params=params).json()
    assert whole["next_page_token"] is None and len(whole["moments"]) >= 2
    first = alpha.get("/v1/search", params={**params, "limit": 1}).json()
    assert first["moments"] == whole["moments"][:1] and first["next_page_token"]
    second = alpha.get("/v1/search", params={**params, "limit": 1,
                                              "page_token": first["next_page_token"]}).json()
    assert second["moments"] == whole["moments"][1:2]
    # The token is bound to its query: another query, k or tenant refuses it.
    for client, changed in ((alpha, {**params, "q": "something else"}),
                            (alpha, {**params, "k": 5}), (service["clients"]["beta"], params)):
        r = client.get("/v1/search", params={**changed, "page_token": first["next_page_token"]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_page_token"


def test_video_pages_follow_a_cursor_that_new_rows_do_not_shift(service, media, tmp_path):
    """Tenant gamma's videos are added straight to the database (not indexed: only listed)."""
    from indexer import pipeline
    settings = service["settings"]
    key, _ = make_key(settings, "gamma")
    data = (media / CLIP).read_bytes()

    def add(i: int) -> str:
        path = tmp_path / f"copy{i}.mp4"
        path.write_bytes(data + bytes([i]))     # another sha256: another video
        return pipeline.add_video(settings, path, tenant="gamma", filename=path.name)

    ids = [add(i) for i in range(3)]
    with httpx.Client(base_url=service["base"], headers={"X-API-Key": key}) as gamma:
        first = gamma.get("/v1/videos", params={"limit": 2}).json()
        assert [v["id"] for v in first["videos"]] == ids[:2]
        ids.append(add(3))                      # a new row between two pages
        rest = gamma.get("/v1/videos", params={"limit": 2,
                                              "page_token": first["next_page_token"]}).json()
        assert [v["id"] for v in rest["videos"]] == ids[2:] and rest["next_page_token"] is None
        token = first["next_page_token"]
        payload, mac = token.split(".")
        for bad in (token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "garbage",
                    f"{payload[:-1]}x.{mac}"):
            r = gamma.get("/v1/videos", params={"page_token": bad})
            assert r.status_code == 400, bad
            assert r.json()["error"]["code"] == "invalid_page_token"
        # alpha's list token is not gamma's, nor a segments token
        r = service["clients"]["alpha"].get("/v1/videos", params={"page_token": token})
        assert r.status_code == 400
        for vid in ids:
            assert gamma.delete(f"/v1/videos/{vid}").status_code == 204


def test_every_error_has_one_body_with_a_stable_code(service):
    alpha, anon = service["clients"]["alpha"], service["anon"]
    cases = [(anon.get("/v1/videos"), 401, "unauthorized"),
             (alpha.get("/v1/videos/nope"), 404, "not_found"),
             (alpha.get("/v1/nowhere"), 404, "not_found"),
             (alpha.patch("/v1/videos"), 405, "method_not_allowed"),
             (alpha.get("/v1/videos", params={"limit": 0}), 422, "validation_error"),
             (alpha.get("/v1/search", params={"q": "x", "k": 1001}), 422, "validation_error"),
             (alpha.get("/v1/search"), 422, "validation_error"),
             (alpha.get(f"/v1/videos/{service['videos']['alpha']}/media",
                        headers={"Range": "bytes=999999999-"}), 416, "range_not_satisfiable")]
    for r, status, code in cases:
        assert r.status_code == status, (r.request.url, r.text)
        body = r.json()
        assert set(body) == {"error"} and body["error"]["code"] == code, body
        assert body["error"]["message"]
    details = cases[4][0].json()["error"]["details"]
    assert details == [{"where": "query.limit", "message": details[0]["message"]}]


def test_media_serves_byte_ranges_to_a_key_or_a_signed_url(service, media):
    alpha, anon, vid = service["clients"]["alpha"], service["anon"], service["videos"]["alpha"]
    data = (media / CLIP).read_bytes()
    r = alpha.get(f"/v1/videos/{vid}/media", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == data[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert r.headers["content-type"] == "video/mp4"
    media_url = alpha.get(f"/v1/videos/{vid}").json()["media_url"]
    whole = anon.get(media_url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert anon.get(media_url[:-4] + "0000").status_code == 401       # tampered token
    b = service["videos"]["beta"]
    assert anon.get(media_url.replace(vid, b)).status_code == 401      # token of another video


def test_upload_limits_and_bad_files(service, tmp_path):
    alpha, settings = service["clients"]["alpha"], service["settings"]
    big = io.BytesIO(b"\0" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 1))
    r = alpha.post("/v1/videos", files={"file": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413
    r = alpha.post("/v1/videos", files={"file": ("notes.mp4", b"just some text", "video/mp4")})
    assert r.status_code == 422 and "notes.mp4" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "invalid_video"
    assert alpha.post("/v1/videos", data={"webhook_url": "http://x"}).status_code in (415, 422)
    r = alpha.post("/v1/videos", files={"other": ("a.mp4", b"x", "video/mp4")})
    assert r.status_code == 422
    assert alpha.post("/v1/videos", content=b"raw", headers={
        "Content-Type": "video/mp4"}).status_code == 415
    r = alpha.post("/v1/videos", files={"file": ("a.mp4", b"x", "video/mp4")},
                   data={"webhook_url": "file:///etc/passwd"})
    assert r.status_code == 422
    # Nothing half-written stays behind, and no video was created.
    assert not any((settings.media_dir / ".incoming").iterdir())
    assert len(alpha.get("/v1/videos").json()["videos"]) == 1


def test_metrics(service):
    anon = service["anon"]
    service["clients"]["alpha"].get(f"/v1/videos/{service['videos']['alpha']}")
    text = anon.get("/metrics").text
    assert 'chronoscope_http_requests_total{method="GET",route="/v1/videos/{video_id}",' \
           'status="200"}' in text
    assert 'chronoscope_videos{status="ready"} 2.0' in text
    assert "chronoscope_upload_bytes_total" in text


# Requests the schema calls valid that the server may still refuse, with a code that says
# why, because what decides it is beyond a schema: a page_token that this server did not
# issue (400 invalid_page_token); bytes that are not a video or an image, q and like
# together, start after end, grounding without a checkpoint (422); a webhook host that may
# not be called (400). Everywhere else a valid request must succeed.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
REFUSABLE = {("/v1/videos", "POST"), ("/v1/videos", "GET"),
             ("/v1/videos/{video_id}/segments", "GET"), ("/v1/search", "GET"),
             ("/v1/search", "POST")}
FUZZ = SchemathesisConfig.from_dict({"operations": [
    {"include-path": path, "include-method": method,
     "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + ["400", "422"]}}}
    for path, method in sorted(REFUSABLE)]})
# The document the server serves (the live one is compared with it below); cases are
# generated from it at collection and sent to the live server over HTTP.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi(), config=FUZZ)


def test_served_openapi_document_is_the_fuzzed_one(service):
    assert service["anon"].get("/openapi.json").json() == schema.raw_schema


load_all_checks()


@schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))
def test_openapi_fuzz_passes_every_check(case, service):
    # Every schemathesis check: no 5xx; every status, content type, header and body as
    # documented; invalid input refused and valid input accepted; auth not ignored.
    case.call_and_validate(base_url=service["base"], checks=CHECKS.get_all(),
                           headers={"Authorization": f"Bearer {service['keys']['alpha'][0]}"})


def test_embedded_server_finishes_what_it_left_unfinished(sqlite_settings, media, tmp_path):
    """No broker: a video left queued by a stopped server is indexed when it starts again."""
    from indexer import pipeline
    settings = sqlite_settings
    settings.chunk.length_s = 6.0
    (tmp_path / CLIP).write_bytes((media / CLIP).read_bytes())
    vid = pipeline.add_video(settings, tmp_path / CLIP, tenant="resume")
    key, _ = make_key(settings, "resume")
    with serve(create_app(settings)) as base, httpx.Client(
            base_url=base, headers={"X-API-Key": key}) as client:
        wait_for(lambda: client.get(f"/v1/videos/{vid}").json()["status"] == "ready",
                 timeout=120, what="the unfinished video")
        assert client.get(f"/v1/videos/{vid}/segments").json()["segments"]


def test_delete_removes_rows_vectors_and_file(service):
    beta, vid = service["clients"]["beta"], service["videos"]["beta"]
    stored = list((service["settings"].media_dir / "beta").iterdir())
    assert len(stored) == 1
    words = spoken(beta, vid)["text"]
    assert beta.get("/v1/search", params={"q": words}).json()["moments"]
    assert beta.delete(f"/v1/videos/{vid}").status_code == 204
    assert beta.get(f"/v1/videos/{vid}").status_code == 404
    assert beta.get("/v1/videos").json() == {"videos": [], "next_page_token": None}
    assert beta.get("/v1/search", params={"q": words}).json()["moments"] == []
    assert not stored[0].exists()
    # alpha's copy of the same content is untouched
    alpha_vid = service["videos"]["alpha"]
    assert service["clients"]["alpha"].get(f"/v1/videos/{alpha_vid}/media").status_code == 200


def _closed_port_url() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/chronoscope"


def test_database_outage_answers_503_with_retry_after(tmp_path, monkeypatch):
    """A database that cannot be reached is an outage (503, retry later), never a 500; and a
    task meeting it raises TransientError, which its decorator retries."""
    from fastapi.testclient import TestClient

    from core.config import get_settings
    from core.errors import TransientError
    from workers import tasks
    url = _closed_port_url()
    settings = Settings(home=tmp_path / "home", database_url=url)
    client = TestClient(create_app(settings), raise_server_exceptions=False)  # no lifespan
    r = client.get("/v1/videos", headers={"X-API-Key": "cs_whatever"})
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit(), r.text
    assert r.json()["error"]["code"] == "unavailable"
    assert "database" in r.json()["error"]["message"]
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["database"].startswith("down")
    monkeypatch.setenv("CHRONOSCOPE_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        with pytest.raises(TransientError):
            tasks.plan("0123456789abcdef")
    finally:
        get_settings.cache_clear()
