"""Re-embed a library with the configured text embedder: every segment of the text space
gets a new vector and records the model that made it (segments.embed_model), then the
vector indexes are rebuilt from the database.

Resumable and idempotent: each batch is committed on its own and only segments not yet
embedded by the target model are read, so a run that is killed goes on where it stopped,
and a second run finds nothing to do (it still rebuilds the index, which is cheap next to
embedding and makes sure the index matches)."""

from collections.abc import Callable

from core.config import Settings


def reembed(settings: Settings, *, batch: int = 256,
            progress: Callable[[int, int], None] | None = None) -> dict:
    """{"model", "embedded", "vectors"}: the embedder's model id, how many segments this run
    re-embedded, and the size of the rebuilt indexes. progress(done, total) after each
    batch."""
    from indexer import index_sync
    from model import embed
    from store import index_rows
    from store.db import session_scope
    model = embed.model_id(settings)
    with session_scope(settings) as s:
        total = index_rows.count_to_reembed(s, model=model)
    done, above = 0, 0
    while True:
        with session_scope(settings) as s:
            rows = index_rows.rows_to_reembed(s, model=model, above_id=above, batch=batch)
        if not rows:
            break
        # Embedding runs outside any transaction: SQLite would hold its lock meanwhile.
        vectors = embed.embed([r.text for r in rows], kind="document", settings=settings)
        with session_scope(settings) as s:
            index_rows.set_embeddings(s, ids=[r.id for r in rows],
                                      vectors=[v.tobytes() for v in vectors], model=model)
        done, above = done + len(rows), rows[-1].id
        if progress:
            progress(done, total)
    return {"model": model, "embedded": done, "vectors": index_sync.rebuild(settings)}
