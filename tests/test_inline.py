"""The embedded mode's indexer: tenants take turns, one unit at a time, so a short video of
one tenant finishes while another tenant's long video is still being worked on."""

import shutil

from store import queries
from store.db import session_scope
from store.schema import PROCESSING, READY
from indexer import pipeline
from web.live import wait_for
from workers.inline import InlineRunner


def test_tenants_take_turns(sqlite_settings, media, tmp_path):
    s = sqlite_settings
    s.speech.enabled = s.ocr.enabled = s.visual.enabled = False    # only the scheduling
    s.chunk.length_s = 1.0
    for name in ("timer_text_61s.mp4", "his_girl_friday_6s.mp4"):
        shutil.copy(media / name, tmp_path / name)
    long_id = pipeline.add_video(s, tmp_path / "timer_text_61s.mp4", tenant="a")
    short_id = pipeline.add_video(s, tmp_path / "his_girl_friday_6s.mp4", tenant="b")
    runner = InlineRunner(s)
    try:
        runner.submit(long_id)
        wait_for(lambda: _video(s, long_id).chunks_done >= 1, timeout=60, what="a first chunk")
        runner.submit(short_id)
        wait_for(lambda: _video(s, short_id).status == READY, timeout=120, what="the short one")
        long_video = _video(s, long_id)
        assert long_video.status == PROCESSING
        assert long_video.chunks_done < long_video.chunks_total - 20
        wait_for(lambda: _video(s, long_id).status == READY, timeout=300, what="the long one")
    finally:
        runner.close()


def _video(settings, video_id):
    with session_scope(settings) as s:
        return queries.get_video(s, video_id)
