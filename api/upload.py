"""The streamed multipart upload: the part named 'file' goes to a temporary file in the
media directory, hashed as it streams and stopped at the size limit; other form fields
(webhook_url) are kept in memory, bounded."""

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from api.deps import ApiSettingsDep, SettingsDep, TenantDep

FIELD_LIMIT = 8192          # bytes for a non-file form field (webhook_url)
WRITE_BLOCK = 1 << 20       # hash and write in 1 MiB blocks, off the event loop


@dataclass
class Upload:
    path: Path                    # a temporary file in the media directory
    filename: str
    size: int = 0
    sha256: str = ""
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """python-multipart callbacks: the part named 'file' goes to disk, other fields to
    memory (bounded); the caller drains `pending` between network reads."""

    def __init__(self, limit: int):
        self.limit = limit
        self.pending = bytearray()
        self.size = 0
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._name = b""
        self._value = b""
        self._part: str | None = None      # field name of the current part
        self._is_file = False
        self._data = bytearray()

    def on_part_begin(self) -> None:
        self._headers, self._data, self._part, self._is_file = {}, bytearray(), None, False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _bad_upload("every multipart part needs a Content-Disposition name")
        self._part = options[b"name"].decode("utf-8", "replace")
        if self._part == "file":
            if self.filename is not None:
                raise _bad_upload("send one file per request")
            self._is_file = True
            self.filename = options.get(b"filename", b"upload").decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.size += end - start
            if self.size > self.limit:
                raise HTTPException(413, f"the file is larger than the upload limit of "
                                         f"{self.limit // (1024 * 1024)} MiB")
            self.pending += data[start:end]
        else:
            self._data += data[start:end]
            if len(self._data) > FIELD_LIMIT:
                raise _bad_upload(f"form field {self._part!r} is longer than {FIELD_LIMIT} bytes")

    def on_part_end(self) -> None:
        if not self._is_file and self._part is not None:
            self.fields[self._part] = self._data.decode("utf-8", "replace")


def _bad_upload(message: str) -> HTTPException:
    return HTTPException(422, message)


async def receive_upload(request: Request, settings: SettingsDep, api: ApiSettingsDep,
                         tenant: TenantDep) -> AsyncIterator[Upload]:
    """Stream the multipart body to a temporary file in the media directory, hashing as it
    goes and stopping at the size limit; the endpoint renames the file into place, and
    whatever is left is removed afterwards."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in options:
        raise HTTPException(415, "upload the video as multipart/form-data with a 'file' field")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > api.max_upload_bytes + 64 * 1024:
        raise HTTPException(413, f"the file is larger than the upload limit of "
                                 f"{api.max_upload_bytes // (1024 * 1024)} MiB")
    incoming = settings.media_dir / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    path = incoming / f"{uuid.uuid4().hex}.part"
    receiver = _Receiver(api.max_upload_bytes)
    digest = hashlib.sha256()
    parser = MultipartParser(options[b"boundary"], {
        name: getattr(receiver, name) for name in (
            "on_part_begin", "on_part_data", "on_part_end", "on_header_field",
            "on_header_value", "on_header_end", "on_headers_finished")})

    def flush(f) -> None:
        digest.update(receiver.pending)
        f.write(receiver.pending)
        receiver.pending.clear()

    try:
        with open(path, "wb") as f:
            try:
                async for chunk in request.stream():
                    parser.write(chunk)
                    if len(receiver.pending) >= WRITE_BLOCK:
                        await anyio.to_thread.run_sync(flush, f)
                parser.finalize()
            except FormParserError as e:
                raise _bad_upload(f"malformed multipart body: {e}") from None
            except ClientDisconnect:
                raise HTTPException(400, "the upload was interrupted") from None
            await anyio.to_thread.run_sync(flush, f)
        if receiver.filename is None:
            raise _bad_upload("the multipart body has no 'file' field")
        # Only a display name: it never becomes a path, but the database must take it.
        name = "".join(c for c in Path(receiver.filename).name if c.isprintable())
        yield Upload(path=path, filename=name[:255] or "upload",
                     size=receiver.size, sha256=digest.hexdigest(), fields=receiver.fields)
    finally:
        path.unlink(missing_ok=True)


UploadDep = Annotated[Upload, Depends(receive_upload)]
