"""Writing an MP4 (H.264 + AAC) from a span of a source file: clips and browser previews.

A `Cut` says which frames go out and which source time becomes 0. Frames keep their own
pts * time_base (shifted), never an index times a nominal rate, so a variable frame rate
survives. The video is either stream-copied (only from a keyframe, for a codec MP4 holds,
without frame reordering, so no copied frame needs one that was left out) or re-encoded
with libx264 without B-frames; the sound is always decoded, cut to the sample and encoded
as AAC (cheap, and exact where copying would cut at packet boundaries). The file is written
beside its destination and renamed into place, with the index at the front (faststart).
"""

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from core.errors import BadVideo
from indexer.demux import MAX_READ_ERRORS, seek
from indexer.probe import audio_stream, frame_time, open_video, origin_s

# Codecs an MP4 can hold as they are, so a cut on a keyframe can copy them.
COPYABLE = {"h264", "hevc", "av1", "vp9"}
AAC_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}


@dataclass(frozen=True)
class Cut:
    """zero_s: the source time (seconds, as stored: origin included) shown at 0 in the output.
    first_pts / end_s: frames with first_pts <= pts (video time base) and pts * tb < end_s
    go out (None: from the start / to the end). seek_pts: where to seek to reach the first
    frame (None: read from the start). keyframe: the first frame is a keyframe."""
    zero_s: Fraction
    first_pts: int | None = None
    end_s: Fraction | None = None
    seek_pts: int | None = None
    keyframe: bool = False


@dataclass(frozen=True)
class Encoding:
    max_height: int | None       # scale down to at most this many lines (None: as it is)
    preset: str
    crf: int


def can_copy(stream, cut: Cut) -> bool:
    ctx = stream.codec_context
    return cut.keyframe and ctx.name in COPYABLE and not ctx.has_b_frames


