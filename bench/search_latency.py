"""Vector search at library scale: build time, memory per segment, p50/p99 latency for k=10
with and without a time-range filter, and recall@10 against exact search, in one run.

    .venv/bin/python bench/search_latency.py            # quick: 1M segments
    .venv/bin/python bench/search_latency.py --full     # 10M segments
    .venv/bin/python bench/search_latency.py --n 200000 --queries 100

The index is built by the production code (`search.index.faiss_ops.plan`, `new_index`,
`train`) and searched through `search.index.faiss_ops.search_index` (with the per-vector
attributes and the filter `Match` of `search.index.filters` that
`search.index.reader.search` uses) and `exact_search`; only the database is
left out (the segments do not exist as rows at this size).

Vectors that resemble real embeddings: all-MiniLM-L6-v2 embeddings of ~12k real English
sentences (docstrings of the Python standard library, embedded once and cached in
bench/.cache/), and each synthetic segment is a Dirichlet-weighted mix of three of them
plus Gaussian noise of norm 0.2-0.5, renormalised. Their pairwise cosines (mean ~0.14,
sd ~0.09) match real MiniLM pairs (~0.10, sd ~0.11); they are neither uniform noise nor
tight clusters. Queries: 50% fresh mixes, 50% held-out real sentences never mixed in.

Segments are laid out as videos of 1200 segments 3 s apart (one hour each). Filters, each
evaluated inside the search on the index's attributes as in production: time ranges of
every video keeping 50%, 8.3% (the headline: [600 s, 900 s)), 1% and 0.17% of the
library, and a tenant owning every tenth video (10%). The narrow filter (one video, 600-900
s: 100 candidates) is scored exactly over the candidates' vectors, as `search.query` does
with the vectors it reads from the database (that read is not timed here). Ground truth:
exact float32 inner products over every vector (and over each filtered subset), computed
in a streaming pass.

Latency is one query at a time on one thread (a server answers concurrent requests on
its other cores). The machine is shared: percentiles include other people's load.
"""

import argparse
import ast
import os
import platform
import re
import resource
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import faiss  # noqa: E402

from core.config import Settings  # noqa: E402
from search.index import faiss_ops  # noqa: E402
from search.index.filters import Attrs, Match  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
SEG_PER_VIDEO, SEG_S = 1200, 3
RANGE = (600, 900)                  # seconds, of every video: the headline filter
FILTERS = {                         # name: (start s, end s, every n-th video)
    "time range 50%": (0, 1800, 1),
    "time range 8.3%": (600, 900, 1),
    "time range 1%": (600, 636, 1),
    "time range 0.17%": (600, 606, 1),
    "tenant 10% of videos": (None, None, 10),
}
BATCH = 100_000
K = 10


