import pytest

from core.errors import BadVideo
from indexer.plan import ChunkSpan, plan_chunks


def test_chunks_tile_the_timeline_without_gaps():
    spans = plan_chunks(10_801_000, length_ms=300_000)
    assert spans[0].start_ms == 0 and spans[-1].end_ms == 10_801_000
    assert all(a.end_ms == b.start_ms for a, b in zip(spans, spans[1:]))
    assert [s.idx for s in spans] == list(range(len(spans)))
    assert len(spans) == 37


def test_every_instant_is_owned_by_exactly_one_chunk():
    spans = plan_chunks(1_000_000, length_ms=300_000)
    for t in (0, 299_999, 300_000, 999_999):
        assert sum(s.owns(t) for s in spans) == 1


def test_read_range_adds_overlap_inside_the_video():
    span = ChunkSpan(1, 300_000, 600_000)
    assert span.read_range(5000, 601_000) == (295_000, 601_000)
    assert ChunkSpan(0, 0, 300_000).read_range(5000, 1_000_000) == (0, 305_000)


def test_empty_video_has_no_chunks():
    assert plan_chunks(0, length_ms=300_000) == []


def test_chunk_count_is_bounded_before_any_is_made():
    assert len(plan_chunks(300_000 * 10, length_ms=300_000, max_chunks=10)) == 10
    with pytest.raises(BadVideo, match="11 chunks.*CHRONOSCOPE_DECODE__MAX_CHUNKS"):
        plan_chunks(300_000 * 10 + 1, length_ms=300_000, max_chunks=10)
    # 30 days at 1 ms chunks would be billions of spans: refused without building them
    with pytest.raises(BadVideo):
        plan_chunks(2_592_000_000, length_ms=1, max_chunks=1000)
