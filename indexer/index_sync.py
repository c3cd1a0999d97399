"""The vector indexes kept in step with the database (the write side of `search.index`).

One index per vector space (`search.index.state.SPACES`): `text` holds the segments embedded
by the configured text embedder (`model.embed.model_id`), `visual` the keyframes embedded by
the image-text model (`model.visual.model_id`). Ids are segment ids. A space holds one
model's vectors, since a query vector is comparable only with vectors of the same model;
switching models rebuilds that space on the next `sync`. Every public call covers every
space. Postgres is the truth: `rebuild` makes the indexes from it at any time.

Cheap sync: for every video the state keeps its generation stamp (`videos.updated_at`, which
the pipeline bumps after writing a chunk's segments, and which vanishes with the row on
delete), the ids it has in the index (as runs of consecutive ids) and a signature (sum of a
hash of id and embedding). `sync` reads `videos (id, updated_at)` and the rows above a
high-water mark on id (a safety net for writers that do not touch the video row), and looks
at the segments of only the videos whose stamp changed, appeared or vanished. A video that
only gained rows (the signature of its old rows is unchanged) gets the new ones appended; any
other change (rows removed, or an id reused with new content, which SQLite can do) replaces
all of that video's vectors. Work and I/O are proportional to what changed, not to the index;
`sync(full=True)` compares every video, and `rebuild` starts from scratch.

Compaction: the delta is folded into main once it holds more than max(2048, min(32768, 5% of
main)) vectors, and the deleted ids are removed from main once they exceed 10% of it; both
rewrite vectors.faiss (atomically). Until then a sync writes only the small state file. The
IVF is re-planned (rebuilt from the database) when N drifts 4x from the size it was trained
for, and main goes from flat to IVF and back as the size calls for.

One video's rows never break the shared index: times beyond int32 ms are clamped where
they enter the attrs (`search.index.filters.Attrs.of_rows`).

Writers hold one fcntl lock for all spaces (vectors.faiss.lock) since several workers may
finish videos at once.
"""

import fcntl
import hashlib
from contextlib import contextmanager

import faiss
import numpy as np

from core.config import Settings
from core.errors import ModelUnavailable
from search.index import state as files
from search.index.faiss_ops import (FLAT, IVF, index_kind, new_index, plan, storage, train,
                                    train_size)
from search.index.filters import Attrs
from search.index.state import SPACES, TEXT, State
from store import index_rows
from store.db import session_scope

RETRAIN_FACTOR = 4           # re-plan the IVF when N moves this far from its trained size
DELTA_MIN, DELTA_MAX = 2048, 32768   # exact delta search stays around a millisecond
DELETED_FRACTION = 0.1       # compact once a tenth of main is dead weight
BATCH = 20_000


def rebuild(settings: Settings) -> int:
    """Rebuild every space from the database; returns the number of vectors in them."""
    with _writer(settings):
        return sum(_rebuild(settings, space, _target_model(
            settings, space, files.read_state(settings, space))).total for space in SPACES)


def sync(settings: Settings, *, full: bool = False) -> None:
    """Bring every space in line with the database: vectors of new segments added, those of
    deleted or replaced segments dropped. Cheap: only videos whose stamp changed are read."""
    with _writer(settings):
        for space in SPACES:
            _sync_space(settings, space, full=full)


def _sync_space(settings: Settings, space: str, *, full: bool) -> None:
    state = files.read_state(settings, space)
    model = _target_model(settings, space, state)
    if (state is None or state.model != (model or "")
            or state.main_stat != files.stat(files.index_path(settings, space))
            or state.attrs_stat != files.stat(files.attrs_path(settings, space))):
        _rebuild(settings, space, model)
        return
    if _apply_changes(settings, state, full=full):
        _maybe_compact(settings, space, state)
        files.save_state(settings, state, space)


def remove_video(settings: Settings, video_id: str) -> None:
    """Drop one video's vectors now, whatever the database says (a later `sync` adds them
    back if its segments are still there). `delete` needs only `sync`, after the rows go."""
    with _writer(settings):
        for space in SPACES:
            state = files.read_state(settings, space)
            if state is None or video_id not in state.videos:
                continue
            _drop(state, files.unruns(state.videos.pop(video_id)["runs"]))
            files.save_state(settings, state, space)


def _drop(state: State, ids: np.ndarray) -> None:
    in_delta = np.isin(state.delta_ids, ids)
    if in_delta.any():
        state.delta_ids = state.delta_ids[~in_delta]
        state.delta_vecs = state.delta_vecs[~in_delta]
        state.delta_attrs = state.delta_attrs.take(~in_delta)
    # Everything else may sit in main: excluded at search time until compaction.
    state.deleted = np.union1d(state.deleted, ids)


