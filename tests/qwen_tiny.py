"""A tiny random Qwen3-VL (dense or MoE) with the real Qwen tokenizer, saved as a checkpoint
directory so tests load it through the real loader, processor and `generate`.

The architecture keeps every feature the issue asks to see live: DeepStack (ViT layers 1
and 2 feed the first two decoder layers), an interleaved `mrope_section` sized to head_dim
(16 -> 8 rotary frequencies = 4 t + 2 h + 2 w), 16 px patches merged 2x2, temporal patch 2,
and the full 151936-row vocabulary so every special token sits at its real id.

A random model answers noise. To run the whole path down to parsed events, a variant can be
*scripted*: its generation_config.json carries a `sequence_bias` that makes greedy decoding
spell a given answer and then <|im_end|>. The bias is applied by transformers' own
SequenceBiasLogitsProcessor inside the real `generate`; the answer text, its tokenization,
the decode and the parse are all real.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import torch

TEXT = dict(
    vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=32768,
    rms_norm_eps=1e-6, tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 5_000_000,
                     "mrope_section": [4, 2, 2], "mrope_interleaved": True},
)
VISION = dict(
    depth=4, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
    temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64,
    num_position_embeddings=64, deepstack_visual_indexes=[1, 2],
)
MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
IDS = dict(image_token_id=151655, video_token_id=151656,
           vision_start_token_id=151652, vision_end_token_id=151653)
IM_END, ENDOFTEXT = 151645, 151643

# Which of the 8 rotary frequencies carry t, h and w with mrope_section [4, 2, 2] when
# interleaved (Qwen3-VL): t h w t h w t t. A chunked layout would be t t t t h h w w.
FREQ_H = (1, 4)
FREQ_W = (2, 5)


def tiny_config(moe: bool = False):
    if moe:
        from transformers import Qwen3VLMoeConfig

        return Qwen3VLMoeConfig(text_config={**TEXT, **MOE}, vision_config=dict(VISION),
                                tie_word_embeddings=True, **IDS)
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(text_config=dict(TEXT), vision_config=dict(VISION),
                         tie_word_embeddings=True, **IDS)


def build_tiny(directory: Path, *, moe: bool = False, seed: int = 0) -> Path:
    """Random weights + the real tokenizer/processor (Instruct template), as a checkpoint."""
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration

    from fixtures.qwen_offline import build_processor

    torch.manual_seed(seed)
    cls = Qwen3VLMoeForConditionalGeneration if moe else Qwen3VLForConditionalGeneration
    model = cls(tiny_config(moe)).eval()
    model.generation_config.eos_token_id = [IM_END, ENDOFTEXT]
    model.generation_config.pad_token_id = ENDOFTEXT
    model.generation_config.do_sample = False
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    build_processor().save_pretrained(directory)
    return directory


def scripted_bias(tokenizer, answer: str) -> list:
    """sequence_bias that makes greedy decoding emit `answer` then <|im_end|>. Token i is
    keyed on the k-1 tokens before it, with the shortest k whose contexts are unique in
    the answer (the first tokens on the answer's own prefix), so exactly one key completes
    at each step; longer keys weigh more, so a shorter key that also matches (a repeated
    token) cannot derail the chain, and the random logits (|x| < 1) never matter."""
    ids = tokenizer.encode(answer, add_special_tokens=False) + [IM_END]
    for k in range(2, len(ids) + 1):
        nexts: dict[tuple[int, ...], int] = {}
        if all(nexts.setdefault(tuple(ids[i - k + 1:i]), ids[i]) == ids[i] for i in range(k - 1, len(ids))):
            break
    bias = [[[ids[0]], 5.0]]
    bias += [[ids[: i + 1], 100.0 + 10.0 * i] for i in range(1, min(k - 1, len(ids)))]
    bias += [[ids[i - k + 1: i + 1], 100.0 + 10.0 * (k - 1)] for i in range(k - 1, len(ids))]
    return bias


@lru_cache(maxsize=1)
def _tokenizer():
    from fixtures.qwen_offline import build_tokenizer

    return build_tokenizer()


def variant(base: Path, directory: Path, *, answer: str | None = None, thinking: bool = False) -> Path:
    """A copy of `base` (weights hard-linked) whose chat template is the Thinking one and/or
    whose generation is scripted to `answer`."""
    from fixtures.qwen_offline import THINKING_CHAT_TEMPLATE

    directory.mkdir(parents=True, exist_ok=True)
    for f in base.iterdir():
        target = directory / f.name
        if not target.exists():
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)
    if thinking:
        (directory / "chat_template.jinja").unlink()
        (directory / "chat_template.jinja").write_text(THINKING_CHAT_TEMPLATE)
    if answer is not None:
        gen = json.loads((base / "generation_config.json").read_text())
        gen["sequence_bias"] = scripted_bias(_tokenizer(), answer)
        (directory / "generation_config.json").unlink()
        (directory / "generation_config.json").write_text(json.dumps(gen))
    return directory
