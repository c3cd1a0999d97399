"""Turn a Qwen3-VL answer into timed events. Pure functions, no model.

The model is asked for a JSON array of {"start", "end", "caption"} in absolute seconds, but
a real answer may wrap the JSON in prose or a ```json fence, stop mid-array when it hits
max_new_tokens, carry a Thinking edition's reasoning, use other key names, or write times
as mm:ss or hh:mm:ss. Everything here is lenient about the form and strict about the
result: every event returned lies inside the window, with start <= end, and whatever cannot
be placed is dropped. Nothing here raises on any input text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

START_KEYS = ("start", "start_time", "starttime", "start_s", "start_sec", "start_seconds",
              "begin", "from", "t0", "start_timestamp")
END_KEYS = ("end", "end_time", "endtime", "end_s", "end_sec", "end_seconds", "stop", "to", "t1",
            "end_timestamp")
SPAN_KEYS = ("time", "timestamp", "times", "span", "range", "at", "t", "second", "seconds")
TEXT_KEYS = ("caption", "text", "description", "event", "label", "action", "summary", "content",
             "title", "desc")

MAX_CAPTION_CHARS = 1000
_MAX_SECONDS = 1e9  # ~31 years: anything larger is garbage, and keeps int(ms) exact

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S)
_UNIT = r"\s*(?:s|sec|secs|second|seconds)?"
_CLOCK = r"(?:\d+:)?\d+:\d{1,2}(?:[.,]\d+)?"
_NUM = r"\d+(?:\.\d+)?"
_TIME_TOKEN = rf"<?(?:{_CLOCK}|{_NUM}){_UNIT}>?"
_SPAN = re.compile(rf"^\s*({_TIME_TOKEN})\s*(?:-|–|—|to|~)\s*({_TIME_TOKEN})\s*$", re.I)
# "[00:12 - 00:15] a man opens the door" / "3600.0-3604.5 s: a car passes": answers that
# ignore the JSON instruction but still time their lines.
_LINE = re.compile(
    rf"^\s*(?:[-*•]\s*)?[\[(]?\s*({_TIME_TOKEN})\s*(?:-|–|—|to|~)\s*({_TIME_TOKEN})\s*[\])]?"
    rf"\s*[:\-–—|]?\s*(.+?)\s*$", re.I)


def strip_thinking(text: str) -> str:
    """Drop a Thinking edition's reasoning. Its prompt opens the <think> block, so the
    output usually holds only the closing tag: everything before the last `</think>` is
    reasoning. An unclosed `<think>` means the reasoning was cut off: nothing after it is
    an answer."""
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text


def parse_time(value: Any) -> float | None:
    """Seconds from a number or a string in seconds ("3600", "3600.5s", "<3600.0 seconds>"),
    mm:ss(.ff) or hh:mm:ss(.fff); None when it is not a time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_time_str(value)
        if seconds is None:
            return None
    else:
        return None
    if not math.isfinite(seconds) or seconds < 0 or seconds > _MAX_SECONDS:
        return None
    return seconds


def _parse_time_str(raw: str) -> float | None:
    s = raw.strip().strip("<>").strip()
    s = re.sub(r"\s*(?:seconds|second|secs|sec|s)\s*$", "", s, flags=re.I)
    if len(s) > 40:
        return None
    if re.fullmatch(_NUM, s):
        return float(s)
    m = re.fullmatch(r"(?:(\d+):)?(\d+):(\d{1,2}(?:[.,]\d+)?)", s)
    if not m:
        return None
    hours, minutes, secs = m.group(1), int(m.group(2)), float(m.group(3).replace(",", "."))
    if secs >= 60 or (hours is not None and minutes >= 60):
        return None
    return (int(hours) * 3600 if hours is not None else 0) + minutes * 60 + secs


def _span(value: Any) -> tuple[float | None, float | None]:
    """A start/end pair from one field: "00:12 - 00:15", [12, 15] or a single time."""
    if isinstance(value, (list, tuple)):
        if len(value) == 2:
            return parse_time(value[0]), parse_time(value[1])
        if len(value) == 1:
            return parse_time(value[0]), None
        return None, None
    if isinstance(value, str):
        m = _SPAN.match(value)
        if m:
            return parse_time(m.group(1)), parse_time(m.group(2))
    return parse_time(value), None


