"""Search quality on the public evaluation set: R@1 and R@5 of hybrid retrieval against
vector-only and text-only, in one run.

    .venv/bin/python bench/search_quality.py               # SQLite in bench/.cache/
    .venv/bin/python bench/search_quality.py --postgres    # a scratch Postgres database
    .venv/bin/python bench/search_quality.py --calibrate   # also refit the score's A and B
    .venv/bin/python bench/search_quality.py --per-query   # each query's rank and top moment
    .venv/bin/python bench/search_quality.py --embedders DIR_OR_NAME ...   # vs MiniLM

The library is bench/evalset/videos.json: five generated videos (espeak-ng speech at
scripted times, slides drawn with Pillow) and the sample files of ../shared/media. They
are indexed by the real pipeline (faster-whisper speech, Tesseract screen text, MiniLM
embeddings, chapters), so the scores include recognition errors. The generated files are
cached in bench/.cache/evalset/, the SQLite library in bench/.cache/search_quality/.

bench/evalset/queries.json holds the queries and their truth windows. A result counts as a
hit when it overlaps a truth window (1 s tolerance) and is at most 30 s longer than that
window, so one moment stretched over a whole video cannot score. R@k: share of queries with
a hit among the first k moments. Queries with no window measure "no good match": the share
whose best result is (correctly) marked weak is printed beside the share of answerable
queries whose right answer is not marked weak.

--calibrate fits the score's logistic map (search/query.py: score = sigmoid(A + B *
relevance)) on the moments returned for every query (label: hit) and prints how well
held-out scores match the share of right answers (2-fold). The map is monotone: it sets
what a score means, not the order, so R@k does not depend on the fit.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core.config import Settings  # noqa: E402
from videos import speak  # noqa: E402

EVALSET = ROOT / "bench" / "evalset"
MEDIA = ROOT.parent / "shared" / "media"
CACHE = ROOT / "bench" / ".cache"
SIZE, FPS, RATE = (480, 270), 5, 16000
TOLERANCE_S, LONGER_S = 1.0, 30.0
K = 5


# ---------------------------------------------------------------------------------------
# The generated videos

def slide_image(lines: list[str] | None) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont
    img = Image.new("RGB", SIZE, (250, 250, 245) if lines else (40, 60, 80))
    if lines:
        draw = ImageDraw.Draw(img)
        draw.text((24, 20), lines[0], fill=(20, 20, 90), font=ImageFont.load_default(size=34))
        font = ImageFont.load_default(size=22)
        for i, line in enumerate(lines[1:]):
            draw.text((36, 90 + 44 * i), "- " + line, fill=(10, 10, 10), font=font)
    return np.asarray(img)


def render(spec: dict, path: Path) -> Path:
    """One generated video; raises if a spoken line overruns its slot (the truth windows
    assume each line ends before the next starts)."""
    import av
    duration = spec["duration"]
    audio = np.random.default_rng(0).normal(0, 0.001, duration * RATE).astype(np.float32)
    lines = spec["speech"]
    for i, (t, text) in enumerate(lines):
        clip = speak(text, words_per_minute=155, rate=RATE)
        end = lines[i + 1][0] if i + 1 < len(lines) else duration
        if t + len(clip) / RATE > end:
            raise SystemExit(f"{spec['name']}: line {i} lasts {len(clip) / RATE:.1f} s, "
                             f"longer than its slot {t}-{end} s")
        audio[t * RATE:t * RATE + len(clip)] += clip
    frames = {}
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "23"}
        sound = out.add_stream("aac", rate=RATE)
        sound.layout = "mono"
        for n in range(duration * FPS):
            t = n / FPS
            shown = next((s for s in spec["slides"] if s[0] <= t < s[1]), None)
            key = tuple(shown[2]) if shown else None
            if key not in frames:
                frames[key] = slide_image(list(key) if key else None)
            frame = av.VideoFrame.from_ndarray(frames[key], format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, FPS)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        for i in range(0, len(audio), 1024):
            chunk = av.AudioFrame.from_ndarray(audio[i:i + 1024].reshape(1, -1), format="flt",
                                               layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, i, Fraction(1, RATE)
            for packet in sound.encode(chunk):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def library() -> dict[str, Path]:
    spec = json.loads((EVALSET / "videos.json").read_text())
    out_dir = CACHE / "evalset"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: MEDIA / name for name in spec["shared"]}
    for video in spec["generated"]:
        digest = hashlib.sha256(json.dumps(video, sort_keys=True).encode()).hexdigest()[:10]
        path = out_dir / f"{video['name']}-{digest}.mp4"
        if not path.exists():
            print(f"rendering {path.name}", flush=True)
            render(video, path)
        files[video["name"]] = path
    return files


# ---------------------------------------------------------------------------------------
# Indexing and evaluation

def index_all(settings: Settings, files: dict[str, Path]) -> dict[str, str]:
    from indexer import pipeline
    from store import queries
    from store.db import session_scope
    ids = {}
    for name, path in files.items():
        video_id = pipeline.add_video(settings, path)
        with session_scope(settings) as s:
            ready = queries.get_video(s, video_id).status == "ready"
        if not ready:
            t = time.perf_counter()
            pipeline.index_video(settings, video_id)
            print(f"indexed {name} in {time.perf_counter() - t:.0f} s", flush=True)
        ids[name] = video_id
    return ids


def is_hit(moment, truth, ids) -> bool:
    for name, a, b in truth:
        if moment.video_id != ids[name]:
            continue
        start, end = moment.start_ms / 1000, moment.end_ms / 1000
        if start < b + TOLERANCE_S and end > a - TOLERANCE_S and \
                end - start <= (b - a) + LONGER_S:
            return True
    return False


def evaluate(settings, items, ids, mode: str, per_query: bool = False) -> dict:
    from search import query
    ranks, lengths, lat, weak_pos, weak_neg = [], [], [], [], []
    for item in items:
        t = time.perf_counter()
        found = query.search(settings, item["query"], k=K, mode=mode)
        lat.append(time.perf_counter() - t)
        lengths += [(m.end_ms - m.start_ms) / 1000 for m in found[:1]]
        rank = next((i for i, m in enumerate(found) if is_hit(m, item["truth"], ids)), None)
        if per_query:   # rank of the first hit (- none, n/a no answer), top score, top text
            top = found[0] if found else None
            shown = "n/a" if not item["truth"] else "-" if rank is None else rank + 1
            weak = " weak" if top is None or top.weak else "     "
            print(f"  {shown:>3} {top.score if top else 0:5.2f}{weak}  {item['query'][:45]:<46}"
                  f"{top.text[:70] if top else ''}")
        if not item["truth"]:
            weak_neg.append(not found or found[0].weak)
            continue
        ranks.append(rank)
        if rank is not None:
            weak_pos.append(not found[rank].weak)
    n = len(ranks)
    return {"R@1": sum(r == 0 for r in ranks) / n,
            "R@5": sum(r is not None and r < 5 for r in ranks) / n,
            "MRR": sum(1 / (r + 1) for r in ranks if r is not None) / n,
            "answer not weak": float(np.mean(weak_pos)) if weak_pos else 0.0,
            "no-answer weak": float(np.mean(weak_neg)) if weak_neg else 0.0,
            "top length s": float(np.mean(lengths)),
            "p50 ms": float(np.percentile(lat, 50) * 1000), "n": n}


def relevances(settings, item, ids, k=20) -> list[tuple[float, bool]]:
    """(relevance, hit) of the moments returned for one query; the relevance is read back
    from the (monotone) score with the coefficients in use."""
    from search import query
    out = []
    for m in query.search(settings, item["query"], k=k):
        p = min(max(m.score, 1e-12), 1 - 1e-12)
        out.append(((math.log(p / (1 - p)) - query.A) / query.B, is_hit(m, item["truth"], ids)))
    return out


def fit(rows) -> tuple[float, float]:
    """Logistic regression of hit on relevance, Newton's method, a little L2."""
    x = np.array([[1.0, r] for r, _ in rows])
    y = np.array([float(h) for _, h in rows])
    w = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(2)
        w -= np.linalg.solve(hess, x.T @ (p - y) + 1e-3 * w)
    return float(w[0]), float(w[1])


