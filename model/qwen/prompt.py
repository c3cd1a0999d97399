"""Chat prompts for Qwen3-VL: dense event captions for a window, the start and end of one
asked-for event in a window (grounding) and chapters for a video.

Prompts are rendered by the checkpoint's own chat template (Instruct or Thinking), then
the video placeholder is unwrapped: the released template writes
`<|vision_start|><|video_pad|><|vision_end|>` and transformers 5.x expands only the inner
`<|video_pad|>` into `<t seconds><|vision_start|>...<|vision_end|>` per frame group, which
would leave an extra start/end pair around the whole video. Handing the processor a bare
`<|video_pad|>` gives one `<|vision_start|>` per group right after its timestamp, the layout
transformers 4.57 and vLLM produce and the one Qwen3-VL was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.times import clock
from core.types import Segment

SPEECH_CHARS = 1500       # speech quoted per window; about 400 tokens beside ~6K visual ones
NOTES_CHARS = 24_000      # timestamped notes handed to the chapter writer (~7K tokens)
NOTE_LINE_CHARS = 240

CAPTION_SYSTEM = (
    "You are a meticulous video annotator. You watch one clip of a longer video and list "
    "what visibly happens in it, with exact times."
)

CAPTION_TASK = (
    "List the distinct visual events of this clip in time order: actions, people and "
    "objects that appear or leave, scene and camera changes, on-screen text and graphics. "
    "Answer with only a JSON array, one object per event, with start and end in absolute "
    "seconds from the start of the video (as in the frame timestamps) and a short caption:\n"
    '[{{"start": {a:.1f}, "end": {b:.1f}, "caption": "..."}}]'
)

GROUND_SYSTEM = (
    "You are a meticulous video annotator. You watch one clip of a longer video and find "
    "exactly when something happens in it."
)

# The answer keeps the caption's JSON shape so the caption parser reads it unchanged.
GROUND_TASK = (
    'When does "{query}" happen in this clip? Answer with only JSON: its start and end in '
    "absolute seconds from the start of the video (as in the frame timestamps) and a short "
    "caption of what is seen:\n"
    '{{"start": {a:.1f}, "end": {b:.1f}, "caption": "..."}}'
)

CHAPTER_SYSTEM = "You write chapters and summaries for long videos from timestamped notes."


def _bounded_lines(lines: Sequence[str], limit: int) -> str:
    out, used = [], 0
    for line in lines:
        if used + len(line) + 1 > limit:
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def caption_messages(*, start_ms: int, end_ms: int, speech: Sequence[Segment] = (),
                     memory: str = "") -> list[dict]:
    a, b = start_ms / 1000, end_ms / 1000
    span = f"{clock(start_ms, hours=True)} to {clock(end_ms, hours=True)}"
    parts = [
        f"This clip covers {a:.1f} s to {b:.1f} s of the video ({span}). "
        "The time before each group of frames is its absolute time in seconds."
    ]
    if memory.strip():
        parts.append(f"Earlier in the video: {memory.strip()}")
    heard = [f"[{s.start_ms / 1000:.1f}-{s.end_ms / 1000:.1f}] {' '.join(s.text.split())}"
             for s in sorted(speech, key=lambda s: s.start_ms) if s.text.strip()]
    if heard:
        parts.append("Speech heard in this clip:\n" + _bounded_lines(heard, SPEECH_CHARS))
    # The example uses the window's own times so a model that copies it stays in range.
    parts.append(CAPTION_TASK.format(a=a, b=min(b, a + 5)))
    return [
        {"role": "system", "content": [{"type": "text", "text": CAPTION_SYSTEM}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "\n\n".join(parts)}]},
    ]


def ground_messages(query: str, *, start_ms: int, end_ms: int) -> list[dict]:
    a, b = start_ms / 1000, end_ms / 1000
    span = f"{clock(start_ms, hours=True)} to {clock(end_ms, hours=True)}"
    intro = (f"This clip covers {a:.1f} s to {b:.1f} s of the video ({span}). "
             "The time before each group of frames is its absolute time in seconds.")
    task = GROUND_TASK.format(query=" ".join(query.split()), a=a, b=min(b, a + 5))
    return [
        {"role": "system", "content": [{"type": "text", "text": GROUND_SYSTEM}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": f"{intro}\n\n{task}"}]},
    ]


def chapter_messages(segments: Sequence[Segment], *, duration_ms: int) -> list[dict]:
    lines = [f"[{clock(s.start_ms, hours=True)}-{clock(s.end_ms, hours=True)}] {s.kind}: "
             f"{' '.join(s.text.split())[:NOTE_LINE_CHARS]}"
             for s in sorted(segments, key=lambda s: (s.start_ms, s.end_ms)) if s.text.strip()]
    total = sum(len(x) + 1 for x in lines)
    if total > NOTES_CHARS:
        # Thin evenly so the whole timeline stays represented, not just its beginning.
        keep = max(1, int(len(lines) * NOTES_CHARS / total))
        step = len(lines) / keep
        lines = [lines[int(i * step)] for i in range(keep)]
    minutes = duration_ms / 60000
    most = max(1, min(15, round(minutes / 4)))
    task = (
        f"The video is {clock(duration_ms, hours=True)} long. Timestamped notes (speech, "
        "on-screen text and "
        f"visual events):\n{_bounded_lines(lines, NOTES_CHARS)}\n\n"
        f"Split the whole video into at most {most} chapters at changes of topic or scene, the "
        "first starting at 0:00:00. Answer with only JSON:\n"
        '{"summary": "2-4 sentences about the whole video", "chapters": '
        '[{"start": "h:mm:ss", "title": "a few words", "summary": "one sentence"}]}'
    )
    return [
        {"role": "system", "content": [{"type": "text", "text": CHAPTER_SYSTEM}]},
        {"role": "user", "content": [{"type": "text", "text": task}]},
    ]


def render(processor, messages: list[dict]) -> str:
    """The generation prompt as text, with the video placeholder unwrapped (see above)."""
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    wrapped = processor.vision_start_token + processor.video_token + processor.vision_end_token
    return text.replace(wrapped, processor.video_token)
