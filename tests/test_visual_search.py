"""Visual search end to end on the real path: sample videos decoded, shots detected and
stored, keyframes embedded by a tiny random SigLIP 2 (built from the published config,
loaded through model resolution), the visual vector space, and search by text, by image and
like a moment, with thumbnails."""

from pathlib import Path

import av
import numpy as np
import pytest

from core.config import Settings
from core.errors import BadQuery, NotFound
from core.types import VISUAL
from fixtures.visual_tiny import build
from indexer import index_sync, pipeline, thumbs
from search import query
from search.index import reader
from search.index.state import VISUAL as VISUAL_SPACE
from store import queries, shots as shot_rows
from store.db import session_scope

PEOPLE = "people_walking_139s.mp4"
AT_MS = 42_000


@pytest.fixture(scope="module")
def siglip(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("siglip2"))


def visual_only(home: Path, model: Path | str, url: str = "") -> Settings:
    return Settings(home=home, database_url=url, visual={"model": str(model)},
                    speech={"enabled": False}, ocr={"enabled": False})


@pytest.fixture(scope="module")
def library(tmp_path_factory, siglip, media):
    """Every sample video of ../shared/media indexed, visual signal only."""
    s = visual_only(tmp_path_factory.mktemp("home"), siglip)
    ids = {}
    for path in sorted(media.iterdir()):
        if path.suffix in (".mp4", ".avi", ".webm"):
            ids[path.name] = pipeline.add_video(s, path)
            pipeline.index_video(s, ids[path.name])
    return s, ids


