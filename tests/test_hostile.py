"""Hostile media (issue 12): every file is built here, from PyAV and bytes. Each one is either
refused with a clear BadVideo, or indexed with bounded work and times inside the data; and a
normal video indexes and is searchable on the same database in the same run."""

import shutil
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from pydantic import ValidationError

import badfiles
from core.config import DecodeSettings
from core.errors import BadVideo
from indexer import damage, pipeline
from indexer.decode import sample_frames
from indexer.plan import plan_chunks
from indexer.probe import probe
from store import queries
from store.db import session_scope
from store.schema import FAILED, READY

MEDIA = badfiles.MEDIA
INT32_MS = 2**31 - 1

REFUSED = {   # name -> (builder, words the error must hold)
    "far_frame": (badfiles.far_frame_mkv, "past the 24:00:00 limit (CHRONOSCOPE_DECODE__MAX_DURATION_S)"),
    "dense_month": (badfiles.dense_month_mkv, "longer than the 24:00:00 limit per upload "
                    "(CHRONOSCOPE_DECODE__MAX_DURATION_S)"),
    "html_named_mp4": (badfiles.html_named_mp4, "web page (HTML), not a video"),
    "png": (lambda t: badfiles.still(t, "PNG"), "still image (PNG), not a video"),
    "jpeg": (lambda t: badfiles.still(t, "JPEG"), "still image (MJPEG), not a video"),
    "gif": (lambda t: badfiles.still(t, "GIF"), "still image (GIF), not a video"),
    "webp": (lambda t: badfiles.still(t, "WEBP"), "still image (WEBP), not a video"),
    "truncated": (badfiles.truncated, "truncated"),
    "empty": (lambda t: _write(t / "empty.mp4", b""), "the file is empty (0 bytes)"),
    "directory": (lambda t: _mkdir(t / "folder.mp4"), "is a directory, not a video file"),
    "dev_zero": (lambda t: Path("/dev/zero"), "is a device, not a regular file"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_a_clear_message(tmp_path, name):
    build, words = REFUSED[name]
    path = build(tmp_path)
    with pytest.raises(BadVideo) as err:
        probe(path)
    assert words in str(err.value) and path.name in str(err.value)


def test_timestamp_gap_is_cut_before_anything_is_planned(tmp_path):
    path = badfiles.gap_mkv(tmp_path)
    assert path.stat().st_size < 4000
    info = probe(path)
    assert info.duration_ms == 2100            # what the packets cover, not 30 days
    assert len(plan_chunks(info.duration_ms, length_ms=300_000, max_chunks=1000)) == 1
    assert len(info.notes) == 1
    assert "jump from 0:02 to 720:00:00" in info.notes[0] and "MAX_GAP_S" in info.notes[0]
    times = [f.t_ms for f in sample_frames(path, end_ms=info.duration_ms)]
    assert times == [0, 1000, 2000]


def test_no_frame_time_past_int32_ms_leaves_decode(tmp_path):
    path = badfiles.dense_month_mkv(tmp_path)
    frames = list(sample_frames(path, start_ms=INT32_MS - 2_000_000, fps=0.001, max_side=32))
    assert frames and all(0 <= f.t_ms <= INT32_MS for f in frames)
    assert frames[-1].t_ms > INT32_MS - 1000 * 1000        # decoded up to the edge, no further


def test_limits_are_settings_bounded_by_the_stored_type():
    with pytest.raises(ValidationError):
        DecodeSettings(max_duration_s=30 * 86400)          # would not fit int32 milliseconds
    assert DecodeSettings().max_duration_s == 24 * 3600


def test_limits_name_their_setting(tmp_path):
    path = badfiles.timed_mkv(tmp_path, "ten.mkv", [i * 0.5 for i in range(21)])
    with pytest.raises(BadVideo, match="CHRONOSCOPE_DECODE__MAX_FRAMES"):
        probe(path, DecodeSettings(max_frames=20))
    with pytest.raises(BadVideo, match="0:05 limit per upload.*MAX_DURATION_S"):
        probe(path, DecodeSettings(max_duration_s=5))
    assert probe(path, DecodeSettings(max_frames=21, max_duration_s=11)).duration_ms == 10_100


def test_html_after_a_real_video_changes_nothing(tmp_path):
    original = probe(MEDIA / "his_girl_friday_6s.mp4")
    assert probe(badfiles.html_after_mp4(tmp_path)) == original


def test_damage_note_names_count_and_times():
    seen = {(damage.VIDEO, 12_100), (damage.VIDEO, 14_900), (damage.VIDEO, 15_000),
            (damage.AUDIO, 70_000), (damage.VIDEO, 400_000)}
    note = damage.note(seen, 0, 300_000)
    assert note == ("damaged data: 3 video packets or frames could not be decoded between "
                    "0:12 and 0:15; 1 audio packets or frames could not be decoded at 1:10; "
                    "the video is indexed from what decoded, these moments may be missing")
    assert damage.note(seen, 300_000, 600_000).count("could not be decoded at 6:40") == 1
    assert damage.note(set(), 0, 1000) is None


def test_hostile_uploads_fail_alone_and_a_normal_video_still_indexes(settings, tmp_path):
    """One database, one run: refused files fail with their reason, damaged and gapped files
    are indexed from their data with a note, and a normal video is indexed and searchable."""
    settings.speech.enabled = False      # the files under test have no speech worth the time
    for name in ("far_frame", "png", "html_named_mp4", "truncated"):
        build, words = REFUSED[name]
        vid = pipeline.add_video(settings, build(tmp_path))
        with pytest.raises(BadVideo, match=words.split(" (")[0][:20]):
            pipeline.index_video(settings, vid)
        with session_scope(settings) as s:
            video = queries.get_video(s, vid)
            assert video.status == FAILED and words in video.error
    for name in ("directory", "dev_zero"):
        with pytest.raises(BadVideo, match=REFUSED[name][1]):
            pipeline.add_video(settings, REFUSED[name][0](tmp_path))

    gap = pipeline.add_video(settings, badfiles.gap_mkv(tmp_path))
    pipeline.index_video(settings, gap)
    corrupt = pipeline.add_video(settings, badfiles.corrupt_middle(tmp_path))
    pipeline.index_video(settings, corrupt)
    with session_scope(settings) as s:
        video = queries.get_video(s, gap)
        assert video.status == READY and video.chunks_total == 1 and video.duration_ms == 2100
        assert any("720:00:00" in n for n in video.notes)
        assert all(r.end_ms <= 2100 for r in queries.get_segments(s, video_id=gap))
        video = queries.get_video(s, corrupt)
        assert video.status == READY and video.duration_ms > 29_000
        notes = [n for n in video.notes if n.startswith(damage.PREFIX)]
        assert len(notes) == 1 and "could not be decoded at 0:10" in notes[0], video.notes

    settings.speech.enabled = True
    clip = tmp_path / "clip.mp4"
    shutil.copy(MEDIA / "his_girl_friday_6s.mp4", clip)
    normal = pipeline.add_video(settings, clip)
    pipeline.index_video(settings, normal)
    with session_scope(settings) as s:
        video = queries.get_video(s, normal)
        assert video.status == READY and not any(n.startswith(damage.PREFIX)
                                                 for n in video.notes)
    from search import query
    top = query.search(settings, "lord of the universe", k=3)
    assert top and top[0].video_id == normal and top[0].start_ms < 4000


# -- fuzzing: mutated real samples never crash or hang -------------------------------------

SEEDS = ["his_girl_friday_6s.mp4", "timer_text_61s.mp4", "big_buck_bunny_30s.webm"]
_OPS = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.floats(0.01, 1)),
    st.tuples(st.just("splice"), st.floats(0, 1), st.floats(0, 1), st.integers(1, 4096)))


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang("probe + bounded decode took over 20 s")


@pytest.fixture(scope="module")
def seeds():
    return {name: (MEDIA / name).read_bytes() for name in SEEDS}


@hsettings(max_examples=60, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), ops=st.lists(_OPS, min_size=1, max_size=6))
def test_fuzzed_samples_never_crash_or_hang(tmp_path, seeds, seed, ops):
    path = tmp_path / f"fuzz{Path(seed).suffix}"
    path.write_bytes(badfiles.mutate(seeds[seed], ops))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        assert badfiles.check_media(path, max_ms=4000) in ("ok", "refused")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
