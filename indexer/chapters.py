"""Chapters and a summary for every video, covering [0, duration) without gaps or overlaps,
written when a video is finalized (read by `search.chapters.get_summary`).

With Qwen3-VL configured (settings.qwen.model), the model writes them from the timestamped
segments (`model.qwen.summarize.write_chapters`). Without it, or when it is unavailable or
its answer unusable, the offline method below runs, so every video has chapters.

Offline topic segmentation (greedy change points over segment embeddings). Segments are
taken in time order with their unit MiniLM vectors. A run of segments about one topic has
a long vector sum; cutting a run where the topic changes gains length:
    gain(i, m, j) = |S(i, m)| + |S(m, j)| - |S(i, j)|,  S = sum of the vectors,
computed for every cut at once from prefix sums. The best cut of the chapter with the most
significant gain is taken, again and again, while the gain is at least 1.3 times the 95th
percentile of the best gains of 24 random shuffles of the same chapter (a permutation test:
a topic change must beat what chance gives for those very segments) and at least 0.05 per
segment.
Chapter lengths are bounded relative to the duration: at least min_len = duration/12
(clamped to 15 s .. 5 min), at most max_len = max(3 x min_len, 20 min); a longer chapter is
cut at its best point even without a significant change. A silence of 2 x min_len or more
(no segment at all) becomes its own chapter. Cuts fall at the start of the first segment of
the new topic.

Titles: key phrases. Candidate 1-3 word phrases (no stopword at either end) are scored by
TF-IDF across the video's chapters; the best dozen are embedded and re-ranked by cosine to
the chapter's centroid (KeyBERT-style), and the best one or two become the title. A chapter
with no segment is "No speech or on-screen text". Each chapter's summary is its one or two
most central lines (nearest the centroid), in time order; the video's summary lists its
chapters and its most central lines.
"""

import logging
import math
import re
from collections import Counter

import numpy as np

from core import types
from core.config import Settings
from core.errors import ModelUnavailable
from core.times import clock
from store import queries, summaries
from store.db import session_scope

log = logging.getLogger(__name__)

