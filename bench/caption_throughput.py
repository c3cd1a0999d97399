"""Qwen3-VL caption throughput: video-hours per GPU-hour and MFU, chronoscope's batched path
beside a naive loop, measured in the same run.

    python bench/caption_throughput.py                 # GPU: Qwen3-VL-2B and 8B architectures
    python bench/caption_throughput.py --tiny          # CPU (automatic without CUDA): proves it runs

Models are the released architectures built from their published config values with random
weights (fixtures/qwen_configs.py), so nothing is downloaded; throughput does not depend on the
weights, except through the answer length, which is pinned: every window generates exactly
--max-new-tokens tokens (min_new_tokens = max_new_tokens). Frames are synthetic uint8 RGB at
--side x --side, --fps over --window-s seconds per window (defaults: 1 fps, 448 px, 60 s).

chronoscope path: model/qwen/caption.build_inputs (resize on the GPU, the processor called with
the fixed token budget) + model/qwen/generate.generate_all (left-padded batches of --batch
windows, next batch prepared on a helper thread) + parse_events. That is caption_windows()
minus the loader, which would need the random weights written to disk first.
naive loop: one window at a time, the processor doing its own resizing on the CPU in the loop,
`generate` with batch 1.

MFU = model FLOPs (analytic, below) / wall time / bf16 dense matmul peak measured in this
run (a large torch.matmul), so it is the share of what this GPU actually sustains. Model
FLOPs count the useful work only: ViT blocks, patch embedding and mergers over the patches,
the decoder's linear layers over prompt and generated tokens (2 x params x tokens), causal
attention (2 x L^2 x heads x head_dim per layer for the prompt, 4 x context x heads x
head_dim per generated token and layer), windowed ViT attention per frame group, and the LM
head on the last prompt token and on each generated one.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.types import Frame  # noqa: E402
from fixtures.qwen_configs import build_config  # noqa: E402
from fixtures.qwen_offline import build_processor  # noqa: E402
from model.qwen.caption import Window, build_inputs  # noqa: E402
from model.qwen.generate import generate_all  # noqa: E402
from model.qwen.loader import attn_implementation  # noqa: E402
from model.qwen.parse import parse_events  # noqa: E402
from model.qwen.prompt import caption_messages, render  # noqa: E402

TARGET_VH_PER_GH = 500.0   # H100, Qwen3-VL-2B
TARGET_MFU = 0.40


def tiny_config():
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                         rope_parameters={"rope_type": "default", "rope_theta": 5_000_000,
                                          "mrope_section": [8, 4, 4], "mrope_interleaved": True}),
        vision_config=dict(depth=4, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
                           num_position_embeddings=256, deepstack_visual_indexes=[1, 2]),
        tie_word_embeddings=True,
    )


def measure_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Sustained dense matmul FLOP/s of this device and dtype."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    iters = 50 if device.type == "cuda" else 10
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n ** 3 * iters / (time.perf_counter() - t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _params(module, min_dim: int = 2) -> int:
    return sum(p.numel() for p in module.parameters() if p.dim() >= min_dim)


@dataclass
class FlopModel:
    vis_block: int       # ViT block weights (linear)
    vis_dim: int
    vis_depth: int
    patch_embed: int     # conv weights, applied once per patch
    mergers: int         # merger + DeepStack mergers, applied once per merged token
    text_linear: int     # active decoder weights (linear), per token
    lm_head: int
    attn_width: int      # heads x head_dim
    layers: int

    @classmethod
    def of(cls, model) -> FlopModel:
        visual = model.model.visual
        lm = model.model.language_model
        text_cfg = model.config.text_config
        linear = _params(lm.layers)
        experts = sum(p.numel() for n, p in lm.layers.named_parameters() if p.dim() == 3)
        if experts:  # MoE: only top-k of the experts run per token
            linear += int(experts * text_cfg.num_experts_per_tok / text_cfg.num_experts) - experts
        return cls(
            vis_block=_params(visual.blocks) // len(visual.blocks), vis_dim=model.config.vision_config.hidden_size,
            vis_depth=len(visual.blocks), patch_embed=_params(visual.patch_embed),
            mergers=_params(visual.merger) + _params(visual.deepstack_merger_list),
            text_linear=linear, lm_head=model.lm_head.weight.numel(),
            attn_width=text_cfg.num_attention_heads * text_cfg.head_dim, layers=text_cfg.num_hidden_layers,
        )

    def window(self, groups: int, patches_per_group: int, prompt_len: int, new_tokens: int) -> float:
        patches = groups * patches_per_group
        vision = (2 * (self.vis_block * self.vis_depth + self.patch_embed) * patches
                  + 2 * self.mergers * patches / 4
                  + 4 * groups * patches_per_group ** 2 * self.vis_dim * self.vis_depth)
        prefill = 2 * self.text_linear * prompt_len + 2 * prompt_len ** 2 * self.attn_width * self.layers
        decode = sum(2 * self.text_linear + 4 * (prompt_len + j) * self.attn_width * self.layers
                     for j in range(new_tokens))
        head = 2 * self.lm_head * (1 + new_tokens)
        return vision + prefill + decode + head


def architecture_sizes(names) -> dict[str, dict[str, float]]:
    """Parameter counts of the published architectures, built on the meta device (no memory):
    shows the configs the GPU run uses are the released sizes (2B: 2.13 B, 8B: 8.77 B)."""
    from transformers import Qwen3VLForConditionalGeneration

    out = {}
    for name in names:
        with torch.device("meta"):
            model = Qwen3VLForConditionalGeneration(build_config(name))
        out[name] = {"params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
                     "vit_params_b": round(sum(p.numel() for p in model.model.visual.parameters()) / 1e9, 3)}
    return out


def synthetic_windows(n: int, *, window_s: float, fps: float, side: int, seed: int = 0) -> list[Window]:
    rng = np.random.default_rng(seed)
    per = max(1, round(window_s * fps))
    # a few distinct frames reused: generating 3600 random 448 px frames would dominate the run
    pool = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(8)]
    out = []
    for k in range(n):
        t0 = round(k * window_s * 1000)
        frames = [Frame(t_ms=t0 + round(i * 1000 / fps), pts=i, image=pool[(k + i) % len(pool)]) for i in range(per)]
        out.append(Window(frames=frames, start_ms=t0, end_ms=t0 + round(window_s * 1000)))
    return out


def run_batched(model, processor, windows, *, side, batch, max_new_tokens, device):
    dev = device if device.type == "cuda" else None
    sync(device)
    t = time.perf_counter()
    texts = generate_all(model, processor, windows,
                         lambda ws: build_inputs(processor, ws, side=side, device=dev),
                         batch_size=batch, max_new_tokens=max_new_tokens)
    for w, text in zip(windows, texts):
        parse_events(text, start_ms=w.start_ms, end_ms=w.end_ms)
    sync(device)
    return time.perf_counter() - t


@torch.inference_mode()
def run_naive(model, processor, windows, *, max_new_tokens, device):
    sync(device)
    t = time.perf_counter()
    for w in windows:
        text = render(processor, caption_messages(start_ms=w.start_ms, end_ms=w.end_ms))
        video = np.stack([f.image for f in w.frames])
        meta = {"fps": 1000.0, "frames_indices": [f.t_ms for f in w.frames], "total_num_frames": len(w.frames)}
        inputs = processor(text=[text], videos=[video], video_metadata=[meta], do_sample_frames=False,
                           cap_pixels_per_frame=False, return_tensors="pt")
        inputs.pop("video_metadata", None)
        out = model.generate(**inputs.to(device), max_new_tokens=max_new_tokens,
                             min_new_tokens=max_new_tokens, do_sample=False)
        answer = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        parse_events(answer, start_ms=w.start_ms, end_ms=w.end_ms)
    sync(device)
    return time.perf_counter() - t


def bench_model(name: str, args, device: torch.device, dtype: torch.dtype, processor, peak: float) -> dict:
    from transformers import Qwen3VLForConditionalGeneration

    config = tiny_config() if args.tiny else build_config(name)
    attn = attn_implementation(args.attn, device.type == "cuda")
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn).eval()
    model.generation_config.min_new_tokens = args.max_new_tokens  # pinned answer length
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    flops = FlopModel.of(model)
    params = sum(p.numel() for p in model.parameters())

    windows = synthetic_windows(args.windows, window_s=args.window_s, fps=args.fps, side=args.side)
    probe = build_inputs(processor, windows[:1], side=args.side)
    groups, gh, gw = (int(x) for x in probe["video_grid_thw"][0])
    prompt_len = probe["input_ids"].shape[1]
    per_window = flops.window(groups, gh * gw, prompt_len, args.max_new_tokens)
    video_s = args.window_s

    run_batched(model, processor, windows[: args.batch], side=args.side, batch=args.batch,
                max_new_tokens=args.max_new_tokens, device=device)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batched_s = run_batched(model, processor, windows, side=args.side, batch=args.batch,
                            max_new_tokens=args.max_new_tokens, device=device)
    mem = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
    naive_windows = windows[: args.naive_windows]
    run_naive(model, processor, naive_windows[:1], max_new_tokens=args.max_new_tokens, device=device)  # warm-up
    naive_s = run_naive(model, processor, naive_windows, max_new_tokens=args.max_new_tokens, device=device)

    def row(path, n, seconds):
        achieved = per_window * n / seconds
        return {"model": "tiny" if args.tiny else name, "path": path, "windows": n,
                "wall_s": round(seconds, 3), "video_h_per_gpu_h": round(n * video_s / seconds, 1),
                "tflops": round(achieved / 1e12, 3), "mfu": round(achieved / peak, 4)}

    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "params_b": round(params / 1e9, 3), "visual_tokens_per_window": groups * gh * gw // 4,
        "prompt_tokens_per_window": prompt_len, "gflop_per_window": round(per_window / 1e9, 2),
        "peak_mem_gib": round(mem, 1), "attn": attn,
        "rows": [row("chronoscope batched", len(windows), batched_s), row("naive loop", len(naive_windows), naive_s)],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="2b,8b", help="comma list of fixtures/qwen_configs.PUBLISHED keys")
    p.add_argument("--tiny", action="store_true", help="tiny random Qwen3-VL on CPU (automatic without CUDA)")
    p.add_argument("--windows", type=int, default=None, help="windows in the batched run")
    p.add_argument("--naive-windows", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="windows per generate call")
    p.add_argument("--window-s", type=float, default=60.0)
    p.add_argument("--fps", type=float, default=1.0)
    p.add_argument("--side", type=int, default=None, help="frame side in px (448 on GPU)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--attn", default="flash_attention_2", help="falls back to sdpa when flash-attn is missing")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        print("no CUDA device: running the tiny CPU configuration (--tiny)")
    args.tiny = not cuda
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    args.side = args.side or (448 if cuda else 64)
    args.windows = args.windows or (64 if cuda else 4)
    args.naive_windows = args.naive_windows or (8 if cuda else 2)
    args.batch = args.batch or (16 if cuda else 2)
    if args.tiny:
        args.max_new_tokens = min(args.max_new_tokens, 8)
    models = ["2b"] if args.tiny else [m.strip() for m in args.models.split(",") if m.strip()]

    import transformers

    processor = build_processor()
    peak = measure_peak(device, dtype)
    env = {
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.processor() or platform.machine()}, "
                                                            f"{torch.get_num_threads()} threads)",
        "dtype": str(dtype).replace("torch.", ""), "peak_tflops": round(peak / 1e12, 3),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "workload": f"{args.fps:g} fps, {args.side} px, {args.window_s:g} s windows, "
                    f"{args.max_new_tokens} new tokens/window, batch {args.batch}",
    }
    print(json.dumps(env))
    sizes = architecture_sizes([m.strip() for m in args.models.split(",") if m.strip()])
    print("published architectures:", json.dumps(sizes))
    results = {"env": env, "architectures": sizes, "models": {}}
    per = "video-h/GPU-h" if cuda else "video-h/CPU-h"
    header = f"{'model':<22}{'path':<22}{'windows':>8}{'wall s':>9}{per:>15}{'TFLOP/s':>10}{'MFU':>8}"
    print(header)
    for name in models:
        res = bench_model(name, args, device, dtype, processor, peak)
        results["models"][name] = res
        for r in res["rows"]:
            print(f"{r['model']:<22}{r['path']:<22}{r['windows']:>8}{r['wall_s']:>9.2f}"
                  f"{r['video_h_per_gpu_h']:>15.1f}{r['tflops']:>10.3f}{r['mfu']:>8.1%}")
        print(f"  {res['params_b']} B params, {res['visual_tokens_per_window']} visual / "
              f"{res['prompt_tokens_per_window']} prompt tokens per window, {res['gflop_per_window']} GFLOP/window, "
              f"attn {res['attn']}, peak mem {res['peak_mem_gib']} GiB")
    if cuda and "2b" in results["models"]:
        best = results["models"]["2b"]["rows"][0]
        ok = best["video_h_per_gpu_h"] >= TARGET_VH_PER_GH and best["mfu"] >= TARGET_MFU
        print(f"target (H100, 2B): >= {TARGET_VH_PER_GH:g} video-h/GPU-h and >= {TARGET_MFU:.0%} MFU: "
              f"{'met' if ok else 'NOT met'}")
    else:
        print("target (H100, 2B: >= 500 video-h/GPU-h, >= 40% MFU): not measured on this machine")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
