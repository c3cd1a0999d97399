"""What a served upload is said to be, and the headers that keep it from being anything else.

The type comes from the container that probe found (PyAV's demuxer name), never from the
uploaded name: a valid MP4 with HTML appended, uploaded as x.html or x.svg, is still served
as video/mp4. Only video types play inline; anything else is an attachment. `nosniff` stops
browsers guessing, and the media CSP sandboxes whatever a browser might still render, so an
upload never runs script in the page's origin (where the API key lives).
"""

import re
import unicodedata
from urllib.parse import quote

OCTET_STREAM = "application/octet-stream"
# PyAV container format names (one demuxer can carry several, comma-separated) -> type.
# The MP4 family plays as video/mp4 in browsers whichever brand it carries (MOV included).
CONTAINER_TYPES = {
    "mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "mov": "video/mp4", "mp4": "video/mp4",
    "m4a": "video/mp4", "3gp": "video/3gpp", "3g2": "video/3gpp2", "mj2": "video/mj2",
    "matroska,webm": "video/x-matroska", "matroska": "video/x-matroska", "webm": "video/webm",
    "avi": "video/x-msvideo", "mpegts": "video/mp2t", "mpeg": "video/mpeg",
    "ogg": "video/ogg", "flv": "video/x-flv", "live_flv": "video/x-flv",
    "asf": "video/x-ms-asf", "dv": "video/x-dv",
}
# Matroska holding only WebM's codecs is WebM, which browsers play.
WEBM_CODECS = {"vp8", "vp9", "av1"}
# Extensions a saved file may keep for its type; the first is added when the name has none.
EXTENSIONS = {
    "video/mp4": (".mp4", ".m4v", ".mov"), "video/3gpp": (".3gp",), "video/3gpp2": (".3g2",),
    "video/mj2": (".mj2",), "video/x-matroska": (".mkv",), "video/webm": (".webm",),
    "video/x-msvideo": (".avi",), "video/mp2t": (".ts", ".mts", ".m2ts"),
    "video/mpeg": (".mpg", ".mpeg"), "video/ogg": (".ogv", ".ogg"), "video/x-flv": (".flv",),
    "video/x-ms-asf": (".wmv", ".asf"), "video/x-dv": (".dv",), OCTET_STREAM: (".bin",),
}
# Media: nothing loads, nothing runs; a document rendered anyway is sandboxed (no origin).
MEDIA_CSP = "default-src 'none'; media-src 'self'; sandbox"
# The web page: its own script and styles only (it has no inline script, style or handler).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; "
            "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
            "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._()\[\]+,=&#@!~\- ]+")


def media_type(container: str | None, video_codec: str | None = None) -> str:
    """The served type of a file whose probed container is `container` (e.g.
    'mov,mp4,m4a,3gp,3g2,mj2'); application/octet-stream when unknown."""
    name = (container or "").strip().lower()
    mime = CONTAINER_TYPES.get(name) or next(
        (CONTAINER_TYPES[p] for p in name.split(",") if p in CONTAINER_TYPES), OCTET_STREAM)
    if mime == "video/x-matroska" and (video_codec or "").lower() in WEBM_CODECS:
        return "video/webm"
    return mime


def media_headers(filename: str, mime: str, *, download: bool = False) -> dict[str, str]:
    """Headers for serving an upload as `mime` (pass the type as the response's media_type
    and no filename of its own); `download`: saved, not played."""
    return {"X-Content-Type-Options": "nosniff",
            "Content-Disposition": content_disposition(filename, mime, download=download),
            "Content-Security-Policy": MEDIA_CSP}


def page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"}


def content_disposition(filename: str, mime: str, *, download: bool = False) -> str:
    """inline for video types (unless `download`), attachment otherwise; an ASCII `filename`
    every client reads plus RFC 6266 `filename*` (UTF-8) when the name is not plain ASCII.
    The name keeps an extension that matches the type, so a saved file opens as what it is."""
    kind = "inline" if mime.startswith("video/") and not download else "attachment"
    name = safe_filename(filename, mime)
    fallback = _ascii_name(name, mime)
    header = f'{kind}; filename="{fallback}"'
    if fallback != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


def safe_filename(filename: str, mime: str) -> str:
    """The display name as a plain file name: no path, no control or quoting characters, at
    most 150 characters, ending in an extension of its type."""
    name = unicodedata.normalize("NFC", filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '"\'<>:*?|;')
    name = name.strip(" .")[:150] or "video"
    extensions = EXTENSIONS.get(mime, (".bin",))
    if not name.lower().endswith(extensions):
        name += extensions[0]
    return name


def _ascii_name(name: str, mime: str) -> str:
    extensions = EXTENSIONS.get(mime, (".bin",))
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    plain = _UNSAFE_ASCII.sub("_", plain).strip(" _")
    if plain.startswith(".") or not plain.lower().endswith(extensions):
        return "video" + extensions[0]      # nothing of the name survived but its extension
    return plain