def write_mp4(path: Path, dest: Path, cut: Cut, encoding: Encoding, *, copy: bool) -> None:
    """Write the cut of `path` to `dest` (replaced atomically); `copy`: stream-copy the
    video (the caller checked can_copy)."""
    tmp = dest.with_name(f".{dest.stem}.{os.getpid()}.tmp.mp4")
    try:
        container, stream = open_video(path)
        with container, av.open(str(tmp), "w", format="mp4",
                                options={"movflags": "+faststart"}) as out:
            _write(container, stream, out, cut, encoding, copy)
        os.replace(tmp, dest)
    except av.error.FFmpegError as e:
        raise BadVideo(f"{Path(path).name}: the video could not be cut or converted ({e})"
                       ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _write(container, stream, out, cut: Cut, encoding: Encoding, copy: bool) -> None:
    tb = stream.time_base
    shift = round(cut.zero_s / tb)           # output pts = source pts - shift
    end_pts = None if cut.end_s is None else cut.end_s / tb
    video = _Video(out, stream, encoding, copy, shift, end_pts)
    source_audio = audio_stream(container)
    sound = _Audio(out, source_audio, cut) if source_audio is not None else None
    if cut.seek_pts is not None:
        seek(container, cut.seek_pts, stream)
    streams = [stream] + ([source_audio] if sound else [])
    for packet in _demux(container, streams):
        if packet.stream is stream and not video.done:
            video.add(packet, cut.first_pts)
        elif sound is not None and packet.stream is source_audio and not sound.done:
            for frame in _decode(packet):
                sound.add(frame)
        if video.done and (sound is None or sound.done):
            break
    video.finish()
    if sound is not None:
        sound.finish()


def _demux(container, streams):
    """Packets of the streams; a damaged stretch is skipped, a truncated file just ends."""
    errors = 0
    while True:
        try:
            yield from container.demux(*streams)
            return
        except av.error.EOFError:
            return
        except av.error.FFmpegError:
            errors += 1
            if errors > MAX_READ_ERRORS:
                return


def _decode(packet) -> list:
    try:
        return packet.decode()
    except av.error.FFmpegError:
        return []         # damaged data: the decoder conceals it, the cut goes on


class _Video:
    """The picture: packets in, copied or decoded and encoded; out in pts order with the
    last frame lasting until the end of the cut."""

    def __init__(self, out, source, encoding: Encoding, copy: bool, shift: int, end_pts):
        self.out, self.source, self.copy, self.shift, self.end_pts = out, source, copy, shift, end_pts
        self.tb = source.time_base
        self.last_pts = None         # source pts of the last frame taken
        self.held = None             # the last packet out, muxed once the next is known
        self.done = False
        if copy:
            self.stream = out.add_stream_from_template(source)
        else:
            self.stream = _encoder(out, source, encoding)

    def add(self, packet, first_pts: int | None) -> None:
        if self.copy:
            if packet.pts is None or packet.size == 0:
                return
            self._take(packet.pts, first_pts, packet)
            return
        for frame in _decode(packet):
            t = frame.pts if frame.pts is not None else frame.dts
            if t is not None:
                self._take(t, first_pts, frame)

    def _take(self, pts: int, first_pts: int | None, item) -> None:
        if self.end_pts is not None and pts >= self.end_pts:
            self.done = True
            return
        if (first_pts is not None and pts < first_pts) or \
                (self.last_pts is not None and pts <= self.last_pts):
            return      # before the cut, or out of order (damage): not shown
        self.last_pts = pts
        item.pts = pts - self.shift
        item.time_base = self.tb
        if self.copy:
            item.dts = item.pts
            self._hold(item)
        else:
            item.pict_type = av.video.frame.PictureType.NONE   # let the encoder choose
            frame = item.reformat(width=self.stream.width, height=self.stream.height,
                                  format="yuv420p")
            frame.pts, frame.time_base = item.pts, self.tb
            for p in self.stream.encode(frame):
                self._hold(p)

    def _hold(self, packet) -> None:
        # No B-frames on either path: decode order is presentation order, so a packet lasts
        # until the next one starts.
        if self.held is not None:
            self.held.duration = packet.pts - self.held.pts
            self.out.mux(self.held)
        packet.stream = self.stream
        self.held = packet

    def finish(self) -> None:
        if not self.copy:
            for p in self.stream.encode(None):
                self._hold(p)
        if self.held is None:
            raise BadVideo("no picture could be decoded in this part of the video")
        if self.end_pts is not None:
            self.held.duration = max(1, round(self.end_pts - self.shift) - self.held.pts)
        self.out.mux(self.held)


def _encoder(out, source, encoding: Encoding):
    from indexer.probe import display_size
    ctx = source.codec_context
    w, h = display_size(ctx.width, ctx.height, ctx.sample_aspect_ratio)
    if encoding.max_height and h > encoding.max_height:
        w, h = w * encoding.max_height / h, encoding.max_height
    stream = out.add_stream("libx264", rate=source.average_rate or Fraction(25))
    stream.width, stream.height = max(2, round(w / 2) * 2), max(2, round(h / 2) * 2)
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = source.time_base
    stream.codec_context.max_b_frames = 0
    stream.codec_context.options = {"preset": encoding.preset, "crf": str(encoding.crf)}
    return stream


class _Audio:
    """The sound: decoded, cut to the sample at the cut's times, encoded as AAC. Samples
    follow each other from the first one placed by its own time."""

    def __init__(self, out, source, cut: Cut):
        ctx = source.codec_context
        self.rate = ctx.sample_rate if ctx.sample_rate in AAC_RATES else 48000
        layout = "mono" if ctx.layout.nb_channels == 1 else "stereo"
        self.stream = out.add_stream("aac", rate=self.rate, layout=layout)
        self.out = out
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
        self.zero = cut.zero_s
        self.limit = None if cut.end_s is None else round((cut.end_s - cut.zero_s) * self.rate)
        self.pos = None          # output sample index of the next sample, once one is out
        self.done = False

    def add(self, frame) -> None:
        t = frame_time(frame)
        pos = self.pos if self.pos is not None else \
            round((t - self.zero) * self.rate) if t is not None else 0
        for f in self.resampler.resample(frame):
            pos = self._write(f, pos)

    def _write(self, frame, pos: int) -> int:
        samples = frame.to_ndarray()
        n = samples.shape[1]
        lo, hi = max(0, -pos), n if self.limit is None else min(n, self.limit - pos)
        if hi > lo:
            part = av.AudioFrame.from_ndarray(samples[:, lo:hi], format="fltp",
                                              layout=frame.layout.name)
            part.sample_rate, part.pts, part.time_base = self.rate, pos + lo, Fraction(1, self.rate)
            self._encode(part)
            self.pos = pos + hi
        if self.limit is not None and pos + n >= self.limit:
            self.done = True
        return pos + n

    def _encode(self, frame) -> None:
        for p in self.stream.encode(frame):
            self.out.mux(p)

    def finish(self) -> None:
        if not self.done:
            for f in self.resampler.resample(None):
                self._write(f, self.pos if self.pos is not None else 0)
        self._encode(None)


def origin(path: Path) -> Fraction:
    """The source time shown at 0 by a player (the container's start)."""
    container, _ = open_video(path)
    with container:
        return origin_s(container)
