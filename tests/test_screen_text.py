"""Screen text that is right: a fast version of bench/screen_text_eval.py (generated
videos with known text intervals, read through the real signal chunk by chunk), the clock
found to the second through the real pipeline and search, the chunk boundary, the noise
frames, and moment bounds that stay on the text that matched."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.config import Settings
from core.types import SCREEN_TEXT, SPEECH

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / ".." / "shared" / "media"


def _bench():
    spec = importlib.util.spec_from_file_location("screen_text_eval",
                                                  ROOT / "bench" / "screen_text_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    bench = _bench()
    vids = bench.make(tmp_path_factory.mktemp("eval"), quick=True)
    settings = Settings()
    found = {v["name"]: [(s.start_ms, s.end_ms, s.text) for s in bench.read_new(v, settings)]
             for v in vids}
    return bench.score(vids, found), found


def test_title_in_display_type_is_read(evaluated):
    """Large bold white type with a black outline on a picture: the binarised variant."""
    result, _ = evaluated
    assert result["videos"]["title"]["matched"] == 1, result["videos"]["title"]


def test_quick_eval_meets_targets(evaluated):
    result, _ = evaluated
    assert result["precision"] >= 0.95, result
    assert result["recall"] >= 0.9, result
    assert result["noise"] == 0, result


def test_text_across_a_chunk_boundary_is_one_segment(evaluated):
    """"Meet the new team" is on screen 3 s to 10 s, read with 6 s chunks."""
    _, found = evaluated
    assert len(found["boundary"]) == 1, found["boundary"]
    start, end, text = found["boundary"][0]
    assert text == "Meet the new team" and (start, end) == (3000, 10_000)


def test_textless_frames_give_no_segments(evaluated):
    _, found = evaluated
    assert found["textless"] == []


def test_clock_second_found_by_search(sqlite_settings):
    """Index timer_text_61s.mp4 through the real pipeline: "00:30" finds the second it was
    shown, not the whole minute."""
    from indexer import pipeline
    from search import query
    s = sqlite_settings
    s.speech.enabled = False
    vid = pipeline.add_video(s, MEDIA / "timer_text_61s.mp4")
    pipeline.index_video(s, vid)
    best = query.search(s, "00:30", k=3)[0]
    assert (best.start_ms, best.end_ms) == (30_000, 31_000), best
    assert best.text == "00:30"


def _row(i, start, end, kind=SCREEN_TEXT, video="v"):
    return SimpleNamespace(id=i, video_id=video, start_ms=start, end_ms=end, kind=kind,
                           text=f"t{i}")


def test_adjacent_screen_texts_do_not_stretch_a_moment():
    from search import query
    s = Settings()
    # The matching slide 8-16 s and the unrelated slides next to it, nearly as good.
    scored = [(_row(1, 8000, 16_000), 0.9, 0.03), (_row(2, 0, 8000), 0.8, 0.02),
              (_row(3, 16_000, 32_000), 0.8, 0.02),
              (_row(4, 9000, 15_000), 0.85, 0.02)]      # another line of the same slide
    best = query.moments(scored, s, k=1)[0]
    assert (best.start_ms, best.end_ms) == (8000, 16_000)
    assert [g["id"] for g in best.segments] == [1, 4]
    # Speech grouping is as before: a phrase split across segments is one moment.
    speech = [(_row(5, 1000, 3000, SPEECH), 0.9, 0.03), (_row(6, 3500, 5000, SPEECH), 0.8, 0.02)]
    assert (query.moments(speech, s, k=1)[0].start_ms, query.moments(speech, s, k=1)[0].end_ms) \
        == (1000, 5000)
    # A phrase said over the matching slide joins it and times the moment (the slide lasts
    # a minute); the next slide still does not join, though the moment now holds speech (it
    # stretched "photosynthesis" 0-60 s to 0-120 s).
    mixed = [(_row(7, 0, 60_000), 0.9, 0.03), (_row(8, 14_000, 20_000, SPEECH), 0.85, 0.02),
             (_row(9, 60_000, 120_000), 0.8, 0.02)]
    best = query.moments(mixed, s, k=1)[0]
    assert (best.start_ms, best.end_ms) == (14_000, 20_000)
    assert [g["id"] for g in best.segments] == [7, 8]
