"""Writing an MP4 (H.264 + AAC) from a span of a source file: clips and browser previews.

A `Cut` says which frames go out and which source time becomes 0. Frames keep their own
pts * time_base (shifted), never an index times a nominal rate, so a variable frame rate
survives. The video is stream-copied (only from a keyframe, for a codec MP4 holds, without
frame reordering, so no copied frame needs one that was left out), smart-cut (H.264: the
head re-encoded up to the next keyframe, copied from it; indexer/smartcut.py) or
re-encoded with libx264 without B-frames; the sound is always decoded, cut to the sample
and encoded as AAC (cheap, and exact where copying would cut at packet boundaries). The file is written
beside its destination and renamed into place, with the index at the front (faststart).
"""

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from core.errors import BadVideo
from indexer import smartcut
from indexer.demux import MAX_READ_ERRORS, seek
from indexer.probe import audio_stream, frame_time, open_video, origin_s

COPY, SMART, ENCODE = "copy", "smart", "encode"
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
    next_key_pts: int | None = None     # the first keyframe after the first frame
    next_key_idr: bool = False          # ...is an IDR picture (H.264)


@dataclass(frozen=True)
class Encoding:
    max_height: int | None       # scale down to at most this many lines (None: as it is)
    preset: str
    crf: int


def mode(stream, cut: Cut) -> str:
    """How the cut's picture is written: "copy" (it starts on a keyframe), "smart" (the head
    up to the next keyframe re-encoded, the rest copied) or "encode"."""
    ctx = stream.codec_context
    if cut.keyframe and ctx.name in COPYABLE and not ctx.has_b_frames:
        return COPY
    if cut.next_key_idr and cut.end_s is not None and \
            cut.next_key_pts * stream.time_base < cut.end_s and smartcut.possible(stream):
        return SMART
    return ENCODE


def write_mp4(path: Path, dest: Path, cut: Cut, encoding: Encoding, *, how: str) -> None:
    """Write the cut of `path` to `dest` (replaced atomically), its picture as `how` says
    (`mode` of the stream and cut, or ENCODE)."""
    tmp = dest.with_name(f".{dest.stem}.{os.getpid()}.tmp.mp4")
    try:
        container, stream = open_video(path)
        with container, av.open(str(tmp), "w", format="mp4",
                                options={"movflags": "+faststart"}) as out:
            _write(container, stream, out, cut, encoding, how)
        os.replace(tmp, dest)
    except av.error.FFmpegError as e:
        raise BadVideo(f"{Path(path).name}: the video could not be cut or converted ({e})"
                       ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _past(packet, cut: Cut) -> bool:
    """Whether a packet lies well past the cut's end: beyond any reordering, and beyond how
    far a muxer interleaves sound behind the picture."""
    return cut.end_s is not None and packet.pts is not None and \
        packet.pts * packet.stream.time_base > cut.end_s + 5


def _write(container, stream, out, cut: Cut, encoding: Encoding, how: str) -> None:
    video = _Video(out, stream, encoding, how, cut)
    source_audio = audio_stream(container)
    sound = _Audio(out, source_audio, cut) if source_audio is not None else None
    if cut.seek_pts is not None:
        seek(container, cut.seek_pts, stream)
    streams = [stream] + ([source_audio] if sound else [])
    for packet in _demux(container, streams):
        if video.done and packet.stream is stream and _past(packet, cut):
            break       # a sound track that ends early must not make a clip read to EOF
        if packet.stream is stream and not video.done:
            video.add(packet)
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
    """The picture: packets in, copied or decoded and encoded (a smart cut: encoded up to
    the next keyframe, copied from it); out in pts order, the last frame lasting until the
    end of the cut."""

    def __init__(self, out, source, encoding: Encoding, how: str, cut: Cut):
        self.out, self.how, self.source = out, how, source
        self.tb = source.time_base
        self.shift = round(cut.zero_s / self.tb)      # output pts = source pts - shift
        self.end_pts = None if cut.end_s is None else cut.end_s / self.tb
        self.first_pts, self.key_pts = cut.first_pts, cut.next_key_pts
        self.last_pts = None         # source pts of the last frame taken
        self.held = None             # the last packet out, muxed once the next is known
        self.done = False
        self.turned = how != ENCODE  # a copied stream keeps the source's display matrix
        if how == ENCODE:
            self.stream = self.encoder = _encoder(out, source, encoding)
        else:
            self.stream = out.add_stream_from_template(source)
            self.encoder = smartcut.head_encoder(source, self.stream, encoding.preset,
                                                 encoding.crf) if how == SMART else None

    def add(self, packet) -> None:
        if self.how == COPY or (self.how == SMART and packet.pts is not None
                                and packet.pts >= self.key_pts):
            if packet.pts is None or packet.size == 0:
                return
            self._drain()
            self._take(packet.pts, packet)
            return
        self._frames(_decode(packet))

    def _frames(self, frames) -> None:
        for frame in frames:
            t = frame.pts if frame.pts is not None else frame.dts
            if t is not None:
                self._take(t, frame)

    def _take(self, pts: int, item) -> None:
        if self.end_pts is not None and pts >= self.end_pts:
            self.done = True
            return
        if (self.first_pts is not None and pts < self.first_pts) or \
                (self.last_pts is not None and pts <= self.last_pts):
            return      # before the cut, or out of order (damage): not shown
        self.last_pts = pts
        item.pts = pts - self.shift
        item.time_base = self.tb
        if isinstance(item, av.Packet):
            item.dts = item.pts
            self._hold(item)
            return
        if not self.turned:          # before the first packet goes out: a phone's portrait
            self.turned = True       # video stays upright
            if item.rotation:
                self.stream.set_display_rotation(item.rotation)
        item.pict_type = av.video.frame.PictureType.NONE      # let the encoder choose
        frame = item.reformat(width=self.encoder.width, height=self.encoder.height,
                              format="yuv420p")
        frame.pts, frame.time_base = item.pts, self.tb
        self._encode(frame)

    def _encode(self, frame) -> None:
        for p in self.encoder.encode(frame):
            if self.how == SMART:
                sample = av.Packet(smartcut.to_sample(bytes(p)))
                sample.pts = sample.dts = p.pts
                sample.time_base, sample.is_keyframe = self.tb, p.is_keyframe
                p = sample
            self._hold(p)

    def _drain(self) -> None:
        """The frames still in the decoder, then the encoder's last packets: at the end, and
        before the first copied packet of a smart cut."""
        if self.encoder is None:
            return
        try:
            held = self.source.codec_context.decode(None)
        except av.error.FFmpegError:
            held = []
        self._frames(held)
        self._encode(None)
        self.encoder = None

    def _hold(self, packet) -> None:
        # No B-frames on either path: decode order is presentation order, so a packet lasts
        # until the next one starts.
        if self.held is not None:
            self.held.duration = packet.pts - self.held.pts
            self.out.mux(self.held)
        packet.stream = self.stream
        self.held = packet

    def finish(self) -> None:
        self._drain()
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
