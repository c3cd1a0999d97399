"""The Tesseract binary as a model: checked once per language set, with an id that names
its version and language data; `words` runs it on one picture."""

import io
import os
import re
import subprocess
from pathlib import Path

from PIL import Image

from core.config import Settings
from core.errors import ChronoscopeError, ModelUnavailable
from model.base import InferenceModel, fingerprint, head


class Tesseract(InferenceModel):
    """The tesseract binary and its language data, checked once per language set; the id is
    tesseract-<version>:<langs>@<fingerprint of the traineddata files>."""

    @staticmethod
    def key(settings: Settings) -> tuple:
        return (settings.ocr.languages,)

    def load(self, settings: Settings) -> None:
        languages = settings.ocr.languages
        try:
            out = subprocess.run(["tesseract", "--list-langs"], capture_output=True,
                                 text=True, check=True)
            version = subprocess.run(["tesseract", "--version"], capture_output=True,
                                     text=True).stdout.split()[1]
        except (OSError, subprocess.CalledProcessError, IndexError) as e:
            raise ModelUnavailable(
                "on-screen text needs the Tesseract binary: apt-get install tesseract-ocr "
                "(or set CHRONOSCOPE_OCR__ENABLED=false)") from e
        listing = out.stdout + out.stderr
        found = re.search(r'"(.+?)"', listing)
        have = set(listing.split('\n', 1)[-1].split())
        missing = [lang for lang in languages.split("+") if lang not in have]
        if missing:
            raise ModelUnavailable(
                f"Tesseract has no data for {', '.join(missing)}: apt-get install "
                + " ".join(f"tesseract-ocr-{m}" for m in missing)
                + " or change CHRONOSCOPE_OCR__LANGUAGES")
        data = Path(found.group(1) if found else "")
        files = [(lang, data / f"{lang}.traineddata") for lang in languages.split("+")]
        files = [(lang, path) for lang, path in files if path.is_file()]
        self.model_id = f"tesseract-{version}:{languages}@{fingerprint(files, sample=head)}"


def model_id(settings: Settings | None = None) -> str:
    return Tesseract.get(settings).model_id


# One OpenMP thread: Tesseract's default team spins on the cores for little gain on our
# small pictures (about 40 % more CPU per read); chunks and signals run side by side instead.
_ENV = {**os.environ, "OMP_THREAD_LIMIT": "1"}
COLUMNS = ("block_num", "par_num", "line_num", "left", "top", "width", "height", "conf",
           "text")


def words(image: Image.Image, settings: Settings, *, psm: int = 11) -> dict[str, list]:
    """Tesseract's words in a picture (its TSV output by column: position, box, confidence,
    text). The picture goes in on stdin as PNM: no temporary files, no PNG encoding."""
    buf = io.BytesIO()
    image.save(buf, "PPM")
    done = subprocess.run(["tesseract", "stdin", "stdout", "-l", settings.ocr.languages,
                           "--psm", str(psm), "tsv"], input=buf.getvalue(),
                          capture_output=True, env=_ENV)
    if done.returncode != 0:
        raise ChronoscopeError(f"tesseract failed: {done.stderr.decode(errors='replace')[-300:]}")
    out: dict[str, list] = {c: [] for c in COLUMNS}
    for row in done.stdout.decode(errors="replace").splitlines()[1:]:
        # level page block par line word left top width height conf text; level 5 = a word
        cells = row.split("\t", 11)
        if len(cells) != 12 or cells[0] != "5":
            continue
        for name, value in zip(COLUMNS[:7], cells[2:5] + cells[6:10]):
            out[name].append(int(value))
        out["conf"].append(float(cells[10]))
        out["text"].append(cells[11])
    return out
