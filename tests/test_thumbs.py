"""Thumbnails: real JPEG files under the media dir, and the keyframe a moment shows."""

import io

import numpy as np
import pytest
from PIL import Image

from core.types import Frame
from indexer.shots import Shot
from indexer.thumbs import encode, thumb_path, write
from search.thumbnails import chapter_ms, thumbnail_ms


def test_write_small_jpeg_atomically_under_the_media_dir(tmp_path):
    image = np.zeros((448, 796, 3), np.uint8)
    image[:, :398] = (200, 30, 30)
    path = write(tmp_path / "media", 17, Frame(t_ms=42_500, pts=0, image=image))
    assert path == tmp_path / "media" / "thumbs" / "17" / "42500.jpg"
    picture = Image.open(path)
    assert picture.format == "JPEG" and picture.size == (320, 180)
    left = np.asarray(picture.convert("RGB"))[90, 40]
    assert abs(int(left[0]) - 200) < 12 and left[1] < 50
    assert [p.name for p in path.parent.iterdir()] == ["42500.jpg"]   # no temp file left
    again = write(tmp_path / "media", 17, Frame(t_ms=42_500, pts=0, image=image))
    assert again == path and again.read_bytes() == path.read_bytes()
    small = Image.open(io.BytesIO(encode(np.zeros((90, 160, 3), np.uint8))))
    assert small.size == (160, 90)       # never enlarged


def test_thumb_path_refuses_unsafe_keys(tmp_path):
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError):
            thumb_path(tmp_path, bad, 0)
    with pytest.raises(ValueError):
        thumb_path(tmp_path, 1, -5)


def shot(a, b, *keys):
    return Shot(a, b, tuple(Frame(t_ms=k, pts=k, image=np.zeros((2, 2, 3), np.uint8)) for k in keys))


def test_thumbnail_is_the_keyframe_of_the_shot_holding_the_best_segment():
    shots = [shot(0, 10_000, 3_000), shot(10_000, 30_000, 12_000, 19_000, 27_000),
             shot(30_000, 31_000, 30_500)]
    assert thumbnail_ms(shots, 17_000, 23_000) == 19_000
    assert thumbnail_ms(shots, 8_000, 10_500) == 3_000        # middle 9.25 s: first shot
    assert thumbnail_ms(shots, 29_000, 33_000) == 30_500
    assert thumbnail_ms(shots, 40_000, 41_000) == 30_500      # beyond every shot: nearest
    assert thumbnail_ms([], 0, 1000) is None


def test_chapter_thumbnail_is_the_keyframe_it_opens_on():
    shots = [shot(0, 10_000, 3_000), shot(10_000, 30_000, 12_000, 19_000, 27_000),
             shot(30_000, 31_000, 30_500)]
    assert chapter_ms(shots, 0, 15_000) == 3_000
    assert chapter_ms(shots, 15_000, 30_000) == 19_000      # starts mid-shot: next keyframe
    assert chapter_ms(shots, 20_000, 26_000) == 19_000      # none inside: nearest the start
    assert chapter_ms(shots, 29_000, 40_000) == 30_500
    assert chapter_ms([], 0, 1000) is None