def frame_at(path: Path, t_ms: int) -> np.ndarray:
    """The frame a player shows at t_ms, decoded with PyAV from its pts."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        c.seek(int(t_ms / 1000 / stream.time_base), stream=stream, backward=True)
        shown = None
        for frame in c.decode(stream):
            if frame.pts * stream.time_base * 1000 > t_ms:
                break
            shown = frame
        return shown.to_ndarray(format="rgb24")


def shot_holding(s: Settings, video_id: str, t_ms: int):
    with session_scope(s) as ss:
        shot = shot_rows.holding(ss, video_id=video_id, t_ms=t_ms)
        return shot.start_ms, shot.end_ms


def test_image_from_a_sample_video_finds_it_within_the_shot(library, media):
    s, ids = library
    start, end = shot_holding(s, ids[PEOPLE], AT_MS)
    assert start <= AT_MS < end and end - start < 139_000      # a cut was found around it
    found = query.search(s, image=frame_at(media / PEOPLE, AT_MS), k=5)
    best = found[0]
    assert best.video_id == ids[PEOPLE], [(m.video_id, m.start_ms) for m in found]
    assert start <= best.start_ms < best.end_ms <= end
    assert best.kinds == [VISUAL] and 0 < best.score <= 1
    assert start <= best.thumbnail_ms < end
    assert best.to_json()["thumbnail"] == \
        f"/v1/videos/{ids[PEOPLE]}/thumbnails/{best.thumbnail_ms}.jpg"


def test_shots_tile_each_video_and_every_keyframe_has_a_thumbnail(library):
    s, ids = library
    with session_scope(s) as ss:
        for vid in ids.values():
            video = queries.get_video(ss, vid)
            shots = shot_rows.get_shots(ss, video_id=vid)
            assert shots[0].start_ms <= 1000 and shots[-1].end_ms == video.duration_ms
            assert all(a.end_ms == b.start_ms for a, b in zip(shots, shots[1:]))
            for shot in shots:
                assert shot.keyframe_ms and all(shot.start_ms <= t < shot.end_ms
                                                for t in shot.keyframe_ms)
                for t in shot.keyframe_ms:
                    assert thumbs.thumb_path(s.media_dir, vid, t).stat().st_size > 0
            segs = queries.get_segments(ss, video_id=vid, kinds=[VISUAL])
            assert len(segs) == sum(len(sh.keyframe_ms) for sh in shots)
            assert all(g.embed_model == g.model_id and len(g.embedding) == 4 * 32 for g in segs)


def test_text_query_searches_the_visual_space_with_filters(library):
    s, ids = library
    assert reader.size(s, space=VISUAL_SPACE) > 0
    found = query.search(s, "people walking on a street", k=3, kinds=[VISUAL])
    assert found and all(m.kinds == [VISUAL] and 0 <= m.score <= 1 for m in found)
    only = query.search(s, "people walking", k=3, video_ids=[ids["car_detection_30s.mp4"]],
                        start_ms=10_000, end_ms=20_000)
    assert only and all(m.video_id == ids["car_detection_30s.mp4"] and m.end_ms > 10_000
                        and m.start_ms < 20_000 for m in only)


def test_more_like_this_moment(library):
    s, ids = library
    vid = ids[PEOPLE]
    best = query.search(s, like=(vid, AT_MS), k=3)[0]
    assert best.video_id == vid and best.start_ms <= AT_MS < best.end_ms
    with pytest.raises(BadQuery):
        query.search(s, like=(vid, 10_000_000))
    with pytest.raises(NotFound):
        query.search(s, like=(vid, AT_MS), tenant="someone-else")
    with pytest.raises(BadQuery):
        query.search(s, "words", like=(vid, AT_MS))


def test_reindex_rebuilds_every_space(library):
    s, _ = library
    visual = reader.size(s, space=VISUAL_SPACE)
    assert index_sync.rebuild(s) == reader.size(s) + visual and visual > 0


def test_without_a_model_shots_and_thumbnails_still_come_and_the_notes_say_why(settings,
                                                                                media):
    s = visual_only(settings.home, settings.home / "no-such-model", settings.database_url)
    vid = pipeline.add_video(s, media / "his_girl_friday_6s.mp4")
    pipeline.index_video(s, vid)
    pipeline.index_chunk(s, vid, 0)             # twice: the same rows
    with session_scope(s) as ss:
        notes = queries.get_video(ss, vid).notes
        shots = shot_rows.get_shots(ss, video_id=vid)
        assert not queries.get_segments(ss, video_id=vid, kinds=[VISUAL])
    assert any(n.startswith("visual search skipped: ") and "CHRONOSCOPE_VISUAL__MODEL" in n
               for n in notes), notes
    assert shots and shots[-1].end_ms > 5000
    assert all(thumbs.thumb_path(s.media_dir, vid, t).exists()
               for sh in shots for t in sh.keyframe_ms)
    assert query.search(s, "a man at a desk", k=3) is not None     # text space only


def test_api_serves_thumbnails_and_searches_by_image_and_like(library, media):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from api.http import create_app
    from store.keys import create_key
    s, ids = library
    with session_scope(s) as ss:
        key = create_key(ss, tenant="default")[0]
        other = create_key(ss, tenant="other")[0]
    vid = ids[PEOPLE]
    with TestClient(create_app(s)) as client:
        auth = {"X-API-Key": key}
        picture = io.BytesIO()
        Image.fromarray(frame_at(media / PEOPLE, AT_MS)).save(picture, "PNG")
        r = client.post("/v1/search?k=3", headers=auth,
                        files={"image": ("q.png", picture.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        best = r.json()["moments"][0]
        assert best["video_id"] == vid and best["filename"] == PEOPLE
        start, end = shot_holding(s, vid, AT_MS)
        assert start / 1000 <= best["start"] < best["end"] <= end / 1000
        thumb = client.get(best["thumbnail"], headers=auth)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert thumb.headers["x-content-type-options"] == "nosniff"
        assert thumb.content[:2] == b"\xff\xd8"
        assert client.get(best["thumbnail"], headers={"X-API-Key": other}).status_code == 404
        r = client.get(f"/v1/search?like={vid}@42", headers=auth)
        assert r.status_code == 200 and r.json()["moments"][0]["video_id"] == vid
        assert client.get("/v1/search", headers=auth).status_code == 422
        r = client.post("/v1/search", headers=auth, files={"image": ("x.png", b"nope")})
        assert r.status_code == 422


def test_an_image_query_claiming_a_huge_picture_is_refused_before_decoding():
    import io

    from PIL import Image

    from core.errors import BadQuery
    from search.visual import MAX_IMAGE_PIXELS, read_image
    big = io.BytesIO()
    Image.new("RGB", (8000, MAX_IMAGE_PIXELS // 8000 + 1)).save(big, "PNG")
    with pytest.raises(BadQuery, match="megapixels"):
        read_image(big.getvalue())
    small = io.BytesIO()
    Image.new("RGB", (64, 48)).save(small, "JPEG")
    assert read_image(small.getvalue()).size == (64, 48)
