"""Speech recognition on the search evaluation set: the word error rate of the indexed speech
against what was said (the generated videos' scripts, and the human captions of the sample
files that have a .vtt beside them).

    .venv/bin/python bench/speech_wer.py [--home bench/.cache/search_quality]
    CHRONOSCOPE_SPEECH__MODEL=tiny.en .venv/bin/python bench/speech_wer.py --home DIR

Reads the library bench/search_quality.py indexed into --home (indexing what is missing with
the configured models, so give each speech model its own home). WER: word edits (Levenshtein)
over the reference's words, after lowercasing and spelling numbers out. There is no Whisper
text normaliser, so formatting ("$699" for "six hundred and ninety nine dollars") counts as
errors, for every model alike."""

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import CACHE, EVALSET, MEDIA, index_all, library  # noqa: E402

from core.config import Settings  # noqa: E402

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def spelled(n: int) -> str:
    if n >= 1000:
        return str(n)
    if n >= 100:
        return f"{ONES[n // 100]} hundred" + (f" {spelled(n % 100)}" if n % 100 else "")
    if n >= 20:
        return TENS[n // 10] + (f" {ONES[n % 10]}" if n % 10 else "")
    return ONES[n]


def words(text: str) -> list[str]:
    text = text.lower().replace("%", " percent")
    text = re.sub(r"\d+", lambda m: f" {spelled(int(m[0]))} ", text)
    return re.findall(r"[a-z0-9']+", text)


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1]


def references() -> dict[str, str]:
    spec = json.loads((EVALSET / "videos.json").read_text())
    said = {v["name"]: " ".join(text for _, text in v["speech"]) for v in spec["generated"]}
    for name in spec["shared"]:
        vtt = (MEDIA / name).with_suffix(".vtt")
        if vtt.exists():    # cue text: the lines after each timing line, tags dropped
            blocks = vtt.read_text().split("\n\n")
            said[name] = " ".join(re.sub(r"<[^>]+>", "", " ".join(b.splitlines()[1:]))
                                  for b in blocks if "-->" in b)
    return said


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=CACHE / "search_quality")
    settings = Settings(home=ap.parse_args().home / "sqlite")
    ids = index_all(settings, library())
    from core.types import SPEECH
    from store import queries
    from store.db import session_scope
    total = wrong = 0
    with session_scope(settings) as s:
        for name, said in references().items():
            heard = " ".join(g.text for g in queries.get_segments(
                s, video_id=ids[name], kinds=[SPEECH]))
            ref = words(said)
            n = edits(ref, words(heard))
            total, wrong = total + len(ref), wrong + n
            print(f"{name:<26}{len(ref):>5} words {n:>4} edits  WER {n / len(ref):.3f}")
            print(f"  heard: {heard[:150]}")
    print(f"all: {total} words, {wrong} edits, WER {wrong / total:.3f}")


if __name__ == "__main__":
    main()