def calibrate(settings, items, ids) -> None:
    """Fit A, B of the score on all queries' returned moments; check the calibration on
    held-out halves (2-fold: fit on one half, bin the other half's scores)."""
    from search import query
    rows = [relevances(settings, it, ids) for it in items]
    a, b = fit([r for rs in rows for r in rs])
    print(f"\nscore = sigmoid(A + B * relevance): fitted A={a:.2f} B={b:.2f} "
          f"(in use: A={query.A} B={query.B}); the order does not depend on them")
    held = []
    for fold in (0, 1):
        fa, fb = fit([r for i, rs in enumerate(rows) if i % 2 != fold for r in rs])
        held += [(1 / (1 + math.exp(-(fa + fb * rel))), h)
                 for i, rs in enumerate(rows) if i % 2 == fold for rel, h in rs]
    print("held-out reliability (score bin: share of moments that are right answers):")
    for lo in np.arange(0, 1, 0.2):
        inside = [h for p, h in held if lo <= p < lo + 0.2 or (lo >= 0.8 and p >= 1)]
        if inside:
            print(f"  {lo:.1f}-{lo + 0.2:.1f}: {np.mean(inside):.2f} of {len(inside)}")


def check_chapters(settings, ids) -> list[str]:
    from search import chapters
    problems = []
    for name, video_id in ids.items():
        data = chapters.get_summary(settings, video_id)
        ch = data["chapters"]
        ok = bool(ch) and ch[0]["start"] == 0 and ch[-1]["end"] == data["duration"] and all(
            a["end"] == b["start"] for a, b in zip(ch, ch[1:]))
        if not ok:
            problems.append(name)
        print(f"  {name:<28} {len(ch):>2} chapters  " +
              " | ".join(f"{c['start']:.0f}s {c['title']}" for c in ch)[:150])
    return problems