def clean_text(value: Any) -> str:
    """One line of text from a caption-like value; "" when there is none."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if isinstance(v, (str, int, float)))
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return ""
    return " ".join(str(value).split())[:MAX_CAPTION_CHARS]


def _event(item: Any) -> tuple[float | None, float | None, str] | None:
    """(start s, end s or None, caption) from one answer item, or None if it is not one."""
    if isinstance(item, dict):
        fields = {str(k).strip().lower(): v for k, v in item.items()}
        start = next((parse_time(fields[k]) for k in START_KEYS if k in fields), None)
        end = next((parse_time(fields[k]) for k in END_KEYS if k in fields), None)
        if start is None:
            for k in SPAN_KEYS:
                if k in fields:
                    start, span_end = _span(fields[k])
                    end = end if end is not None else span_end
                    break
        text = next((clean_text(fields[k]) for k in TEXT_KEYS if k in fields), "")
        if start is None and end is None:
            return None
        return start, end, text
    if isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[2], str):
        return parse_time(item[0]), parse_time(item[1]), clean_text(item[2])
    return None


def _walk(obj: Any, depth: int = 0) -> Iterator[tuple[float | None, float | None, str]]:
    """Events anywhere in a decoded JSON value: a list of events, {"events": [...]}, ..."""
    if depth > 8:
        return
    ev = _event(obj)
    if ev is not None:
        yield ev
        return
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    for child in children:
        if isinstance(child, (dict, list)):
            yield from _walk(child, depth + 1)


def _bracket_pairs(text: str) -> dict[int, int]:
    """For every bracket that is closed, its index -> the index just past its closer, in one
    linear pass. Quotes count only inside brackets (outside they are prose); a mismatched
    closer resets, and openers never closed (an answer cut off) are simply absent."""
    pairs: dict[int, int] = {}
    stack: list[tuple[str, int]] = []
    in_str = False
    escaped = False
    for j, c in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c in "[{":
            stack.append(("]" if c == "[" else "}", j))
        elif c in "]}":
            if stack and stack[-1][0] == c:
                pairs[stack.pop()[1]] = j + 1
            else:
                stack.clear()
        elif c == '"' and stack:
            in_str = True
    return pairs


_KV = re.compile(
    r"""["']?([A-Za-z_][\w ]{0,30}?)["']?\s*[:=]\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^,}\]]+)""")


def _loads_lenient(chunk: str) -> Any:
    """json.loads, then a key: value scrape for near-JSON (single quotes, bare keys,
    trailing commas) that a small model writes."""
    try:
        return json.loads(chunk)
    except (ValueError, RecursionError):
        pass
    if not chunk.startswith("{"):
        return None
    out: dict[str, Any] = {}
    for key, raw in _KV.findall(chunk):
        raw = raw.strip()
        if raw[:1] == '"':
            try:
                value: Any = json.loads(raw)
            except ValueError:
                value = raw[1:-1]
        elif raw[:1] == "'":
            value = raw[1:-1].replace("\\'", "'")
        else:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        out.setdefault(key.strip().lower(), value)
    return out or None


def iter_json(text: str) -> Iterator[Any]:
    """Every JSON value (object or array) found in prose, outermost first. A value cut off
    by the token limit is entered instead, so its complete inner objects still come out."""
    pairs = _bracket_pairs(text)
    i = 0
    n = len(text)
    while i < n:
        if text[i] in "[{":
            end = pairs.get(i)
            if end is not None:
                value = _loads_lenient(text[i:end])
                if value is not None and value != [] and value != {}:
                    yield value
                    i = end
                    continue
        i += 1


def _lines(text: str) -> Iterator[tuple[float | None, float | None, str]]:
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            yield parse_time(m.group(1)), parse_time(m.group(2)), clean_text(m.group(3))


def _place(start: float | None, end: float | None, start_ms: int, end_ms: int) -> tuple[int, int] | None:
    """Window-clamped integer ms, or None. An event with no end lasts one second."""
    if start is None:
        if end is None:
            return None
        start = end
    s = round(start * 1000)
    e = round(end * 1000) if end is not None else s + 1000
    if e < s:
        s, e = e, s
    if s == e:  # a moment: it must fall inside the window
        return (s, e) if start_ms <= s < end_ms else None
    lo, hi = max(s, start_ms), min(e, end_ms)
    return (lo, hi) if lo < hi else None  # no overlap with the window: cannot be placed


def parse_events(text: str, *, start_ms: int, end_ms: int) -> list[tuple[int, int, str]]:
    """Events as (start_ms, end_ms, caption), sorted, inside [start_ms, end_ms]."""
    if not isinstance(text, str) or end_ms <= start_ms:
        return []
    body = strip_thinking(text)
    raw = [ev for value in iter_json(body) for ev in _walk(value)]
    if not raw:
        raw = list(_lines(body))
    out: set[tuple[int, int, str]] = set()
    for start, end, caption in raw:
        if not caption:
            continue
        placed = _place(start, end, start_ms, end_ms)
        if placed is not None:
            out.add((placed[0], placed[1], caption))
    return sorted(out)
