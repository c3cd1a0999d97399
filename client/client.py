"""A typed, synchronous client of the chronoscope HTTP API, on httpx. It imports nothing of
the server: install it anywhere Python and httpx are.

    from client import Client
    with Client("http://127.0.0.1:8000", api_key) as cs:
        video = cs.wait_until_ready(cs.upload("talk.mp4")["id"])
        for moment in cs.iter_search("when is the budget mentioned", k=50):
            print(moment["start"], moment["text"])

Every error answer of the server raises ApiError with its stable `code` (not_found,
unauthorized, validation_error, invalid_page_token, payload_too_large, unavailable, ...),
its message and, for a 503, the Retry-After seconds.
"""

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from client.types import (ClipFile, Health, Moment, SearchPage, Segment, SegmentPage, Summary, Video,
                          VideoPage)

BLOCK = 1 << 20                       # upload and download in 1 MiB blocks
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class ApiError(Exception):
    """An error answer: HTTP status, the API's stable code and its message."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


class IndexingFailed(Exception):
    """wait_until_ready: the video ended `failed`; `.video` says why (its `error`)."""

    def __init__(self, video: Video):
        super().__init__(f"video {video['id']} failed: {video.get('error')}")
        self.video = video


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:500] or response.reason_phrase
    retry = response.headers.get("retry-after", "")
    return ApiError(response.status_code, code, message,
                    float(retry) if retry.isdigit() else None)


def _params(**values: Any) -> dict:
    """Query parameters without the unset ones."""
    return {k: v for k, v in values.items() if v is not None and v != []}


def _multipart(path: Path, fields: dict[str, str], on_progress: Progress | None
               ) -> tuple[dict, int, Iterator[bytes]]:
    """A streamed multipart body: headers, its length, and its blocks (so the upload never
    sits in memory and its progress can be reported)."""
    boundary = secrets.token_hex(16)
    name = path.name.replace('"', "'").replace("\r", " ").replace("\n", " ")
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items())
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = path.stat().st_size

    def blocks() -> Iterator[bytes]:
        yield head
        sent = 0
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                yield block
                sent += len(block)
                if on_progress:
                    on_progress(sent, size)
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return headers, len(head) + size + len(tail), blocks()


class Client:
    """One API key on one server. Use it as a context manager, or call close()."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  transport=transport,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=_params(**params)).json()

    # ---- videos ------------------------------------------------------------------------

    def upload(self, path: str | Path, *, webhook_url: str | None = None,
               on_progress: Progress | None = None) -> Video:
        """Upload a video file (streamed); it is indexed in the background. The same
        content uploaded again answers the existing video."""
        path = Path(path)
        headers, length, body = _multipart(
            path, {"webhook_url": webhook_url} if webhook_url else {}, on_progress)
        headers["Content-Length"] = str(length)
        return self._send("POST", "/v1/videos", content=body, headers=headers,
                          timeout=httpx.Timeout(self._http.timeout.read, write=None)).json()

    def get_video(self, video_id: str) -> Video:
        return self._get(f"/v1/videos/{video_id}")

    def wait_until_ready(self, video_id: str, *, timeout: float = 3600.0,
                         poll_s: float = 1.0, on_progress: Callable[[Video], None] | None = None
                         ) -> Video:
        """Poll until the video is ready and return it; IndexingFailed when it fails,
        TimeoutError after `timeout` seconds. `on_progress` sees each poll's video."""
        deadline = time.monotonic() + timeout
        while True:
            video = self.get_video(video_id)
            if on_progress:
                on_progress(video)
            if video["status"] == "ready":
                return video
            if video["status"] == "failed":
                raise IndexingFailed(video)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"video {video_id} is still {video['status']} after "
                                   f"{timeout:.0f} s")
            time.sleep(poll_s)

    def list_videos(self, *, limit: int | None = None, page_token: str | None = None,
                    active: bool = False) -> VideoPage:
        """One page of the tenant's videos, oldest first; `active`: only those not done yet
        (queued, indexing or interrupted)."""
        return self._get("/v1/videos", limit=limit, page_token=page_token,
                         active="true" if active else None)

    def iter_videos(self, *, page_size: int | None = None, active: bool = False
                    ) -> Iterator[Video]:
        """Every video (or every active one), page after page."""
        return self._pages(lambda token: self.list_videos(limit=page_size, page_token=token,
                                                          active=active), "videos")

    def delete_video(self, video_id: str) -> None:
        """Delete the video: its rows, vectors and file."""
        self._send("DELETE", f"/v1/videos/{video_id}")

    def segments(self, video_id: str, *, start: float | None = None, end: float | None = None,
                 kinds: list[str] | None = None, limit: int | None = None,
                 page_token: str | None = None) -> SegmentPage:
        """One page of the segments overlapping [start, end), in time order."""
        return self._get(f"/v1/videos/{video_id}/segments", start=start, end=end,
                         kind=kinds, limit=limit, page_token=page_token)

    def iter_segments(self, video_id: str, *, start: float | None = None,
                      end: float | None = None, kinds: list[str] | None = None,
                      page_size: int | None = None) -> Iterator[Segment]:
        return self._pages(lambda token: self.segments(
            video_id, start=start, end=end, kinds=kinds, limit=page_size, page_token=token),
            "segments")

    def summary(self, video_id: str) -> Summary:
        return self._get(f"/v1/videos/{video_id}/summary")

    def captions(self, video_id: str, fmt: str = "vtt", *, kinds: list[str] | None = None
                 ) -> str:
        """Captions as WebVTT, SRT or JSON text."""
        return self._send("GET", f"/v1/videos/{video_id}/captions.{fmt}",
                          params=_params(kind=kinds)).text

    def download_media(self, video_id: str, dest: str | Path, *,
                       on_progress: Progress | None = None) -> Path:
        """The uploaded file, written to `dest`."""
        self._download(f"/v1/videos/{video_id}/media", {}, Path(dest), on_progress)
        return Path(dest)

    def clip(self, video_id: str, start: float, end: float, dest: str | Path, *,
             on_progress: Progress | None = None) -> ClipFile:
        """An MP4 of [start, end) seconds of the video, written to `dest`; its first
        frame's time and how it was cut (copy, smart or encode)."""
        headers = self._download(f"/v1/videos/{video_id}/clip",
                                 {"start": start, "end": end}, Path(dest), on_progress)
        return {"path": Path(dest), "start": float(headers.get("x-clip-start", start)),
                "mode": headers.get("x-clip-mode", "")}

    def thumbnail(self, url: str) -> bytes:
        """A moment's keyframe JPEG, from its `thumbnail` URL."""
        return self._send("GET", url).content

    # ---- search ------------------------------------------------------------------------

    def search(self, q: str | None = None, *, like: str | None = None,
               image: str | Path | bytes | None = None, videos: list[str] | None = None,
               start: float | None = None, end: float | None = None,
               kinds: list[str] | None = None, k: int | None = None,
               limit: int | None = None, page_token: str | None = None,
               ground: bool = False) -> SearchPage:
        """One page of the k best moments: for words `q`, like a moment (`like`:
        "VIDEO_ID@SECONDS") or like an `image` (a file or its bytes)."""
        params = _params(video=videos, start=start, end=end, kind=kinds, k=k, limit=limit,
                         page_token=page_token)
        if image is None:
            params.update(_params(q=q, like=like, ground="true" if ground else None))
            return self._send("GET", "/v1/search", params=params).json()
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        return self._send("POST", "/v1/search", params=params,
                          files={"image": ("image", data)}).json()

    def iter_search(self, q: str | None = None, *, page_size: int | None = None,
                    **options: Any) -> Iterator[Moment]:
        """Every one of the k best moments (`k` in options), page after page."""
        return self._pages(lambda token: self.search(q, limit=page_size, page_token=token,
                                                     **options), "moments")

    def health(self) -> Health:
        """/healthz (answers 503 with the same body when the database is down)."""
        response = self._http.get("/healthz")
        return response.json()

    # ---- plumbing ----------------------------------------------------------------------

    @staticmethod
    def _pages(fetch: Callable[[str | None], dict], items: str) -> Iterator:
        token = None
        while True:
            page = fetch(token)
            yield from page[items]
            token = page.get("next_page_token")
            if not token:
                return

    def _download(self, path: str, params: dict, dest: Path, on_progress: Progress | None
                  ) -> httpx.Headers:
        with self._http.stream("GET", path, params=params) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            total = int(response.headers.get("content-length") or 0)
            part = dest.with_name(dest.name + ".part")
            try:
                with open(part, "wb") as f:
                    for block in response.iter_bytes(BLOCK):
                        f.write(block)
                        if on_progress:
                            on_progress(f.tell(), total)
                part.replace(dest)
            finally:
                part.unlink(missing_ok=True)    # a broken download leaves nothing behind
            return response.headers
