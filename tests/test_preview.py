"""Browser playback: a file a browser cannot play (the AVI of MPEG-4 part 2) gets an H.264
preview at index time (finalize, which the in-process runner and the Celery workers both
run) whose frames keep the original's times; the API names it as `playback_url` and serves
it like the media (ranges, safety headers), files that play get none, deleting the video
deletes it. The clip endpoint over a real socket: a download of the moment, and a clear 422
for hostile bounds. Headless Chromium plays the preview and a smart-cut clip across its
splice."""

import os
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


def test_preview_covers_only_the_indexed_span(tmp_path):
    """A timestamp jump to 720 hours: the file is indexed up to the gap, and so is its
    preview (H.264 in Matroska does not play in every browser)."""
    import badfiles
    settings = Settings(home=tmp_path / "home")
    path = badfiles.gap_mkv(tmp_path)
    assert "h264 video in Matroska" in preview.unplayable(path)
    vid = pipeline.add_video(settings, path)
    pipeline.plan(settings, vid)
    preview.make(settings, vid)
    with av.open(str(preview.preview_path(settings.media_dir, vid))) as c:
        assert c.duration / av.time_base <= 2.2


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


# In the browser: the preview and a smart-cut clip (two encoders' parameter sets in one
# avcC) decode in Chromium, across the splice.
PLAY = """
const [src, at, done] = [arguments[0], arguments[1], arguments[3]];
const v = document.createElement("video");
v.muted = true;
v.onerror = () => done({error: v.error && v.error.message || "error " + v.error.code});
v.onloadedmetadata = () => { v.currentTime = at; };
v.onseeked = () => {
  v.onseeked = null;
  v.play().then(() => setTimeout(() => {
    const c = document.createElement("canvas");
    [c.width, c.height] = [v.videoWidth, v.videoHeight];
    const g = c.getContext("2d");
    g.drawImage(v, 0, 0);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    let lo = 255, hi = 0;
    for (let i = 0; i < px.length; i += 4 * 97) { lo = Math.min(lo, px[i]); hi = Math.max(hi, px[i]); }
    done({error: v.error && v.error.code, t: v.currentTime, width: v.videoWidth,
          duration: v.duration, contrast: hi - lo});
  }, 1200), e => done({error: String(e)}));
};
// A clip is a download (no ranges): seek in it as a blob, as a page that saved it would.
if (arguments[2]) fetch(src).then(r => r.blob()).then(b => { v.src = URL.createObjectURL(b); });
else v.src = src;
"""


def test_preview_and_smart_clip_play_in_chromium(library, media):
    from test_web import _chromium
    binary, driver_path = _chromium()
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--mute-audio", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_script_timeout(30)
        driver.get(library["base"] + "/healthz")
        client, ids = library["client"], library["ids"]
        avi = client.get(f"/v1/videos/{ids[AVI]}").json()
        got = driver.execute_async_script(PLAY, library["base"] + avi["playback_url"], 40.0,
                                           False)
        assert got["error"] is None and got["width"] == 640, got
        assert got["t"] > 40.5 and abs(got["duration"] - avi["duration"]) < 0.2, got
        assert got["contrast"] > 50, got          # a picture, not a blank frame
        token = client.get(f"/v1/videos/{ids[MP4]}").json()["media_url"].split("token=")[1]
        clip = f"/v1/videos/{ids[MP4]}/clip?start=7&end=14&token={token}"
        assert client.get(clip).headers["x-clip-mode"] == "smart"
        first = max(t for t in source_times(media / MP4) if t <= 7)
        keys = source_times(media / MP4, keyframes=True)
        splice = float(min(k for k in keys if k > first) - first)   # copied from here on
        got = driver.execute_async_script(PLAY, library["base"] + clip, splice - 0.5, True)
        assert got["error"] is None and got["t"] > splice + 0.3, got
        assert got["contrast"] > 50, got
    finally:
        driver.quit()


def test_media_routes_hold_no_connection_while_they_stream(library):
    """A download must not keep a pooled connection for as long as it runs (a few players
    would starve every other request): none is checked out mid-download."""
    from store import db
    pool = db.get_engine(library["settings"]).pool
    for route in ("media", "playback"):
        url = f"/v1/videos/{library['ids'][AVI]}/{route}"
        with library["client"].stream("GET", url) as streaming:
            assert streaming.status_code == 200
            next(streaming.iter_bytes(1 << 16))        # mid-download
            assert pool.checkedout() == 0, route


def test_deleting_a_video_deletes_its_preview(library):     # last: it deletes the AVI
    settings, vid = library["settings"], library["ids"][AVI]
    path = preview.preview_path(settings.media_dir, vid)
    assert path.is_file()
    assert library["client"].delete(f"/v1/videos/{vid}").status_code == 204
    assert not path.exists()