OFFLINE = "offline-changepoints-v1"
EMPTY_TITLE = "No speech or on-screen text"
MIN_LEN_MS, MAX_MIN_LEN_MS, LONG_MS = 15_000, 300_000, 1_200_000
# A cut must gain 1.3x what the best cut of a shuffle gains (95th percentile) and 0.05 per
# segment: on a three-topic talk the real changes stand at 1.7-2.3x, steps inside one
# topic (a recipe's sauce, then its pasta) at 0.9-1.1x.
SIG_RATIO = 1.3
MIN_GAIN = 0.05
PERMUTATIONS = 24
TITLE_CANDIDATES = 12
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each even ever few
for from further get gets got had has have having he her here hers herself him himself his
how i if in into is it its itself just let like me more most much my myself no nor not now
of off oh ok okay on once one only or other our ours out over own really right same say
said she should so some such than that the their theirs them then there these they thing
things this those through to too under until up us very was we well were what when where
which while who whom why will with would yeah yes you your yours going gonna know think
""".split())


def chapter_lengths(duration_ms: int) -> tuple[int, int]:
    min_len = int(min(MAX_MIN_LEN_MS, max(MIN_LEN_MS, duration_ms / 12)))
    return min_len, max(3 * min_len, LONG_MS)


# ---------------------------------------------------------------------------------------
# Segmentation

def _best_cut(prefix: np.ndarray, i: int, j: int, allowed: np.ndarray) -> tuple[int, float]:
    """(m, gain) of the best cut of segments [i, j) among allowed m (absolute indices)."""
    if not len(allowed):
        return -1, 0.0
    whole = np.linalg.norm(prefix[j] - prefix[i])
    left = np.linalg.norm(prefix[allowed] - prefix[i], axis=1)
    right = np.linalg.norm(prefix[j] - prefix[allowed], axis=1)
    gains = left + right - whole
    best = int(np.argmax(gains))
    return int(allowed[best]), float(gains[best])


def _significance(vecs: np.ndarray, i: int, j: int, allowed: np.ndarray, gain: float,
                  rng: np.random.Generator) -> float:
    """The real best gain over the 95th percentile of the best gains of shuffles."""
    block = vecs[i:j]
    rel = allowed - i
    null = []
    for _ in range(PERMUTATIONS):
        shuffled = block[rng.permutation(len(block))]
        prefix = np.vstack([np.zeros(block.shape[1]), np.cumsum(shuffled, axis=0)])
        null.append(_best_cut(prefix, 0, len(block), rel)[1])
    return gain / max(float(np.percentile(null, 95)), 1e-9)


def silences(starts: list[int], ends: list[int], duration_ms: int, longest: int
             ) -> list[tuple[int, int]]:
    """(from, to) of the stretches of at least `longest` ms that no segment touches."""
    out, reach = [], 0
    for a, b in zip(starts, ends):
        if a - reach >= longest:
            out.append((reach, a))
        reach = max(reach, b)
    if duration_ms - reach >= longest:
        out.append((reach, duration_ms))
    return out


def plan_chapters(starts: list[int], vecs: np.ndarray, duration_ms: int,
                  ends: list[int] | None = None, *, seed: int = 0) -> list[int]:
    """Chapter start times (the first is 0) over [0, duration_ms), for segments starting at
    `starts` (sorted), ending at `ends`, with unit vectors `vecs`."""
    min_len, max_len = chapter_lengths(duration_ms)
    n = len(starts)
    ends = list(ends if ends is not None else starts)
    cuts = [0]
    for a, b in silences(starts, ends, duration_ms, 2 * min_len):
        for t in (a, b):                 # the silence becomes a chapter of its own
            if t - cuts[-1] >= min_len and duration_ms - t >= min_len:
                cuts.append(int(t))
    if n:
        at = np.asarray(starts, np.int64)
        prefix = np.vstack([np.zeros((1, vecs.shape[1])), np.cumsum(vecs, axis=0)])
        rng = np.random.default_rng(seed)
        edges = np.searchsorted(at, cuts + [duration_ms + 1])
        pieces = [(int(i), int(j)) for i, j in zip(edges, edges[1:]) if j > i]

        def bounds(i: int) -> tuple[int, int]:
            k = max(c for c in range(len(cuts)) if cuts[c] <= max(starts[i], 0))
            return cuts[k], (cuts[k + 1] if k + 1 < len(cuts) else duration_ms)

        while len(cuts) < max(1, duration_ms // min_len):
            best = None
            for i, j in pieces:
                lo, hi = bounds(i)
                m = np.arange(i + 1, j)
                allowed = m[(at[m] - lo >= min_len) & (hi - at[m] >= min_len)
                            & (at[m] > at[m - 1])] if len(m) else m
                cut, gain = _best_cut(prefix, i, j, allowed)
                if cut < 0:
                    continue
                forced = hi - lo > max_len
                strength = (_significance(vecs, i, j, allowed, gain, rng)
                            if gain >= MIN_GAIN * (j - i) else 0.0)
                if (forced or strength >= SIG_RATIO) and (best is None or (forced, strength) > best[0]):
                    best = ((forced, strength), i, j, cut)
            if best is None:
                break
            _, i, j, cut = best
            pieces.remove((i, j))
            pieces += [(i, cut), (cut, j)]
            cuts = sorted(cuts + [int(starts[cut])])
    # What is still longer than max_len has nothing to cut at (silence): even parts.
    out = []
    for a, b in zip(cuts, cuts[1:] + [duration_ms]):
        parts = max(1, math.ceil((b - a) / max_len))
        out += [a + round(k * (b - a) / parts) for k in range(parts)]
    return out


# ---------------------------------------------------------------------------------------
# Titles and summaries

def _tokens(text: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]|\d+(?:[.:,]\d+)*", text)


def phrases(text: str) -> list[str]:
    """Candidate key phrases (lowercase): 1-2 content words, or three with "of" in the
    middle ("cloud of gas"); never across a sentence or line break, never ending in an
    adverb or a past participle ("-ly", "-ed"), which makes titles read like fragments."""
    out = []
    for part in re.split(r"[.!?;:,\n•|()\[\]\"]+", text):
        words = [w.lower() for w in _tokens(part)]
        content = [w not in STOPWORDS and not w.isdigit() for w in words]
        for i, w in enumerate(words):
            if not content[i]:
                continue
            if len(w) >= 3:
                out.append(w)
            if i + 1 < len(words) and content[i + 1]:
                out.append(f"{w} {words[i + 1]}")
            if i + 2 < len(words) and words[i + 1] == "of" and content[i + 2]:
                out.append(f"{w} of {words[i + 2]}")
    return [p for p in out if not re.search(r"(ly|[^e]ed)$", p.rsplit(" ", 1)[-1])]


def _display(phrase: str, texts: list[str]) -> str:
    """The phrase as written in the text (keeps capitals of names), first letter up."""
    pattern = re.compile(r"\b" + r"\W+".join(map(re.escape, phrase.split())) + r"\b", re.I)
    for t in texts:
        found = pattern.search(t)
        if found:
            s = " ".join(found.group(0).split())
            return s[0].upper() + s[1:]
    return phrase[0].upper() + phrase[1:]


def titles(chapter_texts: list[list[str]], centroids: list[np.ndarray | None],
           settings: Settings) -> list[str]:
    counts = [Counter(p for t in texts for p in phrases(t)) for texts in chapter_texts]
    df = Counter(p for c in counts for p in c)
    k = len(counts)
    out = []
    for texts, count, centroid in zip(chapter_texts, counts, centroids):
        if not count:
            out.append(EMPTY_TITLE if not texts else _display(" ".join(texts[0].split()[:6]), []))
            continue
        tfidf = {p: (1 + math.log(c)) * math.log(1 + k / df[p]) * (1 + 0.5 * p.count(" "))
                 for p, c in count.items()}
        top = sorted(tfidf, key=lambda p: (-tfidf[p], p))[:TITLE_CANDIDATES]
        scores = {p: tfidf[p] / tfidf[top[0]] for p in top}
        if centroid is not None and len(top) > 1:
            try:
                from model import embed
                vecs = embed.embed(top, kind="document", settings=settings)
                c = centroid / max(np.linalg.norm(centroid), 1e-9)
                scores = {p: float(v @ c) + 0.5 * scores[p] for p, v in zip(top, vecs)}
            except ModelUnavailable:
                pass               # TF-IDF order alone still gives a fair title
        ranked = sorted(top, key=lambda p: (-scores[p], p))
        title = ranked[0]
        second = next((p for p in ranked[1:] if not set(p.split()) & set(title.split())), None)
        if second and title.count(" ") < 2 and scores[second] >= 0.8 * scores[title]:
            out.append(f"{_display(title, texts)}, {_display(second, texts).lower()}"
                       if not _display(second, texts)[1:2].isupper()
                       else f"{_display(title, texts)}, {_display(second, texts)}")
        else:
            out.append(_display(title, texts))
    for i in range(1, len(out)):          # two chapters in a row with one title help no one
        if out[i] == out[i - 1] and out[i] != EMPTY_TITLE:
            out[i] = f"{out[i]} (continued)"
    return out


def _central(texts: list[str], vecs: np.ndarray, n: int) -> list[int]:
    if not len(texts):
        return []
    centroid = vecs.mean(axis=0)
    order = np.argsort(-(vecs @ centroid), kind="stable")
    picked, seen = [], set()
    for i in order:
        key = " ".join(texts[i].lower().split())
        if key not in seen and len(key) > 3:
            picked.append(int(i))
            seen.add(key)
        if len(picked) == n:
            break
    return sorted(picked)


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1].rsplit(" ", 1)[0] + "…"


def offline_chapters(segments, duration_ms: int, settings: Settings
                     ) -> tuple[list[dict], str]:
    """([{start_ms, end_ms, title, summary}], summary) from stored segment rows."""
    segs = sorted((s for s in segments if s.text and s.text.strip()),
                  key=lambda s: (s.start_ms, s.end_ms, s.id or 0))
    dims = Counter(len(s.embedding) for s in segs if s.embedding)
    dim = dims.most_common(1)[0][0] // 4 if dims else 0
    usable = [s for s in segs if s.embedding and len(s.embedding) == 4 * dim]
    vecs = (np.stack([np.frombuffer(s.embedding, np.float32) for s in usable])
            if usable else np.zeros((0, max(dim, 1)), np.float32))
    starts = plan_chapters([s.start_ms for s in usable], vecs, duration_ms,
                           [s.end_ms for s in usable])
    ends = starts[1:] + [duration_ms]
    texts, members = [], []
    for a, b in zip(starts, ends):
        inside = [i for i, s in enumerate(usable) if a <= s.start_ms < b or (a == 0 and s.start_ms < 0)]
        members.append(inside)
        texts.append([usable[i].text for i in inside])
    centroids = [vecs[m].mean(axis=0) if m else None for m in members]
    names = titles(texts, centroids, settings)
    chapters = []
    for a, b, name, m in zip(starts, ends, names, members):
        lines = [usable[i].text for i in m]
        central = _central(lines, vecs[m], 2) if m else []
        chapters.append({"start_ms": a, "end_ms": b, "title": name,
                         "summary": " ".join(_clip(lines[i]) for i in central)})
    if not segs:
        return chapters, "Nothing was heard or read in this video."
    kinds = {types.SPEECH: "speech", types.SCREEN_TEXT: "on-screen text",
             types.VISUAL: "visual events"}
    have = " and ".join(kinds.get(k, k) for k in sorted({s.kind for s in segs}))
    toc = "; ".join(f"{c['title']} ({clock(c['start_ms'])})" for c in chapters)
    key = _central([s.text for s in usable], vecs, 2)
    summary = (f"{clock(duration_ms)} of {have} in {len(chapters)} chapter"
               f"{'s' if len(chapters) != 1 else ''}: {toc}.")
    if key:
        summary += " Key lines: " + " ".join(f"“{_clip(usable[i].text, 120)}”" for i in key)
    return chapters, summary


# ---------------------------------------------------------------------------------------
# Tiling and writing

def cover(chapters: list[dict], duration_ms: int) -> list[dict]:
    """Chapters sorted and forced to tile [0, duration): first at 0, each ending where the
    next starts, the last at the duration; empty or out-of-range ones dropped."""
    keep = sorted((c for c in chapters if 0 <= int(c["start_ms"]) < max(duration_ms, 1)),
                  key=lambda c: int(c["start_ms"]))
    out: list[dict] = []
    for c in keep:
        if out and int(c["start_ms"]) == out[-1]["start_ms"]:
            continue
        out.append({**c, "start_ms": int(c["start_ms"])})
    if not out:
        out = [{"start_ms": 0, "title": EMPTY_TITLE, "summary": ""}]
    out[0]["start_ms"] = 0
    for a, b in zip(out, out[1:]):
        a["end_ms"] = b["start_ms"]
    out[-1]["end_ms"] = max(duration_ms, 0)
    return out


def _qwen_chapters(settings: Settings, segments, duration_ms: int):
    """(chapters, summary, model id) from Qwen3-VL, or None to fall back."""
    try:
        from model.qwen import loader
        from model.qwen.summarize import write_chapters
        plain = [types.Segment(s.start_ms, s.end_ms, s.kind, s.text, s.model_id)
                 for s in segments]
        result = write_chapters(plain, duration_ms=duration_ms, settings=settings)
        if not result:
            return None
        chapters, summary = result
        return chapters, summary, loader.model_id(settings)
    except ModelUnavailable as e:
        log.warning("chapters: Qwen3-VL unavailable (%s); using the offline method", e)
    except Exception:       # every video must get chapters: a model failure falls back
        log.exception("chapters: Qwen3-VL failed; using the offline method")
    return None


def build_summary(settings: Settings, video_id: str) -> None:
    """Replace the video's summary and chapters (1 'summary' row + N 'chapter' rows that
    tile [0, duration))."""
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        segments = list(queries.get_segments(s, video_id=video_id))
        duration = video.duration_ms or max((g.end_ms for g in segments), default=0)
    got = _qwen_chapters(settings, segments, duration) if settings.qwen.model and segments \
        else None
    if got is not None:
        chapters, summary, model = got
    else:
        chapters, summary = offline_chapters(segments, duration, settings)
        model = OFFLINE
    chapters = cover(chapters, duration)
    with session_scope(settings) as s:
        queries.get_video(s, video_id)           # still there (a delete may have raced)
        summaries.replace_summaries(s, video_id=video_id, duration_ms=duration,
                                    summary=summary, chapters=chapters, model_id=model)
