"""The web page in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium), against the service on the SQLite default, at desktop width and at a 390 px
phone width. One browser and one server for the module; the tests run in order, as a user
would: empty library, upload with live progress, search and play, phone, AVI, delete.
Screenshots are kept in build/test-artifacts/."""

import os
import re
import shutil
import time
from pathlib import Path

import av
import httpx
import pytest

from core.config import Settings
from web.live import make_key, serve, wait_for

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("CHRONOSCOPE_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
CLIP = "his_girl_friday_6s.mp4"
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
TTL_S = 3          # signed media URLs expire within the test, to see the page renew them
STAGES = ("decoding", "transcribing speech", "reading on-screen text", "visual search",
          "describing scenes", "writing chapters")      # as the page names the API's stages


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        message = "Debian's chromium and chromium-driver are needed: run tests/web/setup.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


@pytest.fixture(scope="module")
def d():
    binary, driver_path = _chromium()
    os.environ.setdefault("SE_OFFLINE", "true")    # never let Selenium fetch a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--mute-audio", "--autoplay-policy=no-user-gesture-required",
                "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from api.http import create_app
    settings = Settings(home=tmp_path_factory.mktemp("web") / "home")
    # 3 s chunks: a 6 s clip is indexed in steps the page can show as they happen, each
    # long enough for Whisper base to hear a phrase in (with 2 s, it heard only the first).
    settings.chunk.length_s, settings.chunk.overlap_s = 3.0, 0.5
    settings.api.media_url_ttl_s = TTL_S
    with serve(create_app(settings)) as base:
        key = make_key(settings, "viewer")[0]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api:
            yield base, key, api, settings


def _by(css):
    from selenium.webdriver.common.by import By
    return By.CSS_SELECTOR, css


def _text(d, css) -> str:
    found = d.find_elements(*_by(css))
    return found[0].text if found and found[0].is_displayed() else ""


def _shot(d, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert d.save_screenshot(str(path)) and path.stat().st_size > 10_000
    print(f"screenshot: {path}")


def _enter_key(d, key: str) -> None:
    from selenium.webdriver.common.keys import Keys
    field = d.find_element(*_by("#key"))
    field.clear()
    field.send_keys(key, Keys.TAB)     # 'change' saves it and reloads the library


def _videos(api) -> list[dict]:
    return api.get("/v1/videos").json()["videos"]


def _position(d):
    """The player's time once it has media and is not seeking, else None."""
    return d.execute_script(
        "const p = document.querySelector('#player');"
        "return p.readyState >= 1 && !p.seeking && p.currentSrc ? p.currentTime : null;")


def _lands_near(d, target: float, timeout: float) -> float:
    def near():
        t = _position(d)
        return t is not None and abs(t - target) < 1.0 and [t]
    return wait_for(near, timeout=timeout, what=f"the player to seek to {target} s",
                    interval=0.05)[0]


def _upload(d, path: Path) -> None:
    d.find_element(*_by("#upload-file")).send_keys(str(path))
    d.find_element(*_by("#upload-form button")).click()


def _avi_head(media: Path, tmp: Path, seconds: float) -> Path:
    """The first seconds of the sample AVI (MS-MPEG4), packets copied: a format browsers
    cannot play."""
    out_path = tmp / "pedestrians_3s.avi"
    with av.open(str(media / "pedestrians_80s.avi")) as src, \
            av.open(str(out_path), "w", format="avi") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            if packet.pts * stream.time_base >= seconds:
                break
            packet.stream = copy
            out.mux(packet)
    return out_path


def test_empty_library_and_a_refused_key_that_is_then_fixed(d, site):
    base, key, *_ = site
    d.get(base + "/")
    d.execute_script("localStorage.clear()")
    d.get(base + "/")
    assert "API key" in _text(d, "#library-empty")
    _enter_key(d, "cs_not_a_key")
    wait_for(lambda: "401" in _text(d, "#errors"), timeout=10, what="the 401 to be shown")
    _enter_key(d, key)
    wait_for(lambda: "No videos yet" in _text(d, "#library-empty"), timeout=10,
             what="the empty library note")
    assert not d.find_element(*_by("#errors")).is_displayed()    # the 401 no longer holds
    _shot(d, "web-empty.png")


# Counts the page's reads of the video list: whole, or only the videos not done yet.
COUNT_LIST_READS = """
window.listReads = {all: 0, active: 0};
const fetchAll = window.fetch;
window.fetch = (url, options) => {
  const u = String(url);
  if (u.startsWith("/v1/videos?")) window.listReads[u.includes("active=true") ? "active" : "all"] += 1;
  return fetchAll(url, options);
};
"""


def test_upload_shows_live_progress_in_seconds(d, site, media):
    api = site[2]
    d.execute_script(COUNT_LIST_READS)
    _upload(d, media / CLIP)
    seen = []

    def ready():
        # One script: the list is redrawn every second, so elements go stale between calls.
        row = d.execute_script(
            "const li = document.querySelector('#videos li.video');"
            "return li && [li.dataset.status, li.querySelector('.detail').textContent];")
        if row:
            seen.append(tuple(row))
        return row and row[0] == "ready"

    wait_for(ready, timeout=120, what="the uploaded video to be ready", interval=0.1)
    wait_for(lambda: _text(d, "#upload-status") == "uploaded and indexed", timeout=10,
             what="the upload note")
    assert d.find_element(*_by("#upload-progress")).get_attribute("value") == "100"
    reads = d.execute_script("return window.listReads")
    # While it indexed, the page read only the active videos each second; the whole list
    # once for the upload and once when it was done (a large library is not re-read).
    assert reads["active"] >= 2 and reads["all"] <= 3, reads
    live = [text for status, text in seen if status == "processing"]
    done = {m.group(1) for text in live
            if (m := re.match(r"indexed (\d+:\d\d) of 0:06", text))}
    # Seen part way: more than nothing and less than all of the 6 s.
    assert done - {"0:00", "0:06"}, f"no progress seen between 0 and 6 s: {live}"
    if "stage" in _videos(api)[0]:
        assert any(s in text for text in live for s in STAGES), live


def test_search_thumbnail_seek_captions_and_transcript(d, site):
    from selenium.webdriver.common.keys import Keys
    api = site[2]
    [video] = _videos(api)
    segments = api.get(f"/v1/videos/{video['id']}/segments",
                       params={"kind": "speech"}).json()["segments"]
    said = max((s for s in segments if s["start"] > 1.0), key=lambda s: len(s["text"]))
    d.find_element(*_by("#q")).send_keys(said["text"], Keys.ENTER)
    moments = wait_for(lambda: d.find_elements(*_by("#results .moment")), timeout=60,
                       what="search results")
    first = moments[0]
    start = float(first.get_attribute("data-start"))
    assert said["text"] in first.text and start > 1.0

    # Every moment that names a keyframe shows it.
    thumbs = wait_for(lambda: d.execute_script(
        "const imgs = [...document.querySelectorAll('#results .moment img.thumb')];"
        "return imgs.length && imgs.every((i) => i.complete && i.naturalWidth > 0) && imgs.length"),
        timeout=10, what="the moments' thumbnails")
    with_thumb = [m for m in api.get("/v1/search", params={"q": said["text"]}).json()["moments"]
                  if m.get("thumbnail")]
    assert thumbs == len(with_thumb) > 0

    # On its text: a one-line moment has its buttons ("More like this") at its centre.
    first.find_element(*_by(".text")).click()
    _lands_near(d, start, timeout=30)
    assert d.find_element(*_by("#now-playing")).text == CLIP
    # Chapters too show their keyframe where the summary names one.
    chapters = api.get(f"/v1/videos/{video['id']}/summary").json()["chapters"]
    wait_for(lambda: d.execute_script(
        "return [...document.querySelectorAll('#chapters .chapter')].map((c) => {"
        "  const i = c.querySelector('img.thumb'); return i ? i.complete && i.naturalWidth > 0"
        "  : null; })") == [True if c.get("thumbnail") else None for c in chapters],
        timeout=10, what="the chapters, with their thumbnails")
    assert chapters

    # The captions track: the API's WebVTT, loaded and showing.
    cues = wait_for(lambda: d.execute_script(
        "const t = document.querySelector('#player').textTracks[0];"
        "return t && t.kind === 'captions' && t.mode === 'showing' && t.cues && t.cues.length"),
        timeout=10, what="the captions track's cues")
    assert cues == len([s for s in segments if s["text"].strip()])

    # A transcript line seeks the player, within 1 s of the click.
    lines = d.find_elements(*_by("#transcript .line"))
    assert [ln.find_element(*_by(".text")).text for ln in lines if "speech" in
            ln.get_attribute("class")] == [" ".join(s["text"].split()) for s in segments if s["text"].strip()]
    line = max(lines, key=lambda ln: abs(float(ln.get_attribute("data-start")) - start))
    target = float(line.get_attribute("data-start"))
    assert abs(target - start) > 1.0
    clicked = time.monotonic()
    line.click()
    _lands_near(d, target, timeout=5)
    assert time.monotonic() - clicked < 1.0
    _shot(d, "web-desktop.png")


def test_a_moment_saves_as_a_clip(d, tmp_path):
    moment = d.find_elements(*_by("#results .moment"))[0]
    start, end = (float(moment.get_attribute(f"data-{at}")) for at in ("start", "end"))
    d.execute_cdp_cmd("Browser.setDownloadBehavior",
                      {"behavior": "allow", "downloadPath": str(tmp_path)})
    moment.find_element(*_by(".save")).click()
    [saved] = wait_for(lambda: list(tmp_path.glob("*.mp4")), timeout=30, what="the saved clip")
    assert saved.name == f"his_girl_friday_6s_{start:.1f}-{end:.1f}s.mp4"
    with av.open(str(saved)) as clip:
        assert abs(clip.duration / 1e6 - (end - start)) < 1.0
    assert not d.find_element(*_by("#errors")).is_displayed()


def test_an_expired_media_url_is_renewed(d):
    old = d.execute_script("return document.querySelector('#player').currentSrc")
    at = d.execute_script("return document.querySelector('#player').currentTime")
    time.sleep(TTL_S + 1.5)
    assert httpx.get(old).status_code == 401     # it has expired
    # The player asks for bytes it has not cached (as when seeking far in a long video),
    # with the expired URL: the page must fetch the video again for a fresh one.
    d.execute_script("document.querySelector('#player').src = arguments[0] + '&uncached=1'", old)
    renewed = wait_for(lambda: d.execute_script(
        "const p = document.querySelector('#player');"
        "return p.readyState >= 1 && !p.error && p.currentSrc !== arguments[0] && p.currentSrc",
        old), timeout=10, what="the player to renew its media URL")
    assert renewed.split("?")[0] == old.split("?")[0]
    _lands_near(d, at, timeout=5)
    assert not d.find_element(*_by("#errors")).is_displayed()


def test_phone_width_brings_the_player_into_view(d, site):
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        d.execute_script("window.scrollTo(0, 0)")
        assert d.execute_script("return document.documentElement.scrollWidth") <= 390
        moment = d.find_elements(*_by("#results .moment"))[-1]
        start = float(moment.get_attribute("data-start"))
        d.execute_script("document.querySelector('#player').currentTime = 0")
        _shot(d, "web-phone-results.png")
        moment.click()
        wait_for(lambda: d.execute_script(
            "const r = document.querySelector('#player').getBoundingClientRect();"
            "return r.top >= 0 && r.bottom <= window.innerHeight"),
            timeout=5, what="the player to scroll into view")
        _lands_near(d, start, timeout=5)
        _shot(d, "web-phone-player.png")
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_an_avi_plays_through_its_preview(d, site, media, tmp_path):
    api = site[2]
    _upload(d, _avi_head(media, tmp_path, 3.0))
    item = "#videos li.video[data-status='ready'] .name"
    wait_for(lambda: len(d.find_elements(*_by(item))) == 2, timeout=120,
             what="the AVI to be ready")
    avi = next(v for v in _videos(api) if v["filename"].endswith(".avi"))
    d.find_elements(*_by(item))[1].click()
    assert avi["playback_url"] != avi["media_url"]        # a preview, not the AVI itself
    d.execute_script("document.querySelector('#player').play()")
    wait_for(lambda: d.execute_script(
        "const p = document.querySelector('#player'); return p.ended && !p.error"),
        timeout=20, what="the AVI's preview to play to its end")
    assert not d.find_element(*_by("#playback-note")).is_displayed()
    _shot(d, "web-avi-preview.png")


def _interrupt(settings, video_id: str) -> None:
    """Leave the video as a run that died half way leaves it."""
    from datetime import datetime, timezone
    from store.db import session_scope
    from store.schema import PROCESSING, Video
    with session_scope(settings) as s:
        video = s.get(Video, video_id)
        video.status, video.chunks_done, video.chunks_total = PROCESSING, 1, 2
        video.owner, video.heartbeat_at = "elsewhere:1:1", datetime(2000, 1, 1, tzinfo=timezone.utc)


def test_an_interrupted_video_is_not_shown_finished_and_delete_empties_the_library(d, site):
    _, key, api, settings = site
    avi = next(v for v in _videos(api) if v["filename"].endswith(".avi"))
    _interrupt(settings, avi["id"])
    _enter_key(d, key)      # the library reloads
    detail = wait_for(lambda: _text(d, f"#videos li[data-id='{avi['id']}'][data-status="
                                       "'interrupted'] .detail"),
                      timeout=10, what="the interrupted video in the library")
    assert re.fullmatch(r"interrupted at 0:0[0-3] of 0:03: run chronoscope resume to finish it",
                        detail), detail
    while rows := d.find_elements(*_by("#videos li.video")):
        rows[-1].find_element(*_by(".delete")).click()
        d.switch_to.alert.accept()
        wait_for(lambda: len(d.find_elements(*_by("#videos li.video"))) == len(rows) - 1,
                 timeout=10, what="the deleted video to leave the library")
    assert _videos(api) == []
    wait_for(lambda: "No videos yet" in _text(d, "#library-empty"), timeout=5,
             what="the empty library note")
    assert not d.find_elements(*_by("#results .moment")) and not _text(d, "#upload-status")
    assert d.find_element(*_by("#player")).get_attribute("src") == ""    # unloaded
    assert d.find_element(*_by("#now-playing")).text == "Pick a moment to play it"
    _shot(d, "web-deleted.png")
