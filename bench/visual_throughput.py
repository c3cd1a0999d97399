"""Visual embedding throughput on CPU: x realtime for the default visual sampling, the
chronoscope path beside a naive loop, measured in the same run.

    .venv/bin/python bench/visual_throughput.py [--video PATH] [--naive-frames 8]

Model: the default CPU model's real architecture (SigLIP 2 base patch16 224, its published
config: ViT-B/16 vision and text towers, fixtures/visual_tiny.SIGLIP2_BASE_224) with random
weights, saved and loaded through model.visual like a downloaded checkpoint (the text
vocabulary is the offline WordPiece one, 30522 rows instead of 256000: it changes only the
embedding table, not the image path measured here).

chronoscope path: indexer.decode.sample_frames at settings.decode (1 fps, 448 px) ->
indexer.shots.detect (keyframes per shot, one at least every visual.keyframe_max_gap_s)
-> model.visual.embed_images on the keyframes, batches of visual.batch_size.
naive loop: every sampled frame, processor and model called per frame (what a first
version would do); measured on --naive-frames frames and reported per frame.
x realtime = video seconds / wall seconds."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.config import Settings, VisualSettings  # noqa: E402
from fixtures.visual_tiny import build  # noqa: E402
from indexer.decode import sample_frames  # noqa: E402
from indexer.shots import detect  # noqa: E402
from model import visual  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"


def chronoscope_path(video: Path, settings: Settings) -> dict:
    t0 = time.perf_counter()
    frames = list(sample_frames(video, fps=settings.decode.fps, max_side=settings.decode.max_side))
    t1 = time.perf_counter()
    shots = detect(frames, max_gap_s=settings.visual.keyframe_max_gap_s)
    keys = [f for s in shots for f in s.keyframes]
    t2 = time.perf_counter()
    visual.embed_images(keys, settings)
    t3 = time.perf_counter()
    return dict(frames=frames, shots=len(shots), keyframes=len(keys), decode=t1 - t0,
                shots_s=t2 - t1, embed=t3 - t2, total=t3 - t0,
                duration=shots[-1].end_ms / 1000)


def naive_per_frame(frames, backend) -> float:
    start = time.perf_counter()
    for f in frames:
        inputs = backend.processor(images=[f.image], return_tensors="pt")
        with torch.no_grad():
            backend.model.get_image_features(**inputs)
    return (time.perf_counter() - start) / len(frames)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", type=Path, default=MEDIA / "people_walking_139s.mp4")
    ap.add_argument("--naive-frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=VisualSettings().batch_size)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = build(Path(tmp) / "siglip2-base-patch16-224", tiny=False)
        settings = Settings(visual=VisualSettings(model=str(directory), batch_size=args.batch))
        t = time.perf_counter()
        backend = visual.VisualEmbedder.get(settings).backend
        load = time.perf_counter() - t
        visual.embed_images([torch.zeros(224, 224, 3, dtype=torch.uint8).numpy()], settings)
        r = chronoscope_path(args.video, settings)
        naive = naive_per_frame(r["frames"][:args.naive_frames], backend)
    n, dur = len(r["frames"]), r["duration"]
    naive_total = r["decode"] + naive * n
    ours_x, naive_x = dur / r["total"], dur / naive_total
    print(f"# {date.today()} {args.video.name} ({dur:.0f} s), torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} cpus, load {load:.1f} s")
    print(f"sampled frames {n}, shots {r['shots']}, keyframes {r['keyframes']}")
    print(f"chronoscope: decode {r['decode']:.1f} s, shots {r['shots_s']:.2f} s, embed "
          f"{r['embed']:.1f} s ({r['keyframes'] / r['embed']:.1f} keyframes/s, batch "
          f"{args.batch}); total {r['total']:.1f} s = {ours_x:.1f}x realtime")
    print(f"naive loop: {1 / naive:.2f} frames/s per frame call; decode + every frame "
          f"{naive_total:.1f} s = {naive_x:.1f}x realtime")
    print(f"ratio chronoscope / naive: {ours_x / naive_x:.1f}x")


if __name__ == "__main__":
    main()
