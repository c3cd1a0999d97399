"""Browser playback: a file a browser cannot play (the AVI of MPEG-4 part 2) gets an H.264
preview at index time (finalize, which the in-process runner and the Celery workers both
run) whose frames keep the original's times; the API names it as `playback_url` and serves
it like the media (ranges, safety headers), files that play get none, deleting the video
deletes it. The clip endpoint over a real socket: a download of the moment, and a clear 422
for hostile bounds."""

from fractions import Fraction

import av
import httpx
import pytest

from api.http import create_app
from core.config import ApiSettings, Settings
from indexer import pipeline, preview
from test_clips import check_clip, source_times
from web.live import make_key, serve

AVI, MP4 = "pedestrians_80s.avi", "car_detection_30s.mp4"


@pytest.fixture(scope="module")
def library(tmp_path_factory, media):
    """Two videos planned and finalized (no signals needed for playback), then served."""
    settings = Settings(home=tmp_path_factory.mktemp("preview") / "home")
    settings.clip.max_length_s = 20.0
    ids = {}
    for name in (AVI, MP4):
        ids[name] = pipeline.add_video(settings, media / name, tenant="alpha")
        pipeline.plan(settings, ids[name])
        pipeline.finalize(settings, ids[name])
    key, _ = make_key(settings, "alpha")
    with serve(create_app(settings, ApiSettings())) as base:
        with httpx.Client(base_url=base, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            yield dict(settings=settings, ids=ids, client=client, base=base)


def test_only_what_a_browser_cannot_play_gets_a_preview(library, media):
    assert "avi" in preview.unplayable(media / AVI)
    for name in (MP4, "big_buck_bunny_30s.webm", "his_girl_friday_6s.mp4"):
        assert preview.unplayable(media / name) is None, name
    settings, ids = library["settings"], library["ids"]
    assert preview.preview_path(settings.media_dir, ids[AVI]).is_file()
    assert not preview.preview_path(settings.media_dir, ids[MP4]).exists()


def test_preview_plays_with_the_original_frame_times(library, media):
    path = preview.preview_path(library["settings"].media_dir, library["ids"][AVI])
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, c.streams.video[0].height) == ("h264", 480)
        got = [f.pts * f.time_base for f in c.decode(v)]
        duration = Fraction(c.duration, av.time_base)
    want = source_times(media / AVI)
    assert len(got) == len(want)
    assert max(abs(float(g - w)) for g, w in zip(got, want)) < 0.0005
    frame = want[1] - want[0]
    assert abs(duration - (want[-1] + frame)) < frame


def test_playback_url_names_the_preview_and_serves_it_like_media(library):
    client, ids = library["client"], library["ids"]
    avi, mp4 = (client.get(f"/v1/videos/{ids[n]}").json() for n in (AVI, MP4))
    assert avi["playback_url"].startswith(f"/v1/videos/{ids[AVI]}/playback?token=")
    assert mp4["playback_url"] == mp4["media_url"]
    assert any("does not play in web browsers" in n for n in avi["notes"])
    anon = httpx.Client(base_url=library["base"])        # a <video> sends no key
    r = anon.get(avi["playback_url"], headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]
    assert r.headers["content-disposition"].startswith('inline; filename="pedestrians_80s.mp4"')
    full = anon.get(avi["playback_url"])
    size = preview.preview_path(library["settings"].media_dir, ids[AVI]).stat().st_size
    assert full.status_code == 200 and len(full.content) == size
    assert anon.get(f"/v1/videos/{ids[AVI]}/playback?token=1.bad").status_code == 401
    # The MP4 plays as it is: its playback is the original.
    orig = anon.get(mp4["playback_url"].replace("/media?", "/playback?"),
                    headers={"Range": "bytes=0-9"})
    assert orig.status_code == 206 and orig.headers["content-type"] == "video/mp4"


def test_clip_endpoint_downloads_the_moment(library, media, tmp_path):
    client, vid = library["client"], library["ids"][AVI]
    r = client.get(f"/v1/videos/{vid}/clip", params={"start": 12.34, "end": 15})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["x-clip-mode"] == "encode" and r.headers["x-clip-start"] == "12.300"
    out = tmp_path / "clip.mp4"
    out.write_bytes(r.content)
    check_clip(media / AVI, out, 12.34, 15.0)
    assert not list((library["settings"].home / "tmp").iterdir())   # nothing left behind


@pytest.mark.parametrize("params,says", [
    ({"start": -1, "end": 2}, ">= 0"), ({"start": "nan", "end": 2}, "finite"),
    ({"start": 3, "end": 3}, "not after start"), ({"start": 70, "end": 90}, "beyond the end"),
    ({"start": 0, "end": 30}, "at most 20 s"), ({"start": "inf", "end": 2}, "finite"),
])
def test_clip_endpoint_refuses_hostile_bounds(library, params, says):
    r = library["client"].get(f"/v1/videos/{library['ids'][AVI]}/clip", params=params)
    assert r.status_code == 422 and says in r.text, r.text


def test_clip_needs_a_key_or_the_media_token(library):
    vid = library["ids"][MP4]
    anon = httpx.Client(base_url=library["base"])
    assert anon.get(f"/v1/videos/{vid}/clip?start=1&end=2").status_code == 401
    token = library["client"].get(f"/v1/videos/{vid}").json()["media_url"].split("token=")[1]
    r = anon.get(f"/v1/videos/{vid}/clip?start=4.8&end=6&token={token}")
    assert r.status_code == 200 and r.headers["x-clip-mode"] == "copy"


def test_deleting_a_video_deletes_its_preview(library):
    settings, vid = library["settings"], library["ids"][AVI]
    path = preview.preview_path(settings.media_dir, vid)
    assert path.is_file()
    assert library["client"].delete(f"/v1/videos/{vid}").status_code == 204
    assert not path.exists()
