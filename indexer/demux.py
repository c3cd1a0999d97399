"""Reading one stream's packets from a damaged or hostile file, and seeking in it: shared
by the picture (decode) and the sound (audio)."""

import logging
from collections.abc import Iterator

import av

from indexer.damage import VIDEO
from indexer.damage import record as _record

# Warnings about damage go out under the decoder's name, picture or sound alike.
log = logging.getLogger("indexer.decode")

# How far before the first wanted time to seek; a seek that lands late (a sparse or
# imprecise index) is retried further back.
SEEK_MARGINS_MS = (1000, 10_000, 60_000)
MAX_READ_ERRORS = 100


def seek(container, offset: int, stream) -> None:
    # A file that cannot seek (a raw stream) is read from where it is: the caller checks
    # where decoding really starts.
    try:
        container.seek(offset, stream=stream, backward=True)
    except av.error.FFmpegError as e:
        log.info("%s: cannot seek (%s); reading on", container.name, e)


def packets(container, stream, stats: dict, origin_ms: float = 0.0, kind: str = VIDEO
            ) -> Iterator:
    """Demuxed packets of one stream. A damaged stretch makes the demuxer fail once; reading
    resumes after it. A truncated file simply ends."""
    last_ms = None
    ms_per_tick = float(stream.time_base * 1000) if stream.time_base else 0.0
    while True:
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    last_ms = packet.pts * ms_per_tick - origin_ms
                yield packet
            return
        except av.error.EOFError:
            return
        except av.error.FFmpegError as e:
            stats["read_errors"] += 1
            _record(kind, last_ms)
            if stats["read_errors"] > MAX_READ_ERRORS:
                log.warning("%s: gave up reading after %d errors: %s", container.name,
                            MAX_READ_ERRORS, e)
                return


def log_stats(name: str, stats: dict) -> None:
    if any(stats.values()):
        log.warning("%s: %s", name,
                    ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in stats.items() if v))
