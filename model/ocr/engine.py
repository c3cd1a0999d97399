"""The Tesseract binary as a model: checked once per language set, with an id that names
its version and language data."""

import re
import subprocess
from pathlib import Path

from core.config import Settings
from core.errors import ModelUnavailable
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