def _append(state: State, ids: np.ndarray, vecs: np.ndarray, attrs: Attrs) -> None:
    if not len(ids):
        return
    if state.delta_vecs.shape[1] != vecs.shape[1]:
        state.delta_vecs = np.zeros((0, vecs.shape[1]), np.float32)
    state.dim = state.dim or int(vecs.shape[1])
    state.delta_ids = np.concatenate([state.delta_ids, ids])
    state.delta_vecs = np.concatenate([state.delta_vecs, vecs.astype(np.float32)])
    state.delta_attrs = Attrs.concat([state.delta_attrs, attrs])
    state.hwm = max(state.hwm, int(ids.max()))


def _apply_changes(settings: Settings, state: State, *, full: bool) -> bool:
    model = state.model
    with session_scope(settings) as s:
        # Stamps first: segments read afterwards are at least as new as them, so a write
        # that lands in between is seen again at the next sync (its stamp moves after it).
        stamps = {v: _stamp(t) for v, t in index_rows.video_stamps(s).items()}
        fresh = index_rows.videos_with_rows_above(s, model=model, above_id=state.hwm)
        changed = {v for v, t in stamps.items()
                   if full or v in fresh or state.videos.get(v, {}).get("stamp") != t}
        gone = [v for v in state.videos if v not in stamps]
        if not changed and not gone:
            return False
        for v in gone:
            _drop(state, files.unruns(state.videos.pop(v)["runs"]))
        for v in sorted(changed):
            rows = index_rows.video_rows(s, video_id=v, model=model)
            _update_video(state, v, stamps[v], rows)
    return True


def _update_video(state: State, video_id: str, stamp: str, rows) -> None:
    old = state.videos.get(video_id)
    ids, vecs = _decode(rows, state.dim)
    if len(ids) and state.dim and vecs.shape[1] != state.dim:
        raise ValueError(f"segment vectors of {video_id} have {vecs.shape[1]} dimensions, "
                         f"the index {state.dim}: rebuild it")
    attrs = Attrs.of_rows(rows, state.ord_of)
    sig = _sig(rows)
    if old is None:
        _append(state, ids, vecs, attrs)
    elif old["sig"] != str(sig):
        before = files.unruns(old["runs"])
        new = ~np.isin(ids, before)
        kept_sig = _sig([r for r, is_new in zip(rows, new) if not is_new])
        if np.isin(before, ids).all() and str(kept_sig) == old["sig"]:
            _append(state, ids[new], vecs[new], attrs.take(new))     # only gained rows
        else:
            _drop(state, before)                                   # anything else: replace
            _append(state, ids, vecs, attrs)
    state.ord_of(video_id)          # a record even with no rows: its stamp is then known
    state.videos[video_id].update(stamp=stamp, sig=str(sig), runs=files.runs(ids))


def _rebuild(settings: Settings, space: str, model: str | None) -> State:
    """A fresh main index and state of a space from the database (lock held)."""
    state = State(model=model or "")
    with session_scope(settings) as s:
        stamps = {v: _stamp(t) for v, t in index_rows.video_stamps(s).items()}
    index, table, rows_by_video = None, None, {}
    if model:
        index, table, rows_by_video = _build_main(settings, state)
    for v, (ids, sig) in rows_by_video.items():
        state.videos[v].update(stamp=stamps.get(v, ""), sig=str(sig % (1 << 64)),
                               runs=files.runs(np.asarray(ids, np.int64)))
    _write_main(settings, space, state, index, table)
    files.save_state(settings, state, space)
    return state


def _build_main(settings: Settings, state: State):
    """Stream every embedded segment of the model into a new main index; returns it, its
    attrs by id and {video_id: (ids, signature)}."""
    model = state.model
    with session_scope(settings) as s:
        n = index_rows.count_embedded(s, model=model)
        if not n:
            return None, None, {}
        spec = plan(n, settings)
        index = _trained_ivf(s, model, n, spec) if spec["kind"] == IVF else None
        ids_by_video: dict[str, list[int]] = {}
        sig_by_video: dict[str, int] = {}
        all_ids, attrs = [], []
        for part in index_rows.stream_rows(s, model=model, batch=BATCH):
            ids, vecs = _decode(part)
            if index is None:
                index = new_index(vecs.shape[1], spec)
            index.add_with_ids(vecs, ids)
            for row in part:
                seg_id, emb, video_id = row[0], row[1], row[2]
                ids_by_video.setdefault(video_id, []).append(seg_id)
                sig_by_video[video_id] = sig_by_video.get(video_id, 0) + _row_hash(seg_id, emb)
            all_ids.append(ids)
            attrs.append(Attrs.of_rows(part, state.ord_of))
            state.hwm = max(state.hwm, int(ids.max()))
            state.dim = int(vecs.shape[1])
        state.trained_for = spec.get("trained_for", 0)
        table = (np.concatenate(all_ids), Attrs.concat(attrs))    # ordered by id
        return index, table, {v: (ids_by_video[v], sig_by_video[v]) for v in ids_by_video}


