"""Caption exports: WebVTT and SRT that players accept, and JSON with every segment."""

import json
from collections.abc import Sequence

from core.times import clock, seconds
from store.schema import Segment, Video
from store.serialize import segment_json


def _cues(segments: Sequence[Segment]) -> list[tuple[int, int, str]]:
    # Players reject empty or zero-length cues; text is one line per cue.
    out = []
    for seg in segments:
        text = " ".join(seg.text.split())
        if text:
            out.append((seg.start_ms, max(seg.end_ms, seg.start_ms + 1), text))
    return out


def to_vtt(segments: Sequence[Segment]) -> str:
    lines = ["WEBVTT", ""]
    for i, (start, end, text) in enumerate(_cues(segments), 1):
        # '&', '<' and '>' are markup in cue text; '-->' must never appear in it.
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines += [str(i), f"{clock(start, pad_hours=True, frac_sep='.')} --> "
                  f"{clock(end, pad_hours=True, frac_sep='.')}", text, ""]
    return "\n".join(lines)


def to_srt(segments: Sequence[Segment]) -> str:
    lines = []
    for i, (start, end, text) in enumerate(_cues(segments), 1):
        lines += [str(i), f"{clock(start, pad_hours=True, frac_sep=',')} --> "
                  f"{clock(end, pad_hours=True, frac_sep=',')}", text, ""]
    return "\n".join(lines)


def to_json(video: Video, segments: Sequence[Segment]) -> str:
    return json.dumps({"video_id": video.id, "filename": video.filename,
                       "duration": seconds(video.duration_ms),
                       "segments": [segment_json(s) for s in segments]}, indent=2)


def render(fmt: str, video: Video, segments: Sequence[Segment]) -> str:
    if fmt == "vtt":
        return to_vtt(segments)
    if fmt == "srt":
        return to_srt(segments)
    if fmt == "json":
        return to_json(video, segments)
    raise ValueError(f"unknown caption format {fmt!r}: use vtt, srt or json")
