"""The web page in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium), against the service on the SQLite default: upload with the page, search, click a
moment, and the player lands within 1 s of the moment's start. The screenshot is kept in
build/test-artifacts/."""

import os
import shutil
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from web.live import make_key, serve, wait_for

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("CHRONOSCOPE_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
CLIP = "his_girl_friday_6s.mp4"


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
def browser():
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
    settings.chunk.length_s, settings.chunk.overlap_s = 6.0, 1.0
    with serve(create_app(settings)) as base:
        yield base, make_key(settings, "viewer")[0]


def test_search_click_plays_from_the_moment(browser, site, media):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    base, key = site
    d = browser
    d.get(base + "/")
    d.find_element(By.ID, "key").send_keys(key, Keys.TAB)     # 'change' saves it

    # Upload through the page; the library shows it once indexed.
    d.find_element(By.ID, "upload-file").send_keys(str(media / CLIP))
    d.find_element(By.CSS_SELECTOR, "#upload-form button").click()
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#videos li.video.ready"), timeout=180,
             what="the uploaded video to be ready in the library", interval=0.5)
    wait_for(lambda: d.find_element(By.ID, "upload-status").text == "uploaded and indexed",
             timeout=10, what="the upload note")
    assert d.find_element(By.ID, "upload-progress").get_attribute("value") == "100"

    # Search for words the clip says after its first second (whatever the speech model
    # heard), so the click must really seek.
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api:
        [video] = api.get("/v1/videos").json()["videos"]
        said = [s for s in api.get(f"/v1/videos/{video['id']}/segments",
                                   params={"kind": "speech"}).json()["segments"]
                if s["start"] > 1.0]
    said = max(said, key=lambda s: len(s["text"]))
    d.find_element(By.ID, "q").send_keys(said["text"], Keys.ENTER)
    moments = wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#results .moment"),
                       timeout=60, what="search results")
    first = moments[0]
    start = float(first.get_attribute("data-start"))
    assert said["text"] in first.text and start > 1.0
    first.click()

    def position():
        return d.execute_script(
            "const p = document.querySelector('#player');"
            "return p.readyState >= 1 && !p.seeking && p.currentSrc ? p.currentTime : null;")

    landed = wait_for(lambda: (t := position()) is not None and abs(t - start) < 1.0 and [t],
                      timeout=30, what=f"the player to seek to {start} s", interval=0.05)[0]
    assert abs(landed - start) < 1.0
    chapters = d.find_elements(By.CSS_SELECTOR, "#chapters .chapter")
    assert chapters and d.find_element(By.ID, "now-playing").text == CLIP
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "web-search-and-play.png"
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
