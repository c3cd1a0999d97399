"""A window's frames as the pre-decoded video Qwen3-VL's processor takes, with the visual
token budget fixed here rather than by the processor.

Qwen3-VL cuts frames into 16 px patches, pairs consecutive frames (temporal patch 2) and
merges 2x2 patches into one LLM token, so a frame group of H x W pixels costs
(H/32)*(W/32) tokens when H and W are multiples of 32. Frames are resized here to such a
size and the processor is called with do_resize=False, so it cannot shrink them on its own
(its smart_resize would rescale a whole window to fit `size["longest_edge"]`) and the
token count of a window is known before the model sees it.

Timestamps: the processor labels each frame group `<{t:.1f} seconds>` with
t = mean(frames_indices of the group's first and last frame) / fps. We pass fps=1000 and,
as the indices, each frame's group's *first* frame time in ms (both frames of a pair get
the pair's first t_ms). The label is then the exact absolute time the group starts:
`<3600.0 seconds>` for a window starting at one hour, as the chronoscope invariant requires.
The trained convention would be the pair's midpoint (0.5 s later at 1 fps); labelling the
start keeps event starts aligned with the frame where they first appear, and the half
interval is below the second-level resolution captions are parsed at. Frames are never
resampled: do_sample_frames=False and every frame passed is a frame the decoder produced
(an odd count repeats the last frame, as the processor itself would).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvF

from core.types import Frame

PATCH = 16
MERGE = 2
TEMPORAL = 2
FACTOR = PATCH * MERGE  # pixels per LLM token side


@dataclass(frozen=True)
class VideoInput:
    pixels: torch.Tensor            # T x 3 x H x W uint8, T even
    metadata: dict[str, Any]        # VideoMetadata fields for the processor
    group_times_ms: list[int]       # absolute start of each frame group
    tokens_per_group: int

    @property
    def grid_thw(self) -> tuple[int, int, int]:
        t, _, h, w = self.pixels.shape
        return t // TEMPORAL, h // PATCH, w // PATCH

    @property
    def num_tokens(self) -> int:
        return len(self.group_times_ms) * self.tokens_per_group


def fit_size(height: int, width: int, side: int) -> tuple[int, int]:
    """Longest side to `side` (never upscaled), both sides multiples of 32, aspect kept."""
    side = max(FACTOR, side)
    scale = min(1.0, side / max(height, width))
    h = max(FACTOR, round(height * scale / FACTOR) * FACTOR)
    w = max(FACTOR, round(width * scale / FACTOR) * FACTOR)
    return h, w


def prepare_video(frames: list[Frame], side: int, device: torch.device | str | None = None) -> VideoInput:
    """Resize, pad to whole frame groups and label. `device` lets the resize run where the
    model is (a GPU resizes a window in well under a millisecond)."""
    if not frames:
        raise ValueError("a window needs at least one frame")
    frames = sorted(frames, key=lambda f: f.t_ms)
    height, width = frames[0].image.shape[:2]
    h, w = fit_size(height, width, side)
    resized = []
    for f in frames:
        img = torch.from_numpy(np.ascontiguousarray(f.image))
        if device is not None:
            img = img.to(device, non_blocking=True)
        img = img.permute(2, 0, 1)
        if img.shape[1:] != (h, w):
            img = tvF.resize(img, [h, w], interpolation=InterpolationMode.BICUBIC, antialias=True)
        resized.append(img)
    times = [f.t_ms for f in frames]
    if len(resized) % TEMPORAL:
        resized.append(resized[-1])
        times.append(times[-1])
    pixels = torch.stack(resized)
    group_times = times[::TEMPORAL]
    indices = [t for t in group_times for _ in range(TEMPORAL)]
    metadata = {
        "fps": 1000.0,
        "frames_indices": indices,
        "total_num_frames": len(indices),
        "duration": (times[-1] - times[0]) / 1000.0,
        "height": h,
        "width": w,
    }
    return VideoInput(pixels=pixels, metadata=metadata, group_times_ms=group_times,
                      tokens_per_group=(h // FACTOR) * (w // FACTOR))


# Passed with every processor call: the budget is fixed by prepare_video, not the processor.
PROCESSOR_VIDEO_KWARGS: dict[str, Any] = {
    "do_sample_frames": False,
    "do_resize": False,
    "cap_pixels_per_frame": False,
}
