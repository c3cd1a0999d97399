import json
import re
from types import SimpleNamespace

from api.captions import render, to_srt, to_vtt

VTT_TIMING = re.compile(r"^(\d\d):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d\d):([0-5]\d):([0-5]\d)\.(\d{3})$")
SRT_TIMING = re.compile(r"^(\d\d):([0-5]\d):([0-5]\d),(\d{3}) --> (\d\d):([0-5]\d):([0-5]\d),(\d{3})$")


def seg(start, end, text, kind="speech", id=1):
    return SimpleNamespace(id=id, start_ms=start, end_ms=end, text=text, kind=kind,
                           model_id="m")


def _ms(groups):
    h, m, s, ms = map(int, groups)
    return ((h * 60 + m) * 60 + s) * 1000 + ms


def test_vtt_has_valid_cues_and_escaped_text():
    out = to_vtt([seg(0, 1500, "Tom & Jerry <b>chase</b> --> away"),
                  seg(10_799_500, 10_801_250, "three hours in"),
                  seg(5000, 5000, "zero length"), seg(6000, 7000, "   ")])
    lines = out.split("\n")
    assert lines[0] == "WEBVTT" and lines[1] == ""
    timings = [l for l in lines if "-->" in l and VTT_TIMING.match(l)]
    assert len(timings) == 3                       # the blank cue is dropped
    for t in timings:
        m = VTT_TIMING.match(t).groups()
        assert _ms(m[:4]) < _ms(m[4:])              # players reject end <= start
    assert "02:59:59.500 --> 03:00:01.250" in out
    assert "Tom &amp; Jerry &lt;b&gt;chase&lt;/b&gt; --&gt; away" in out
    # no cue text line contains a raw arrow that a parser would read as timing
    assert all("-->" not in l or VTT_TIMING.match(l) for l in lines)


def test_srt_numbering_and_comma_times():
    out = to_srt([seg(61_001, 62_000, "a"), seg(3_600_000, 3_601_000, "b")])
    blocks = out.strip().split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == ["1", "2"]
    assert SRT_TIMING.match(blocks[0].split("\n")[1])
    assert "00:01:01,001 --> 00:01:02,000" in out
    assert "01:00:00,000 --> 01:00:01,000" in out


def test_json_has_every_segment_in_seconds():
    video = SimpleNamespace(id="v1", filename="f.mp4", duration_ms=12_345)
    data = json.loads(render("json", video, [seg(1234, 2345, "x", id=7),
                                             seg(0, 1, "", kind="screen_text", id=8)]))
    assert data["duration"] == 12.345
    assert [s["id"] for s in data["segments"]] == [7, 8]
    assert data["segments"][0]["start"] == 1.234 and data["segments"][0]["end"] == 2.345
