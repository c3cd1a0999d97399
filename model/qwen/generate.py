"""Batched greedy generation with the real `generate`, shared by captions and chapters.

Batches are left-padded (decoder-only generation appends on the right), each row stops at
its own end token and at `max_new_tokens`. While the GPU generates one batch, the next
batch's frames are resized and tokenized on a helper thread. A batch that runs out of GPU
memory is split in two and retried, so `batch_size` is an upper bound, not a promise.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def generation_config(model, processor, max_new_tokens: int):
    """Greedy decoding (captions must be reproducible), the checkpoint's end tokens, and
    no sampling knobs left over from its generation_config.json."""
    cfg = copy.deepcopy(model.generation_config)
    cfg.do_sample = False
    cfg.num_beams = 1
    cfg.temperature = None
    cfg.top_p = None
    cfg.top_k = None
    cfg.max_new_tokens = int(max_new_tokens)
    cfg.max_length = None
    tok = processor.tokenizer
    if cfg.eos_token_id is None:
        cfg.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    cfg.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else cfg.pad_token_id
    return cfg


@torch.inference_mode()
def generate_texts(model, processor, inputs, *, max_new_tokens: int) -> list[str]:
    """Decoded new text of each row of a processor batch."""
    inputs = inputs.to(model.device)
    prompt_len = inputs["input_ids"].shape[1]
    out = model.generate(**inputs, generation_config=generation_config(model, processor, max_new_tokens))
    # <think> and </think> are not special tokens: they survive decoding and the parser
    # removes the reasoning.
    return processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True,
                                  clean_up_tokenization_spaces=False)


def generate_all(model, processor, items: Sequence[T], build: Callable[[Sequence[T]], Any], *,
                 batch_size: int, max_new_tokens: int) -> list[str]:
    """Generate for every item, `batch_size` at a time; `build(items)` makes the inputs."""
    if not items:
        return []
    size = max(1, int(batch_size))
    batches = [list(items[i:i + size]) for i in range(0, len(items), size)]
    texts: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qwen-prep") as pool:
        pending = pool.submit(build, batches[0])
        for k, batch in enumerate(batches):
            inputs = pending.result()
            if k + 1 < len(batches):
                pending = pool.submit(build, batches[k + 1])
            texts.extend(_generate_or_split(model, processor, batch, inputs, build, max_new_tokens))
    return texts


def _generate_or_split(model, processor, batch, inputs, build, max_new_tokens) -> list[str]:
    try:
        return generate_texts(model, processor, inputs, max_new_tokens=max_new_tokens)
    except _OOM:
        if len(batch) == 1:
            raise
        del inputs
        torch.cuda.empty_cache()
        half = len(batch) // 2
        return [text for part in (batch[:half], batch[half:])
                for text in _generate_or_split(model, processor, part, build(part), build, max_new_tokens)]
