"""Cutting a video's timeline into chunks.

A chunk owns [start_ms, end_ms): the segments whose start falls inside it. Its signals read
a little further on both sides (the overlap) so a phrase or a caption that straddles the
boundary is seen whole by the chunk that owns its start, and by no other.
"""

from dataclasses import dataclass

from core.errors import BadVideo


@dataclass(frozen=True)
class ChunkSpan:
    idx: int
    start_ms: int
    end_ms: int

    def read_range(self, overlap_ms: int, duration_ms: int) -> tuple[int, int]:
        """The wider range a chunk decodes: its own span plus the overlap, inside the video."""
        return max(0, self.start_ms - overlap_ms), min(duration_ms, self.end_ms + overlap_ms)

    def owns(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms


def plan_chunks(duration_ms: int, *, length_ms: int, max_chunks: int | None = None
                ) -> list[ChunkSpan]:
    """Fixed-length chunks on an absolute grid; the last one is cut at the end of the video.
    The grid depends only on the length setting, so a re-plan of the same video gives the
    same chunks and resumed work lines up with what is stored. More than max_chunks is
    refused before any is made: the work one upload makes is bounded."""
    if duration_ms <= 0:
        return []
    if length_ms <= 0:
        raise ValueError("chunk length must be positive")
    count = -(-duration_ms // length_ms)
    if max_chunks is not None and count > max_chunks:
        raise BadVideo(f"the video would be cut into {count} chunks, more than the limit of "
                       f"{max_chunks} (CHRONOSCOPE_DECODE__MAX_CHUNKS); raise it or the chunk "
                       "length (CHRONOSCOPE_CHUNK__LENGTH_S)")
    return [ChunkSpan(i, t, min(t + length_ms, duration_ms))
            for i, t in enumerate(range(0, duration_ms, length_ms))]
