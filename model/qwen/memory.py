"""The rolling memory: a short text of what earlier windows showed, carried into the next
window's prompt so captions stay coherent across hours (who is who, where we are).

It is built from the captions already produced, not by another model call: free, bounded
and deterministic. New lines go at the end; the oldest are dropped to stay within the
configured characters, and a caption that repeats the previous line (a static shot seen by
several windows) is not written twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.types import Segment


def update_memory(memory: str, segments: Sequence[Segment], *, limit: int) -> str:
    if limit <= 0:
        return ""
    lines = [line for line in memory.splitlines() if line.strip()]
    last_text = lines[-1].split(": ", 1)[-1] if lines else None
    for s in sorted(segments, key=lambda s: (s.start_ms, s.end_ms)):
        text = " ".join(s.text.split())
        if not text or text == last_text:
            continue
        lines.append(f"{s.start_ms / 1000:.0f}s: {text}")
        last_text = text
    while len(lines) > 1 and sum(len(x) + 1 for x in lines) - 1 > limit:
        lines.pop(0)
    out = "\n".join(lines)
    return out[-limit:] if len(out) > limit else out
