"""Chapters and a summary of a whole video, written by the same loaded Qwen3-VL from the
video's timestamped segments (text only, no frames).

The answer is parsed leniently (prose, fences, <think>, near-JSON, times as seconds, mm:ss
or h:mm:ss) and then forced into shape: chapters sorted, inside [0, duration), the first
starting at 0, each ending where the next starts and the last at the duration, so they
cover the video with no gap or overlap. When the answer yields no usable chapter the
result is None and the caller falls back to its offline method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.types import Segment
from model.qwen.generate import generate_all
from model.qwen.loader import loaded
from model.qwen.parse import START_KEYS, clean_text, iter_json, parse_time, strip_thinking
from model.qwen.prompt import chapter_messages, render

TITLE_KEYS = ("title", "name", "heading", "chapter", "label")
SUMMARY_KEYS = ("summary", "description", "desc", "text", "content")
MAX_TITLE_CHARS = 120


def write_chapters(segments: Sequence[Segment], *, duration_ms: int, settings,
                   max_new_tokens: int = 1024) -> tuple[list[dict], str] | None:
    """([{start_ms, end_ms, title, summary}], overall summary), or None when the model's
    answer is unusable. Raises ModelUnavailable when no Qwen3-VL is configured."""
    if duration_ms <= 0 or not any(s.text.strip() for s in segments):
        return None
    rec = loaded(settings)
    processor = rec.processor
    text = render(processor, chapter_messages(segments, duration_ms=duration_ms))
    answer = generate_all(
        rec.model, processor, [text],
        lambda batch: processor(text=list(batch), padding=True, padding_side="left", return_tensors="pt"),
        batch_size=1, max_new_tokens=max_new_tokens,
    )[0]
    return parse_chapters(answer, duration_ms=duration_ms)


def _first(fields: dict[str, Any], keys: Sequence[str]) -> Any:
    return next((fields[k] for k in keys if k in fields), None)


def _chapter_lists(value: Any, depth: int = 0):
    """(chapter dicts, summary) candidates: {"chapters": [...], "summary": ...} or a bare list."""
    if depth > 6:
        return
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        yield value, ""
    elif isinstance(value, dict):
        fields = {str(k).lower(): v for k, v in value.items()}
        chapters = fields.get("chapters")
        if isinstance(chapters, list):
            yield [c for c in chapters if isinstance(c, dict)], clean_text(_first(fields, SUMMARY_KEYS))
        for child in fields.values():
            if isinstance(child, (dict, list)):
                yield from _chapter_lists(child, depth + 1)


def parse_chapters(text: str, *, duration_ms: int) -> tuple[list[dict], str] | None:
    if not isinstance(text, str) or duration_ms <= 0:
        return None
    for items, summary in (c for value in iter_json(strip_thinking(text)) for c in _chapter_lists(value)):
        starts: dict[int, tuple[str, str]] = {}
        for item in items:
            fields = {str(k).strip().lower(): v for k, v in item.items()}
            start = parse_time(_first(fields, START_KEYS + ("time", "timestamp", "at")))
            title = clean_text(_first(fields, TITLE_KEYS))[:MAX_TITLE_CHARS]
            if start is None or not title:
                continue
            ms = round(start * 1000)
            if 0 <= ms < duration_ms:
                starts.setdefault(ms, (title, clean_text(_first(fields, SUMMARY_KEYS))))
        if not starts:
            continue
        order = sorted(starts)
        bounds = [0, *order[1:], duration_ms]  # the first chapter opens the video
        chapters = [{"start_ms": bounds[i], "end_ms": bounds[i + 1], "title": starts[k][0],
                     "summary": starts[k][1]} for i, k in enumerate(order)]
        if not summary:
            summary = " ".join(c["summary"] or c["title"] for c in chapters)
        return chapters, summary
    return None