def embedder_costs(settings) -> tuple[float, float]:
    """(CPU s to embed every text segment of the library as documents, p50 ms to embed one
    query) of the settings' text embedder, loaded and warmed up first."""
    from model import embed
    from store import index_rows
    from store.db import session_scope
    with session_scope(settings) as s:
        texts = [r.text for r in index_rows.rows_to_reembed(s, model="", above_id=0,
                                                            batch=10**9)]
    queries = [i["query"] for i in json.loads((EVALSET / "queries.json").read_text())["queries"]]
    embed.embed(texts[:8], settings=settings)
    embed.embed(queries[:2], kind="query", settings=settings)
    cpu = time.process_time()
    embed.embed(texts, settings=settings)
    cpu = time.process_time() - cpu
    lat = []
    for q in queries:
        t = time.perf_counter()
        embed.embed([q], kind="query", settings=settings)
        lat.append(time.perf_counter() - t)
    return cpu, float(np.percentile(lat, 50) * 1000)


def compare_embedders(settings, items, ids, models: list[str], calibrate_: bool) -> None:
    """Each text embedder on a copy of the library re-embedded with it (chronoscope
    reembed), against the configured one (MiniLM) in the same run."""
    import shutil
    from core.config import EmbedSettings
    from indexer.reembed import reembed
    from model import embed
    print(f"\n{'embedder':<34}{'mode':<8}{'R@1':>7}{'R@5':>7}{'MRR':>7}"
          f"{'no-ans weak':>12}{'doc CPU s':>11}{'query p50 ms':>14}")
    base = None
    for model in ["", *models]:
        run = settings
        if model:
            home = CACHE / "search_quality" / ("embedder-" + Path(model).name)
            shutil.rmtree(home, ignore_errors=True)
            shutil.copytree(settings.home, home)
            run = Settings(home=home, embed=EmbedSettings(model=model))
            reembed(run)
        cpu, p50 = embedder_costs(run)
        base = base or (cpu, p50)
        for mode in ("hybrid", "vector"):
            res = evaluate(run, items, ids, mode)
            print(f"{embed.model_id(run)[:33]:<34}{mode:<8}{res['R@1']:>7.3f}{res['R@5']:>7.3f}"
                  f"{res['MRR']:>7.3f}{res['no-answer weak']:>12.3f}"
                  f"{cpu:>6.1f} x{cpu / base[0]:<3.1f}{p50:>8.1f} x{p50 / base[1]:<4.1f}",
                  flush=True)
        if calibrate_ and model:
            calibrate(run, items, ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postgres", action="store_true",
                    help="index into a scratch database on 127.0.0.1:5432, dropped after")
    ap.add_argument("--home", type=Path, default=CACHE / "search_quality")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--per-query", action="store_true",
                    help="print each query's hybrid rank and top moment")
    ap.add_argument("--embedders", nargs="*", default=[],
                    help="text embedders (directory or name) to compare with the configured one")
    args = ap.parse_args()
    files = library()
    items = json.loads((EVALSET / "queries.json").read_text())["queries"]
    scratch = None
    if args.postgres:
        from sqlalchemy import create_engine, text
        scratch = f"chronoscope_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{scratch}"'))
        settings = Settings(home=args.home / "pg",
                            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{scratch}")
        (args.home / "pg" / "vectors.faiss.state.npz").unlink(missing_ok=True)
    else:
        settings = Settings(home=args.home / "sqlite")
    try:
        t = time.perf_counter()
        ids = index_all(settings, files)
        print(f"library: {len(ids)} videos indexed ({time.perf_counter() - t:.0f} s), "
              f"{len(items)} queries ({sum(1 for i in items if i['truth'])} answerable), "
              f"database {settings.db_url.split(':')[0]}")
        print("chapters:")
        bad = check_chapters(settings, ids)
        print(f"chapters tile every video: {'yes' if not bad else 'NO: ' + ', '.join(bad)}")
        header = ["R@1", "R@5", "MRR", "answer not weak", "no-answer weak", "top length s",
                  "p50 ms"]
        print(f"\n{'mode':<8}" + "".join(f"{h:>16}" for h in header))
        if args.per_query:
            print("\nhybrid, per query: rank of the first hit, top score, query, top text")
            evaluate(settings, items, ids, "hybrid", per_query=True)
        for mode in ("hybrid", "vector", "text"):
            res = evaluate(settings, items, ids, mode)
            print(f"{mode:<8}" + "".join(
                f"{res[h]:>16.3f}" if not h.endswith("ms") else f"{res[h]:>16.0f}"
                for h in header))
        if args.calibrate:
            calibrate(settings, items, ids)
        if args.embedders:
            compare_embedders(settings, items, ids, args.embedders, args.calibrate)
    finally:
        if scratch:
            from store import db
            engine = db._engines.pop(settings.db_url, None)
            if engine is not None:
                engine.dispose()
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
