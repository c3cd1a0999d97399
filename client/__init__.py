"""chronoscope's Python SDK: a typed, synchronous client of the HTTP API (httpx). It imports
nothing of the server."""

from client.client import ApiError, Client, IndexingFailed
from client.types import (Chapter, ClipFile, Health, Moment, SearchPage, Segment, SegmentPage, Summary,
                          Video, VideoPage)

__all__ = ["ApiError", "Chapter", "ClipFile", "Client", "Health", "IndexingFailed", "Moment",
           "SearchPage", "Segment", "SegmentPage", "Summary", "Video", "VideoPage"]
