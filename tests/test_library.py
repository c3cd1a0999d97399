"""One library model from the command line: tenants explicit (--tenant, CHRONOSCOPE_TENANT),
ids a person can type (unique prefixes everywhere, in the CLI and the HTTP API), API keys
listed and revoked. Real CLI processes on one data directory, a real server on it."""

import json

import httpx
import pytest

from core.config import Settings
from core.errors import AmbiguousId, NotFound
from store import queries
from store.db import session_scope
from store.schema import FAILED, PROCESSING, QUEUED, READY, Video
from test_cli import run
from web.live import serve

CLIP = "his_girl_friday_6s.mp4"


@pytest.fixture(scope="module")
def library(media, tmp_path_factory):
    """The same clip indexed by two tenants (two videos), and two of alpha's rows whose ids
    share a prefix, so a short prefix is ambiguous."""
    home = tmp_path_factory.mktemp("library") / "home"
    alpha = json.loads(run(home, "index", str(media / CLIP), "--tenant", "alpha",
                           "--json").stdout)
    beta = json.loads(run(home, "index", str(media / CLIP), "--json",
                          env={"CHRONOSCOPE_TENANT": "beta"}).stdout)
    with session_scope(Settings(home=home)) as s:
        for vid in ("feed0001", "feed0002"):
            s.add(Video(id=vid, tenant="alpha", filename=f"{vid}.mp4", path="/nowhere",
                        status=READY, notes=[]))
    return home, alpha, beta


def test_tenants_are_explicit_and_isolated(library):
    home, alpha, beta = library
    assert alpha["id"] != beta["id"]
    assert (alpha["tenant"], beta["tenant"]) == ("alpha", "beta")
    listed = json.loads(run(home, "list", "--tenant", "beta", "--json").stdout)
    assert [v["id"] for v in listed] == [beta["id"]]
    human = run(home, "list", "--all").stdout.splitlines()
    assert any(line.startswith(beta["id"]) and " beta " in line for line in human)
    assert len(human) == 4
    assert run(home, "list").stdout.strip() == "no videos in tenant default"
    # another tenant's video does not exist, by full id or prefix: no leak
    for ref in (alpha["id"], alpha["id"][:8]):
        proc = run(home, "status", ref, "--tenant", "beta", check=False)
        assert proc.returncode == 1 and "no video with id" in proc.stderr
    hits = json.loads(run(home, "search", "somebody stole the crown jewels", "--tenant",
                          "beta", "--json").stdout)
    assert hits and {h["video_id"] for h in hits} == {beta["id"]}
    leak = run(home, "search", "crown jewels", "--tenant", "beta", "--video",
               alpha["id"][:8], check=False)
    assert leak.returncode == 1 and "no video with id" in leak.stderr
    assert run(home, "index", "x.mp4", "--tenant", "../etc", check=False).returncode == 2


def test_unique_prefixes_work_and_ambiguous_ones_list_candidates(library):
    home, alpha, _ = library
    short = alpha["id"][:6]
    for args in (["status", short], ["segments", short], ["summary", short],
                 ["export", short, "--format", "json"]):
        proc = run(home, *args, "--tenant", "alpha", *(["--json"] if args[0] != "export"
                                                       else []))
        assert alpha["id"] in proc.stdout or proc.stdout.strip().startswith(("[", "{")), args
    assert json.loads(run(home, "status", short, "--tenant", "alpha", "--json").stdout)[
        "id"] == alpha["id"]
    hits = json.loads(run(home, "search", "crown jewels", "--tenant", "alpha", "--video",
                          alpha["id"][:8], "--json").stdout)
    assert hits and all(h["video_id"] == alpha["id"] for h in hits)
    # the 8 characters a search line prints are accepted back
    printed = run(home, "search", "crown jewels", "--tenant", "alpha", "-k", "1").stdout
    assert printed.split()[1] == alpha["id"][:8]
    ambiguous = run(home, "status", "feed", "--tenant", "alpha", check=False)
    assert ambiguous.returncode == 2
    assert "feed0001 (feed0001.mp4)" in ambiguous.stderr and "feed0002" in ambiguous.stderr
    assert json.loads(run(home, "status", "feed0002", "--tenant", "alpha",
                          "--json").stdout)["id"] == "feed0002"
    too_short = run(home, "status", alpha["id"][:3], "--tenant", "alpha", check=False)
    assert too_short.returncode == 1 and "at least 4 characters" in too_short.stderr


