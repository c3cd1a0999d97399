"""Architectures of the released Qwen3-VL checkpoints, from their published config.json
values, so the benchmark (and anyone sizing hardware) can build them with random weights
and no download. Only the dense sizes the benchmark runs are listed; the MoE checkpoints
load through the same code path from their own config."""

from __future__ import annotations

from typing import Any

_COMMON_TEXT = dict(
    vocab_size=151936, head_dim=128, hidden_act="silu", max_position_embeddings=262144,
    rms_norm_eps=1e-6, attention_bias=False,
    rope_parameters={"rope_type": "default", "rope_theta": 5_000_000,
                     "mrope_section": [24, 20, 20], "mrope_interleaved": True},
)
_COMMON_VISION = dict(
    hidden_act="gelu_pytorch_tanh", in_channels=3, patch_size=16, spatial_merge_size=2,
    temporal_patch_size=2, num_position_embeddings=2304, num_heads=16,
)

PUBLISHED: dict[str, dict[str, Any]] = {
    # Qwen/Qwen3-VL-2B-Instruct (text tower = Qwen3-1.7B)
    "2b": dict(
        text=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, out_hidden_size=2048,
                    deepstack_visual_indexes=[5, 11, 17]),
        tie_word_embeddings=True,
    ),
    # Qwen/Qwen3-VL-4B-Instruct (text tower = Qwen3-4B)
    "4b": dict(
        text=dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                  num_attention_heads=32, num_key_value_heads=8),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, out_hidden_size=2560,
                    deepstack_visual_indexes=[5, 11, 17]),
        tie_word_embeddings=True,
    ),
    # Qwen/Qwen3-VL-8B-Instruct (text tower = Qwen3-8B)
    "8b": dict(
        text=dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                  num_attention_heads=32, num_key_value_heads=8),
        vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, out_hidden_size=4096,
                    deepstack_visual_indexes=[8, 16, 24]),
        tie_word_embeddings=False,
    ),
}


def build_config(name: str):
    """A `Qwen3VLConfig` with the published values of `name` (one of PUBLISHED)."""
    from transformers import Qwen3VLConfig

    spec = PUBLISHED[name]
    tie = spec["tie_word_embeddings"]
    return Qwen3VLConfig(
        text_config={**_COMMON_TEXT, **spec["text"], "tie_word_embeddings": tie},
        vision_config={**_COMMON_VISION, **spec["vision"]},
        image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=tie,
    )
