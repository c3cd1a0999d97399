"""Chapters and a summary for every video, covering [0, duration) without gaps or overlaps.

Offline method (always available): topic segmentation over segment embeddings. The timeline
is cut into equal bins, each bin is the mean embedding of the segments in it, and chapter
boundaries go at the deepest valleys of cosine similarity between neighbouring bins
(TextTiling on embeddings). A chapter's title is the segment text nearest its centroid.
"""

import re

import numpy as np
from sqlalchemy import delete

from core.config import Settings
from store import queries
from store.db import session_scope
from store.schema import Summary

CHAPTER_MS = 300_000    # about one chapter per 5 minutes of video
MIN_CHAPTER_MS = 30_000
MAX_CHAPTERS = 20
OFFLINE = "offline-texttiling"


def plan_chapters(times: list[tuple[int, int]], vectors: np.ndarray, duration_ms: int
                  ) -> list[tuple[int, int]]:
    """Chapter bounds covering [0, duration_ms) from timed, unit-length vectors."""
    want = int(min(MAX_CHAPTERS, max(1, round(duration_ms / CHAPTER_MS)),
                   max(1, duration_ms // MIN_CHAPTER_MS)))
    if want == 1 or len(times) < 2:
        return [(0, duration_ms)]
    bins = want * 4
    edges = np.linspace(0, duration_ms, bins + 1).round().astype(int)
    centre = np.array([(a + b) / 2 for a, b in times])
    means = np.zeros((bins, vectors.shape[1]), np.float32)
    for i in range(bins):
        inside = (centre >= edges[i]) & (centre < edges[i + 1])
        if inside.any():
            means[i] = vectors[inside].mean(axis=0)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    means = np.divide(means, norms, out=np.zeros_like(means), where=norms > 0)
    sim = (means[:-1] * means[1:]).sum(axis=1)   # similarity across edge i+1
    cuts: list[int] = []
    for edge in np.argsort(sim, kind="stable") + 1:
        if len(cuts) == want - 1:
            break
        if all(abs(edge - c) >= 2 for c in cuts) and 2 <= edge <= bins - 2:
            cuts.append(int(edge))
    bounds = [0] + [int(edges[c]) for c in sorted(cuts)] + [duration_ms]
    return list(zip(bounds[:-1], bounds[1:]))


def _title(texts: list[str], vectors: np.ndarray) -> str:
    if not texts:
        return "No speech or on-screen text"
    centroid = vectors.mean(axis=0)
    best = texts[int(np.argmax(vectors @ centroid))]
    best = re.sub(r"\s+", " ", best).strip()
    return best if len(best) <= 70 else best[:67].rsplit(" ", 1)[0] + "..."


def offline_chapters(segments, duration_ms: int) -> tuple[list[dict], str]:
    usable = [s for s in segments if s.embedding]
    vectors = (np.stack([np.frombuffer(s.embedding, np.float32) for s in usable])
               if usable else np.zeros((0, 1), np.float32))
    bounds = plan_chapters([(s.start_ms, s.end_ms) for s in usable], vectors, duration_ms)
    chapters = []
    for start, end in bounds:
        inside = [i for i, s in enumerate(usable) if start <= s.start_ms < end]
        texts = [usable[i].text for i in inside]
        chapters.append({"start_ms": start, "end_ms": end,
                         "title": _title(texts, vectors[inside] if inside else vectors[:0]),
                         "summary": " ".join(dict.fromkeys(texts))[:400]})
    kinds = sorted({s.kind for s in segments})
    summary = (f"{len(segments)} segments ({', '.join(kinds)}) in {len(chapters)} chapter"
               f"{'s' if len(chapters) != 1 else ''}: "
               + "; ".join(c["title"] for c in chapters)) if segments else \
        "Nothing was heard or read in this video."
    return chapters, summary


def build_summary(settings: Settings, video_id: str) -> None:
    """Replace the video's summary and chapters."""
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        duration = video.duration_ms or 0
        segments = queries.get_segments(s, video_id=video_id)
        chapters, summary = offline_chapters(segments, duration)
        s.execute(delete(Summary).where(Summary.video_id == video_id))
        s.add(Summary(video_id=video_id, kind="summary", idx=0, start_ms=0, end_ms=duration,
                      title="", text=summary, model_id=OFFLINE))
        s.add_all(Summary(video_id=video_id, kind="chapter", idx=i, start_ms=c["start_ms"],
                          end_ms=c["end_ms"], title=c["title"], text=c["summary"],
                          model_id=OFFLINE) for i, c in enumerate(chapters))


def get_summary(settings: Settings, video_id: str, *, tenant: str | None = None) -> dict:
    with session_scope(settings) as s:
        queries.get_video(s, video_id, tenant=tenant)
        rows = queries.get_summaries(s, video_id=video_id)
    summary = next((r for r in rows if r.kind == "summary"), None)
    return {"video_id": video_id, "summary": summary.text if summary else None,
            "model": summary.model_id if summary else None,
            "chapters": [{"start": r.start_ms / 1000, "end": r.end_ms / 1000,
                          "title": r.title, "summary": r.text}
                         for r in rows if r.kind == "chapter"]}
