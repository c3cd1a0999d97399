"""Smart cut of H.264: re-encode only the head of a clip, from the frame shown at START up to
the next keyframe, and copy the rest as it is.

The head is encoded by libx264 with the source's profile, level and size, under parameter
set ids the source does not use (x264's sps-id; its PPS takes the same id), and the MP4's
avcC carries both sets: every slice names its own PPS, so one sample description decodes
both parts. Only for what this can be sure of: 8-bit 4:2:0 H.264 in length-prefixed form
(4-byte lengths), without frame reordering, whose next keyframe is an IDR picture (nothing
after it refers to what came before).
"""

import struct

import av

PROFILES = {"Baseline": "baseline", "Constrained Baseline": "baseline", "Main": "main",
            "High": "high"}
SPS, PPS, SEI, IDR = 7, 8, 6, 5


def possible(stream) -> bool:
    """Whether the stream's head can be re-encoded to match it."""
    ctx = stream.codec_context
    extradata = ctx.extradata or b""
    return (ctx.name == "h264" and not ctx.has_b_frames and ctx.pix_fmt == "yuv420p"
            and ctx.profile in PROFILES and len(extradata) > 6 and extradata[0] == 1
            and extradata[4] & 3 == 3)


def is_idr(data: bytes) -> bool:
    """Whether a length-prefixed access unit holds an IDR slice."""
    return any(nal and nal[0] & 31 == IDR for nal in _length_prefixed(data))


def head_encoder(source, out_stream, preset: str, crf: int):
    """An open libx264 context for the head, its parameter sets added to `out_stream`'s
    avcC (a copy of the source's); `to_sample` turns its packets into the output's form."""
    ctx = source.codec_context
    sps, pps, rest = _parse_avcc(ctx.extradata)
    used = {_ue(s[4:]) for s in sps} | {_ue(p[1:]) for p in pps}
    free = next(i for i in range(32) if i not in used)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = ctx.width, ctx.height, "yuv420p"
    enc.time_base, enc.framerate = source.time_base, source.average_rate or 25
    enc.max_b_frames = 0
    enc.flags |= av.codec.context.Flags.global_header     # parameter sets apart, for the avcC
    level = ctx.level if ctx.level and ctx.level > 0 else None
    enc.options = {"preset": preset, "crf": str(crf), "profile": PROFILES[ctx.profile],
                   "x264-params": f"sps-id={free}",
                   **({"level": f"{level // 10}.{level % 10}"} if level else {})}
    enc.open()
    nals = _annexb(enc.extradata)
    out_stream.codec_context.extradata = _build_avcc(
        ctx.extradata, sps + [n for n in nals if n[0] & 31 == SPS],
        pps + [n for n in nals if n[0] & 31 == PPS], rest)
    return enc


def to_sample(data: bytes) -> bytes:
    """An Annex B access unit from the head encoder as a 4-byte length-prefixed sample,
    without its parameter sets (they are in the avcC) and x264's SEI."""
    return b"".join(struct.pack(">I", len(n)) + n for n in _annexb(data)
                    if n[0] & 31 not in (SPS, PPS, SEI))


def _annexb(data: bytes) -> list[bytes]:
    parts = data.split(b"\x00\x00\x01")
    # A 4-byte start code leaves a zero at the end of the part before it.
    return [p.rstrip(b"\x00") if i < len(parts) - 1 else p
            for i, p in enumerate(parts) if i > 0 and p]


def _length_prefixed(data: bytes) -> list[bytes]:
    nals, i = [], 0
    while i + 4 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        if n == 0:
            break
        nals.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return nals


def _parse_avcc(extradata: bytes) -> tuple[list[bytes], list[bytes], bytes]:
    i, sps = 6, []
    for _ in range(extradata[5] & 31):
        n = struct.unpack(">H", extradata[i:i + 2])[0]
        sps.append(extradata[i + 2:i + 2 + n])
        i += 2 + n
    count, i, pps = extradata[i], i + 1, []
    for _ in range(count):
        n = struct.unpack(">H", extradata[i:i + 2])[0]
        pps.append(extradata[i + 2:i + 2 + n])
        i += 2 + n
    return sps, pps, extradata[i:]


def _build_avcc(source: bytes, sps: list[bytes], pps: list[bytes], rest: bytes) -> bytes:
    out = bytearray(source[:5]) + bytes([0xE0 | len(sps)])
    for s in sps:
        out += struct.pack(">H", len(s)) + s
    out.append(len(pps))
    for p in pps:
        out += struct.pack(">H", len(p)) + p
    return bytes(out + rest)


def _ue(data: bytes) -> int:
    """The first Exp-Golomb coded number of a bit string (an id at the start of a set)."""
    bits = "".join(f"{b:08b}" for b in data[:8])
    zeros = len(bits) - len(bits.lstrip("0"))
    return int(bits[zeros:2 * zeros + 1], 2) - 1