def sentences(limit: int = 12_000) -> list[str]:
    """Real English sentences: docstrings of the standard library, deterministic order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = set()
    for f in sorted(root.rglob("*.py")):
        if "test" in f.parts or "site-packages" in f.parts or "idlelib" in f.parts:
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", doc or "")):
                    words = s.split()
                    if 6 <= len(words) <= 40 and \
                            sum(c.isalpha() or c == " " for c in s) > 0.85 * len(s):
                        out.add(s)
    out = sorted(out)
    np.random.default_rng(0).shuffle(out)
    return out[:limit]


def base_vectors() -> np.ndarray:
    path = CACHE / "search_latency_bases.npy"
    if path.exists():
        return np.load(path)
    from model import embed
    texts = sentences()
    print(f"embedding {len(texts)} sentences once (cached in {path}) ...", flush=True)
    vecs = embed.embed(texts, kind="document", settings=Settings(home=CACHE / "home"))
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


def mix(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet([1.0, 1.0, 1.0], n).astype(np.float32)
    x = np.zeros((n, base.shape[1]), np.float32)
    for j in range(3):
        x += w[:, j:j + 1] * base[rng.integers(0, len(base), n)]
    noise = rng.standard_normal((n, base.shape[1]), dtype=np.float32)
    x += rng.uniform(0.2, 0.5, (n, 1)).astype(np.float32) * noise / np.sqrt(base.shape[1])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def batches(base: np.ndarray, n: int, clock: list):
    for start in range(0, n, BATCH):
        t = time.perf_counter()
        x = mix(base, min(BATCH, n - start), seed=1000 + start // BATCH)
        clock[0] += time.perf_counter() - t
        yield start, x


def attrs_of(ids: np.ndarray) -> Attrs:
    start = ((ids % SEG_PER_VIDEO) * SEG_S * 1000).astype(np.int32)
    return Attrs(start, start + SEG_S * 1000, np.zeros(len(ids), np.uint8),
                         (ids // SEG_PER_VIDEO).astype(np.int32))


def matches(n: int) -> dict[str, Match]:
    out = {}
    for name, (a, b, every) in FILTERS.items():
        video_ok = None
        if every > 1:
            video_ok = np.arange(n // SEG_PER_VIDEO + 1) % every == 0
        out[name] = Match(a * 1000 if a is not None else None,
                                  b * 1000 if b is not None else None, video_ok=video_ok)
    return out


def topk_merge(best_s, best_i, scores, ids):
    s = np.concatenate([best_s, scores], axis=1)
    i = np.concatenate([best_i, np.broadcast_to(ids, scores.shape)], axis=1)
    part = np.argpartition(-s, K - 1, axis=1)[:, :K]
    return np.take_along_axis(s, part, 1), np.take_along_axis(i, part, 1)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K
                          for f, t in zip(found, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--full", action="store_true", help="10M segments")
    ap.add_argument("--queries", type=int, default=400)
    args = ap.parse_args()
    n = 10_000_000 if args.full else args.n
    settings = Settings(home=CACHE / "home")
    faiss.omp_set_num_threads(os.cpu_count() or 1)

    base = base_vectors()
    held_out = base[-args.queries // 2:]                 # never used as a mix component
    base = base[:-args.queries // 2]
    rng = np.random.default_rng(7)
    queries = np.vstack([mix(base, args.queries - len(held_out), seed=99), held_out])
    queries = queries[rng.permutation(len(queries))].astype(np.float32)

    spec = faiss_ops.plan(n, settings)
    print(f"{n:,} segments, index {spec}", flush=True)
    rss0 = rss_mb()
    t_train = t_add = 0.0
    gen = [0.0]
    index = faiss_ops.new_index(base.shape[1], spec)
    if spec["kind"] == "ivf":
        t = time.perf_counter()
        sample = mix(base, faiss_ops.train_size(spec), seed=5)
        gen[0] += time.perf_counter() - t
        t = time.perf_counter()
        faiss_ops.train(index, sample)
        t_train = time.perf_counter() - t
        del sample
    nq = len(queries)
    flts = matches(n)
    gt_s, gt_i = np.full((nq, K), -np.inf, np.float32), np.zeros((nq, K), np.int64)
    gf = {name: (gt_s.copy(), gt_i.copy()) for name in flts}
    narrow_video = (n // SEG_PER_VIDEO) // 2
    narrow_ids = np.arange(narrow_video * SEG_PER_VIDEO, (narrow_video + 1) * SEG_PER_VIDEO)
    narrow_ids = narrow_ids[flts["time range 8.3%"](attrs_of(narrow_ids))]
    narrow_vecs = None
    for start, x in batches(base, n, gen):
        ids = np.arange(start, start + len(x), dtype=np.int64)
        t = time.perf_counter()
        index.add_with_ids(x, ids)
        t_add += time.perf_counter() - t
        scores = queries @ x.T                           # exact float32 truth, streamed
        gt_s, gt_i = topk_merge(gt_s, gt_i, scores, ids)
        attrs = attrs_of(ids)
        for name, match in flts.items():
            mask = match(attrs)
            gf[name] = topk_merge(*gf[name], scores[:, mask], ids[mask])
        hit = (narrow_ids >= start) & (narrow_ids < start + len(x))
        if hit.any():
            narrow_vecs = x[narrow_ids[hit] - start].copy()
        print(f"  {start + len(x):>11,} added  ({t_add:.0f} s adding)", flush=True)
    rss1 = rss_mb()
    gt_i = np.take_along_axis(gt_i, np.argsort(-gt_s, axis=1), 1)
    path = CACHE / "search_latency.faiss"
    faiss.write_index(index, str(path))
    file_bytes = path.stat().st_size
    path.unlink()
    # What a reader keeps beside the index (search.index.reader.load): ids in storage order,
    # list offsets and the per-vector attributes filters test.
    lay = faiss_ops.layout(index, attrs_of(faiss_ops.storage(index)))
    beside = lay.ids.nbytes + lay.offsets.nbytes + sum(
        a.nbytes for a in lay.attrs.arrays().values())

    faiss.omp_set_num_threads(1)
    results, truth = {}, {}

    def run(name, fn, want, few=None):
        lat, found = [], []
        for q in queries[:20]:                           # warm caches
            fn(q)
        for q in queries[:few]:
            t = time.perf_counter()
            found.append(fn(q))
            lat.append(time.perf_counter() - t)
        results[name], truth[name] = (lat, found), want[:few]

    def filtered(match, min_pass=None):
        return lambda q: faiss_ops.search_index(index, q, K, match=match, lay=lay,
                                              min_pass=min_pass)[1]

    run("no filter", lambda q: faiss_ops.search_index(index, q, K)[1], gt_i)
    for name, match in flts.items():
        gs, gi = gf[name]
        run(name, filtered(match), np.take_along_axis(gi, np.argsort(-gs, axis=1), 1))
    narrow_truth = np.stack([narrow_ids[np.argsort(-(narrow_vecs @ q))[:K]] for q in queries])
    run("one video + range, exact", lambda q: np.array(
        [i for i, _ in faiss_ops.exact_search(q, narrow_ids, narrow_vecs, K)]), narrow_truth)

    build = t_train + t_add
    lines = [
        f"segments: {n:,}  dim: {base.shape[1]}  index: {spec}  nprobe: {faiss_ops.NPROBE}  "
        f"filters scan >= {faiss_ops.FILTER_MIN_PASS} passing vectors",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end (shared machine)",
        f"build: {build:.1f} s (train {t_train:.1f} s + add {t_add:.1f} s; "
        f"{n / max(build, 1e-9):,.0f} segments/s; generating the vectors "
        f"{gen[0]:.1f} s not counted)",
        f"memory: {file_bytes / n:.0f} B/segment serialized ({file_bytes / 2**30:.2f} GiB) "
        f"+ {beside / n:.0f} B/segment beside it for filters; RSS +"
        f"{(rss1 - rss0) * 2**20 / n:.0f} B/segment while building "
        f"(peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB)",
        f"narrow filter: one video, {RANGE[0]}-{RANGE[1]} s, {len(narrow_ids)} candidates",
        f"{'k=10, ' + str(nq) + ' queries':<34} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10}",
    ]
    for name, (lat, found) in results.items():
        lines.append(f"{name:<34} {pct(lat, 50):>8.2f} {pct(lat, 99):>8.2f} "
                     f"{recall(found, truth[name]):>10.3f}")
    print("\n".join(lines), flush=True)
    if spec["kind"] == "ivf":
        sweep(index, queries, gt_i, spec["nlist"], run, results, truth, filtered, flts)


def sweep(index, queries, gt_i, nlist, run, results, truth, filtered, flts) -> None:
    """How recall and latency move with nprobe and with the passing vectors a filtered
    search looks at (FILTER_MIN_PASS), for the record. Baseline: nprobe = nlist, the exhaustive scan of the same index, measured first
    in the same run; each row gives its p50 speed-up over it."""
    few = min(len(queries), 100)
    run("exhaustive", lambda q: faiss_ops.search_index(index, q, K, nprobe=nlist)[1], gt_i, few)
    base = pct(results["exhaustive"][0], 50)

    def row(name):
        lat, found = results[name]
        return (f"p50 {pct(lat, 50):6.2f} ms ({base / pct(lat, 50):5.1f}x) "
                f"p99 {pct(lat, 99):6.2f} ms recall {recall(found, truth[name]):.3f}")
    print(f"exhaustive scan (nprobe {nlist}): p50 {base:.2f} ms, recall "
          f"{recall(results['exhaustive'][1], truth['exhaustive']):.3f}")
    print("no filter, by nprobe:")
    for nprobe in (8, 16, 32, 64):
        run(f"nprobe {nprobe}", lambda q: faiss_ops.search_index(index, q, K, nprobe=nprobe)[1],
            gt_i)
        print(f"  nprobe {nprobe:>3}: {row(f'nprobe {nprobe}')}", flush=True)
    print("filters, by passing vectors looked at (lists probed: at least nprobe):")
    for name, match in flts.items():
        for m in (2048, 4096, 8192, 16384):
            key = f"{name} min_pass {m}"
            run(key, filtered(match, m), truth[name])
            print(f"  {name:<22} {m:>6}: {row(key)}", flush=True)


if __name__ == "__main__":
    main()
