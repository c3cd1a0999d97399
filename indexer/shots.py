"""Shots: cut detection on the decoded frames, and the keyframes that stand for each shot.

Each frame is reduced to a small signature (an HSV colour histogram and an 8x8 grid of mean
luma, from a ~64 px thumbnail); the change between consecutive frames is the mean of the
histograms' half L1 distance and the grids' mean absolute difference, both 0..1.
- A hard cut is a change that is large in itself (>= HIGH), larger than its neighbours, and
  RATIO times the median change around it (other such peaks left out: nearby cuts are not
  motion), so steady motion (pans, crowds) does not cut.
- A dissolve spreads one change over several frames, each step below HIGH: a short run of
  raised changes (above LOW) whose ends differ by HIGH or more is one cut, at the frame where
  half of the run's change is done. A slow pan is a long run: no cut.
A cut at frame i means the new shot starts at frames[i].t_ms, so a detected cut is never
more than one sampling interval from the true one. All times are the frames' own t_ms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.types import Frame

THUMB_W = 64
BINS = (16, 4, 8)          # hue, saturation, value
GRID = 8
HIGH = 0.12                # a change this large between two frames can be a cut
STEP_SHARE = 0.6           # a step this share of its transition's change is a hard cut
LOW = 0.04                 # a change above this is part of a transition or motion
RATIO = 3.0                # a cut stands this far above the local median change
CONTEXT = 4                # frames each side for the local median
MAX_DISSOLVE_S = 4.0       # longer gradual changes are camera motion, not transitions
CLOSE = 0.05               # signatures this near the shot's mean are equally representative


@dataclass(frozen=True)
class Shot:
    start_ms: int
    end_ms: int                          # the next shot's start; the span's end for the last
    keyframes: tuple[Frame, ...]         # one per piece of at most max_gap_s, in time order

    @property
    def keyframe_ms(self) -> tuple[int, ...]:
        return tuple(f.t_ms for f in self.keyframes)


@dataclass(frozen=True)
class Signature:
    hist: np.ndarray       # concatenated H, S, V histograms, each summing to 1
    grid: np.ndarray       # GRID x GRID mean luma, 0..1
    sharpness: float       # mean absolute luma gradient


def signature(image: np.ndarray) -> Signature:
    h, w = image.shape[:2]
    step = max(1, w // THUMB_W)
    small = image[::step, ::step].astype(np.float32) / 255.0
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    top, low = small.max(axis=-1), small.min(axis=-1)
    span = np.maximum(top - low, 1e-6)
    hue = np.where(top == r, (g - b) / span % 6, np.where(top == g, (b - r) / span + 2,
                                                         (r - g) / span + 4)) / 6.0
    sat = np.where(top > 0, (top - low) / np.maximum(top, 1e-6), 0.0)
    hists = [np.histogram(x, bins=n, range=(0, 1))[0] for x, n in zip((hue, sat, top), BINS)]
    hist = np.concatenate([x / max(1, x.sum()) for x in hists]).astype(np.float32)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    gh, gw = (luma.shape[0] // GRID) * GRID, (luma.shape[1] // GRID) * GRID
    grid = luma[:gh, :gw].reshape(GRID, gh // GRID, GRID, gw // GRID).mean(axis=(1, 3))
    sharp = float(np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean())
    return Signature(hist, grid, sharp)


def distance(a: Signature, b: Signature) -> float:
    hist = 0.5 * float(np.abs(a.hist - b.hist).sum()) / len(BINS)
    return 0.5 * hist + 0.5 * float(np.abs(a.grid - b.grid).mean())


def _hard_cuts(d: np.ndarray) -> list[int]:
    # Candidates: large changes that are local maxima. The motion level around one is the
    # median of the changes near it that are not candidates themselves: shots of two or
    # three samples put other cuts in the context, and those are not motion.
    n = len(d)
    peaks = {i for i in range(1, n)
             if d[i] >= HIGH and d[i] > d[i - 1] and (i + 1 == n or d[i] >= d[i + 1])}
    cuts = []
    for i in sorted(peaks):
        near = [j for j in (*range(max(1, i - CONTEXT), i - 1), *range(i + 2, min(n, i + 2 + CONTEXT)))
                if j not in peaks]
        if not near or d[i] >= RATIO * float(np.median(d[near])):
            cuts.append(i)
    return cuts


def _runs(d: np.ndarray) -> list[tuple[int, int]]:
    """Maximal [a, b] of consecutive frames whose change from the previous frame is raised."""
    runs, a = [], None
    for i in range(1, len(d) + 1):
        raised = i < len(d) and d[i] > LOW
        if raised and a is None:
            a = i
        elif not raised and a is not None:
            runs.append((a, i - 1))
            a = None
    return runs


def cuts(frames: Sequence[Frame], sigs: Sequence[Signature] | None = None) -> list[int]:
    """Indices of the frames that start a new shot (never 0), sorted."""
    sigs = sigs if sigs is not None else [signature(f.image) for f in frames]
    d = np.zeros(len(frames), np.float32)
    for i in range(1, len(frames)):
        d[i] = distance(sigs[i - 1], sigs[i])
    found = set(_hard_cuts(d))
    for a, b in _runs(d):
        if a == b or frames[b].t_ms - frames[a - 1].t_ms > MAX_DISSOLVE_S * 1000:
            continue
        total = distance(sigs[a - 1], sigs[b])
        if total < HIGH:
            continue
        # One transition, one cut: where one step did most of the change (a hard cut amid
        # motion), else where half of the change is done (a dissolve or a fade).
        found -= set(range(a, b + 1))
        top = a + int(np.argmax(d[a:b + 1]))
        done = np.cumsum(d[a:b + 1])
        half = a + int(np.searchsorted(done, done[-1] / 2))
        found.add(top if d[top] >= STEP_SHARE * total else half)
    return sorted(found)


def keyframes(frames: Sequence[Frame], sigs: Sequence[Signature], max_gap_s: float) -> tuple[Frame, ...]:
    """The shot cut into equal pieces of at most max_gap_s; per piece, among the frames
    nearest its mean look, the sharpest."""
    span = frames[-1].t_ms - frames[0].t_ms
    pieces = max(1, int(np.ceil(span / (max_gap_s * 1000))) if span > 0 else 1)
    bounds = [frames[0].t_ms + span * k / pieces for k in range(pieces + 1)]
    out = []
    for k in range(pieces):
        idx = [i for i, f in enumerate(frames)
               if bounds[k] <= f.t_ms < bounds[k + 1] or (k == pieces - 1 and f.t_ms == bounds[-1])]
        if not idx:
            continue
        mean = np.mean([np.concatenate([sigs[i].hist, sigs[i].grid.ravel()]) for i in idx], axis=0)
        far = [float(np.abs(np.concatenate([sigs[i].hist, sigs[i].grid.ravel()]) - mean).mean())
               for i in idx]
        near = [i for i, x in zip(idx, far) if x <= min(far) + CLOSE]
        out.append(frames[max(near, key=lambda i: sigs[i].sharpness)])
    return tuple(out)


def detect(frames: Sequence[Frame], *, end_ms: int | None = None,
           max_gap_s: float = 4.0) -> list[Shot]:
    """Shots tiling [frames[0].t_ms, end_ms) with their keyframes. end_ms defaults to the
    last frame's time plus the median sampling interval."""
    frames = sorted(frames, key=lambda f: f.t_ms)
    if not frames:
        return []
    if end_ms is None:
        step = int(np.median(np.diff([f.t_ms for f in frames]))) if len(frames) > 1 else 1000
        end_ms = frames[-1].t_ms + max(1, step)
    if end_ms <= frames[-1].t_ms:
        raise ValueError(f"end_ms {end_ms} is not after the last frame ({frames[-1].t_ms})")
    sigs = [signature(f.image) for f in frames]
    starts = [0] + cuts(frames, sigs) + [len(frames)]
    shots = []
    for a, b in zip(starts[:-1], starts[1:]):
        stop = frames[b].t_ms if b < len(frames) else end_ms
        shots.append(Shot(frames[a].t_ms, stop, keyframes(frames[a:b], sigs[a:b], max_gap_s)))
    return shots
