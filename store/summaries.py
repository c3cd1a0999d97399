"""A video's summary and chapters as rows: one 'summary' row and N 'chapter' rows. The caller
owns the transaction."""

from collections.abc import Sequence

from sqlalchemy import delete
from sqlalchemy.orm import Session

from store.schema import Summary


def replace_summaries(session: Session, *, video_id: str, duration_ms: int, summary: str,
                      chapters: Sequence[dict], model_id: str) -> None:
    """Replace the video's rows: the summary over [0, duration_ms), then the chapters
    ({start_ms, end_ms, title, summary}) in order, untitled ones named "Chapter i"."""
    session.execute(delete(Summary).where(Summary.video_id == video_id))
    session.add(Summary(video_id=video_id, kind="summary", idx=0, start_ms=0,
                        end_ms=duration_ms, title="", text=summary or "", model_id=model_id))
    session.add_all(Summary(video_id=video_id, kind="chapter", idx=i, start_ms=c["start_ms"],
                            end_ms=c["end_ms"], title=c.get("title") or f"Chapter {i + 1}",
                            text=c.get("summary") or "", model_id=model_id)
                    for i, c in enumerate(chapters))
