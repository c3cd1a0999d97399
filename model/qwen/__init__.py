"""Qwen3-VL through transformers: loading, chunked long-context captioning, parsing,
rolling memory and chapter writing. The model itself is transformers' implementation
(Interleaved-MRoPE, DeepStack, text timestamps); nothing here re-implements it."""

from model.qwen.caption import Window, caption_video, caption_videos, caption_windows, make_windows
from model.qwen.loader import load, model_id
from model.qwen.parse import parse_events
from model.qwen.summarize import write_chapters

__all__ = ["Window", "caption_video", "caption_videos", "caption_windows", "make_windows",
           "load", "model_id", "parse_events", "write_chapters"]
