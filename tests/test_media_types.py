"""Served uploads: the type comes from the probed container, never the uploaded name; safe
headers (nosniff, sanitized Content-Disposition, sandboxing CSP); a page CSP the web page
satisfies."""

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from api import media_types
from api.media_types import (MEDIA_CSP, OCTET_STREAM, PAGE_CSP, content_disposition,
                             media_headers, media_type, safe_filename)
from indexer.probe import probe

WEB = Path(__file__).resolve().parent.parent / "api" / "web"


@pytest.mark.parametrize("container, codec, expected", [
    ("mov,mp4,m4a,3gp,3g2,mj2", "h264", "video/mp4"),
    ("matroska,webm", "vp9", "video/webm"), ("matroska,webm", "vp8", "video/webm"),
    ("matroska,webm", "h264", "video/x-matroska"), ("avi", "msmpeg4", "video/x-msvideo"),
    ("mpegts", "h264", "video/mp2t"), ("ogg", "theora", "video/ogg"),
    ("flv", "h264", "video/x-flv"), ("asf", "wmv2", "video/x-ms-asf"),
    ("MOV,MP4,M4A,3GP,3G2,MJ2", None, "video/mp4"),
    ("gif", "gif", OCTET_STREAM), ("image2", "png", OCTET_STREAM), ("svg", None, OCTET_STREAM),
    ("html", None, OCTET_STREAM), ("", None, OCTET_STREAM), (None, None, OCTET_STREAM)])
def test_type_from_container(container, codec, expected):
    assert media_type(container, codec) == expected


@pytest.mark.parametrize("name", ["x.html", "x.svg", "x.xhtml", "x.mp4"])
def test_mp4_with_html_appended_is_served_as_video_whatever_its_name(media, tmp_path, name):
    path = tmp_path / name
    shutil.copy(media / "his_girl_friday_6s.mp4", path)
    with open(path, "ab") as f:
        f.write(b"<html><script>alert(localStorage.key)</script></html>"
                b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>")
    mime = media_type(probe(path).container, probe(path).video_codec)
    assert mime == "video/mp4"
    headers = media_headers(name, mime)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == MEDIA_CSP
    assert "sandbox" in MEDIA_CSP and "default-src 'none'" in MEDIA_CSP
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("inline; ") and disposition.endswith('.mp4"')


@pytest.mark.parametrize("clip, expected", [("big_buck_bunny_30s.webm", "video/webm"),
                                            ("pedestrians_80s.avi", "video/x-msvideo")])
def test_real_files(media, clip, expected):
    info = probe(media / clip)
    assert media_type(info.container, info.video_codec) == expected


def test_only_video_types_play_inline():
    assert content_disposition("a.mp4", "video/mp4") == 'inline; filename="a.mp4"'
    assert content_disposition("a.gif", OCTET_STREAM) == 'attachment; filename="a.gif.bin"'


@pytest.mark.parametrize("raw, ascii_name, utf8", [
    ("clip.mp4", "clip.mp4", None),
    ("x.html", "x.html.mp4", None),
    ('a"; filename="evil.html', "a filename=evil.html.mp4", None),
    ("../../etc/passwd", "passwd.mp4", None),
    ("C:\\Users\\me\\talk.MP4", "talk.MP4", None),
    ("line\r\nSet-Cookie: x=1.mp4", "lineSet-Cookie x=1.mp4", None),
    ("résumé.mp4", "resume.mp4", "r%C3%A9sum%C3%A9.mp4"),
    ("会议.mp4", "video.mp4", "%E4%BC%9A%E8%AE%AE.mp4"),
    ("", "video.mp4", None), ("...", "video.mp4", None),
])
def test_content_disposition_is_quoted_and_sanitized(raw, ascii_name, utf8):
    header = content_disposition(raw, "video/mp4")
    assert header.isascii() and "\r" not in header and "\n" not in header
    kind, *params = header.split("; ")
    assert kind == "inline"
    assert params[0] == f'filename="{ascii_name}"'
    assert params[1:] == ([f"filename*=UTF-8''{utf8}"] if utf8 else [])
    assert header.count('"') == 2                       # no quote inside the name


def test_safe_filename_is_bounded():
    name = safe_filename("a" * 1000 + ".mp4", "video/mp4")
    assert len(name) <= 160 and name.endswith(".mp4")


class _Inline(HTMLParser):
    """Whatever the page CSP would block: inline script, style, handlers, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found, self._tag = [], None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        names = dict(attrs)
        if tag == "script" and "src" not in names or tag == "style":
            self.found.append(tag)
        self.found += [f"{tag} {k}" for k, v in attrs if k.startswith("on") or k == "style"
                       or (v or "").strip().lower().startswith("javascript:")]
        if tag == "link" and re.match(r"https?:|//", names.get("href", "")):
            self.found.append(f"external {names['href']}")


def test_the_web_page_fits_its_csp():
    parser = _Inline()
    parser.feed((WEB / "index.html").read_text())
    assert parser.found == [], parser.found
    script = (WEB / "app.js").read_text()
    # No eval-like code, no inline style writes, no other origin.
    assert not re.search(r"\beval\(|new Function\(|setAttribute\(\s*['\"]style|\.style\b"
                         r"|https?://", script)
    assert not re.search(r"url\(|@import", (WEB / "style.css").read_text())
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'",
                      "base-uri 'none'", "form-action 'self'", "connect-src 'self'"):
        assert directive in PAGE_CSP
    assert "unsafe-inline" not in PAGE_CSP and "unsafe-eval" not in PAGE_CSP
    assert media_types.page_headers()["Content-Security-Policy"] == PAGE_CSP