def test_keys_list_revoke_and_prefixes_over_http(library):
    home, alpha, beta = library
    created = json.loads(run(home, "keys", "create", "alpha", "--json").stdout)
    listed = json.loads(run(home, "keys", "list", "--tenant", "alpha", "--json").stdout)
    assert len(listed) == 1 and listed[0]["tenant"] == "alpha"
    assert created["key"].startswith(listed[0]["prefix"])
    assert created["key"] not in json.dumps(listed)          # never the secret
    assert listed[0]["last_used_at"] is None and listed[0]["revoked_at"] is None
    with serve(_app(home)) as base, httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {created['key']}"}) as client:
        videos = client.get("/v1/videos").json()["videos"]
        assert {v["tenant"] for v in videos} == {"alpha"} and len(videos) == 3
        got = client.get(f"/v1/videos/{alpha['id'][:6]}")
        assert got.status_code == 200 and got.json()["id"] == alpha["id"]
        assert got.json()["progress_s"] == got.json()["duration"]
        assert client.get(f"/v1/videos/{beta['id'][:6]}").status_code == 404
        assert client.get(f"/v1/videos/{beta['id']}/segments").status_code == 404
        assert client.get("/v1/videos/feed").status_code == 422
        found = client.get("/v1/search", params={"q": "crown jewels",
                                                 "video": alpha["id"][:8]})
        assert found.status_code == 200 and found.json()["moments"]
        assert client.get("/v1/search", params={"q": "crown jewels",
                                                "video": beta["id"][:8]}).status_code == 404
        used = json.loads(run(home, "keys", "list", "--all", "--json").stdout)
        assert used[0]["last_used_at"] is not None
        revoked = run(home, "keys", "revoke", listed[0]["id"][:8])
        assert "revoked " + listed[0]["id"] in revoked.stdout
        assert client.get("/v1/videos").status_code == 401
    shown = run(home, "keys", "list", "--tenant", "alpha").stdout
    assert "REVOKED" in shown and created["key"] not in shown
    assert run(home, "keys", "revoke", "zzzz", check=False).returncode == 1


def _app(home):
    from api.http import create_app
    return create_app(Settings(home=home))


def test_resolve_video_on_both_databases(settings):
    """The one prefix rule: exact id first, then a unique prefix within the tenant; '_' is
    no wildcard and case counts."""
    with session_scope(settings) as s:
        for vid, tenant in (("ab_d01", "t1"), ("abxd02", "t1"), ("abxd03", "t1"),
                            ("abcd04", "t2")):
            s.add(Video(id=vid, tenant=tenant, filename=vid, path="/p", status=READY,
                        notes=[]))
    with session_scope(settings) as s:
        assert queries.resolve_video(s, "ab_d", tenant="t1").id == "ab_d01"
        assert queries.resolve_video(s, "abxd03", tenant="t1").id == "abxd03"
        for ref in ("abcd", "abcd04", "ABXD0", "abx"):        # t2's, case, too short
            with pytest.raises(NotFound):
                queries.resolve_video(s, ref, tenant="t1")
        with pytest.raises(AmbiguousId, match=r"abxd02 \(abxd02\), abxd03"):
            queries.resolve_video(s, "abxd", tenant="t1")


def test_active_videos_are_the_ones_not_done(settings):
    """`list --active`, GET /v1/videos?active=true: queued, indexing or interrupted (a
    stored `processing`) videos of the tenant, oldest first; what the web page polls."""
    from datetime import datetime, timedelta, timezone
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with session_scope(settings) as s:
        for i, (vid, tenant, status) in enumerate([
                ("done01", "t1", READY), ("busy01", "t1", PROCESSING), ("fail01", "t1", FAILED),
                ("wait01", "t1", QUEUED), ("else01", "t2", PROCESSING)]):
            s.add(Video(id=vid, tenant=tenant, filename=vid, path="/p", status=status,
                        notes=[], created_at=t0 + timedelta(seconds=i)))
    with session_scope(settings) as s:
        assert [v.id for v in queries.list_videos(s, tenant="t1", active=True)] == \
            ["busy01", "wait01"]
        assert [v.id for v in queries.list_videos(s, tenant="t1", active=True, limit=1,
                                                  after=(t0, "done01"))] == ["busy01"]
        assert len(queries.list_videos(s, tenant="t1")) == 4
