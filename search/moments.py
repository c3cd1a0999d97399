"""Moments from scored segments: segments taken best first, neighbours of one video merged
(see `search.query` for the rules), each moment's bounds those of its segments. A visual
segment carries its shot's bounds (a fence): a moment holding one never crosses them, so a
moment found by how it looks lies inside one shot."""

from dataclasses import dataclass, field

from core.config import Settings
from core.times import seconds
from core.types import SCREEN_TEXT
from search import thumbnails

MERGE_RATIO = 0.6


@dataclass
class Moment:
    video_id: str
    start_ms: int
    end_ms: int
    score: float
    weak: bool
    kinds: list[str]
    text: str
    segments: list[dict] = field(default_factory=list)
    thumbnail_ms: int | None = None     # the keyframe that shows it
    grounded: bool | None = None        # None: not asked; False: asked, nothing placed

    def to_json(self) -> dict:
        out = {"video_id": self.video_id, "start": seconds(self.start_ms),
              "end": seconds(self.end_ms),
              "score": round(self.score, 3), "weak": self.weak, "kinds": self.kinds,
              "text": self.text,
              "segments": [{"id": g["id"], "start": seconds(g["start_ms"]),
                            "end": seconds(g["end_ms"]),
                            "kind": g["kind"], "text": g["text"], "score": g["score"]}
                           for g in self.segments],
              "thumbnail": thumbnails.url(self.video_id, self.thumbnail_ms)}
        if self.grounded is not None:   # only searches that asked for grounding carry it
            out["grounded"] = self.grounded
        return out


def _inside(fence: tuple | None, start: int, end: int) -> bool:
    return fence is None or (fence[0] <= start and end <= fence[1])


def _meet(a: tuple | None, b: tuple | None) -> tuple | None:
    return b if a is None else a if b is None else (max(a[0], b[0]), min(a[1], b[1]))


def _near(row, g: dict, gap: int) -> bool:
    """Whether a segment may join a moment. Screen text joins a moment while on screen with
    it (another line of the same slide), or beside one of its phrases (the line said, then
    shown): the next slide or the next reading of a clock is another text, and must not
    stretch the bounds of the one that matched, even once speech joined. Speech groups
    within the gap."""
    if row.kind == SCREEN_TEXT:
        return row.start_ms < g["end"] and row.end_ms > g["start"] or any(
            t[0].kind != SCREEN_TEXT and _within(row, t[0].start_ms, t[0].end_ms, gap)
            for t in g["items"])
    return _within(row, g["start"], g["end"], gap)


def _within(row, start: int, end: int, gap: int) -> bool:
    return row.start_ms <= end + gap and row.end_ms >= start - gap


def _longest(length: int, gap: int) -> int:
    """The longest segment that may set the bounds of a moment whose core lasts `length`."""
    return max(2 * length, length + 2 * gap)


def _group(items: list[tuple], gap: int) -> tuple[list[dict], list[tuple]]:
    """Moments from scored segments taken best first, and the segments left out as much
    weaker neighbours of a moment. An item is (row, score, fused rank value) and, for a
    visual segment, its shot's (start_ms, end_ms): a moment never grows past it."""
    groups: list[dict] = []
    dropped = []
    for item in sorted(items, key=lambda t: (-t[1], -t[2], t[0].id)):
        row, p = item[0], item[1]
        fence = item[3] if len(item) > 3 else None
        near = [g for g in groups if g["video_id"] == row.video_id and _near(row, g, gap)]
        near = [g for g in near if all(_inside(f, min(g["start"], row.start_ms),
                                               max(g["end"], row.end_ms))
                                       for f in (fence, g["fence"]))]
        if not near:
            groups.append({"video_id": row.video_id, "start": row.start_ms, "end": row.end_ms,
                           "best": p, "rrf": item[2], "items": [item], "fence": fence})
            continue
        g = near[0]
        anchor = g["items"][0][0]
        if p < MERGE_RATIO * g["best"] or row.end_ms - row.start_ms > _longest(
                anchor.end_ms - anchor.start_ms, gap):
            # A much weaker neighbour, or one far longer than the best segment (a slide on
            # screen for a minute around the sentence that answers): it would blur the
            # moment's bounds. Kept aside, in case fewer than k moments are found.
            dropped.append(item)
            continue
        g["items"].append(item)
        g["start"], g["end"] = min(g["start"], row.start_ms), max(g["end"], row.end_ms)
        g["fence"] = _meet(g["fence"], fence)
        for other in near[1:]:     # the segment bridged two moments: they become one
            fence = _meet(g["fence"], other["fence"])
            if other["best"] >= MERGE_RATIO * g["best"] and _inside(
                    fence, min(g["start"], other["start"]), max(g["end"], other["end"])):
                g["fence"] = fence
                g["items"] += other["items"]
                g["start"], g["end"] = min(g["start"], other["start"]), max(g["end"], other["end"])
                g["rrf"] = max(g["rrf"], other["rrf"])
                groups.remove(other)
    return groups, dropped


def _bounds(items: list[tuple], gap: int, span: tuple[int, int]) -> tuple[int, int]:
    """A moment's bounds: those of its segments, except screen text far longer than what
    was said with it. A slide on screen for a minute around the sentence that answers
    (both matched, so both joined) gives the moment its text, the sentence its time."""
    said = [t[0] for t in items if t[0].kind != SCREEN_TEXT]
    if not said:
        return span
    lo, hi = min(r.start_ms for r in said), max(r.end_ms for r in said)
    kept = said + [t[0] for t in items if t[0].kind == SCREEN_TEXT
                   and t[0].end_ms - t[0].start_ms <= _longest(hi - lo, gap)]
    return min(r.start_ms for r in kept), max(r.end_ms for r in kept)


def moments(scored: list[tuple], settings: Settings, k: int) -> list[Moment]:
    """The k best moments from scored segments (row, score, fused rank value[, shot
    bounds]). Much weaker neighbours of a moment are left out of it; they come back as
    moments of their own only when fewer than k moments were found (a narrow filter still
    returns k results)."""
    gap = round(settings.search.merge_gap_s * 1000)
    groups, dropped = _group(scored, gap)
    if len(groups) < k and dropped:
        groups += _group(dropped, gap)[0]
    weak = settings.search.weak_score
    out = []
    order = lambda g: (-g["best"], -g["rrf"], g["video_id"], g["start"])  # noqa: E731
    for g in sorted(groups, key=order)[:k]:
        items = sorted(g["items"], key=lambda t: (t[0].start_ms, t[0].end_ms, t[0].id))
        best = float(g["best"])
        start, end = _bounds(items, gap, (g["start"], g["end"]))
        out.append(Moment(
            video_id=g["video_id"], start_ms=start, end_ms=end, score=best,
            weak=best < weak, kinds=sorted({t[0].kind for t in items}),
            text=" … ".join(dict.fromkeys(" ".join(t[0].text.split()) for t in items))[:500],
            segments=[{"id": t[0].id, "start_ms": t[0].start_ms, "end_ms": t[0].end_ms,
                       "kind": t[0].kind, "text": t[0].text, "score": round(float(t[1]), 4)}
                      for t in items]))
    return out