def _trained_ivf(session, model: str, n: int, spec: dict) -> faiss.Index:
    """A new IVF, trained on a strided sample over the id range (every era of the library,
    not the oldest)."""
    stride = max(1, n // train_size(spec))
    sample = index_rows.sample_embeddings(session, model=model, stride=stride,
                                          limit=train_size(spec))
    _, vecs = _decode(sample)
    index = new_index(vecs.shape[1], spec)
    train(index, vecs)
    return index


def _write_main(settings: Settings, space: str, state: State, index: faiss.Index | None,
                table: tuple[np.ndarray, Attrs] | None) -> None:
    """Write main and its attrs in storage order; `table` holds the attrs of at least every
    id in the index, by id (sorted)."""
    path, attrs = files.index_path(settings, space), files.attrs_path(settings, space)
    if index is None or index.ntotal == 0:
        path.unlink(missing_ok=True)
        attrs.unlink(missing_ok=True)
        state.main_kind, state.main_count = "", 0
    else:
        ids = storage(index)
        at = np.searchsorted(table[0], ids)
        if not np.array_equal(table[0][np.minimum(at, len(table[0]) - 1)], ids):
            raise RuntimeError("vector index: attributes missing for indexed ids")
        files.atomic_write(path, lambda tmp: faiss.write_index(index, str(tmp)))
        files.savez(attrs, **table[1].take(at).arrays())
        state.main_kind, state.main_count = index_kind(index), int(index.ntotal)
    state.main_stat, state.attrs_stat = files.stat(path), files.stat(attrs)


def _maybe_compact(settings: Settings, space: str, state: State) -> None:
    """Fold the delta and the deleted set into main when they grow, and re-plan the index
    type when the size calls for another one."""
    exact_max = settings.search.exact_max
    if plan(state.total, settings)["kind"] == IVF and state.main_kind != IVF:
        _rebuild_into(settings, space, state)    # flat -> IVF: training needs everything
        return
    if state.main_kind == IVF and (
            state.total < exact_max // 2     # back to exact, with hysteresis against flapping
            or not state.trained_for / RETRAIN_FACTOR <= state.total
            <= state.trained_for * RETRAIN_FACTOR):
        _rebuild_into(settings, space, state)
        return
    delta_cap = min(DELTA_MAX, max(DELTA_MIN, state.main_count // 20))
    dead = len(state.deleted) > DELETED_FRACTION * state.main_count + 1000
    first = state.main_kind == "" and len(state.delta_ids)   # give the library its file
    if len(state.delta_ids) > delta_cap or dead or first:
        _compact(settings, space, state)


def _compact(settings: Settings, space: str, state: State) -> None:
    """Main rewritten without the deleted ids and with the delta folded in."""
    index, ids, attrs = None, np.zeros(0, np.int64), Attrs.empty()
    if state.main_kind:
        index = faiss.read_index(str(files.index_path(settings, space)))
        ids, attrs = storage(index), files.read_attrs(settings, space)
        live = ~np.isin(ids, state.deleted)      # a deleted id may come back in the delta
        ids, attrs = ids[live], attrs.take(live)
    if index is not None and len(state.deleted):
        index.remove_ids(faiss.IDSelectorBatch(state.deleted))
    if len(state.delta_ids):
        if index is None:
            index = new_index(state.delta_vecs.shape[1], {"kind": FLAT})
        index.add_with_ids(state.delta_vecs, state.delta_ids)
    ids = np.concatenate([ids, state.delta_ids])
    attrs = Attrs.concat([attrs, state.delta_attrs])
    order = np.argsort(ids, kind="stable")
    _write_main(settings, space, state, index, (ids[order], attrs.take(order)))
    state.delta_ids = np.zeros(0, np.int64)
    state.delta_vecs = np.zeros((0, state.dim or state.delta_vecs.shape[1]), np.float32)
    state.delta_attrs = Attrs.empty()
    state.deleted = np.zeros(0, np.int64)


def _rebuild_into(settings: Settings, space: str, state: State) -> None:
    fresh = _rebuild(settings, space, state.model)
    for name in State.__dataclass_fields__:
        setattr(state, name, getattr(fresh, name))


def _row_hash(seg_id: int, emb: bytes) -> int:
    h = hashlib.blake2b(emb, digest_size=8, key=int(seg_id).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little")


def _sig(rows) -> int:
    return sum(_row_hash(r[0], r[1]) for r in rows) % (1 << 64)


def _stamp(value) -> str:
    return value.isoformat() if value is not None else ""


@contextmanager
def _writer(settings: Settings):
    settings.faiss_path.parent.mkdir(parents=True, exist_ok=True)
    lock = settings.faiss_path.with_name(settings.faiss_path.name + ".lock")
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _target_model(settings: Settings, space: str, state: State | None) -> str | None:
    """The embedder queries of the space use; when it cannot be loaded here, keep what the
    index has, or else the space's most recent model in the database."""
    from model import embed, visual
    try:
        return (embed if space == TEXT else visual).model_id(settings)
    except ModelUnavailable:
        if state is not None and state.model:
            return state.model
        with session_scope(settings) as s:
            return index_rows.latest_embed_model(s, visual=space != TEXT)


def _decode(rows, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    if not rows:
        return ids, np.zeros((0, dim or 0), np.float32)
    return ids, np.stack([np.frombuffer(r[1], np.float32) for r in rows])

