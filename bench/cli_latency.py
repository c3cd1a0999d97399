"""`chronoscope search` wall time from a fresh process, cold and warm, against the code path
of an older commit measured in the same run: by default f40e058, the path before the start-up
work (huggingface_hub's API, alembic and psycopg imported by every search); a412460 is the
sentence-transformers/torch query embedding before that.

    .venv/bin/python bench/cli_latency.py                 # 10 runs of each, old rev f40e058
    .venv/bin/python bench/cli_latency.py --runs 5 --old-rev a412460
    .venv/bin/python bench/cli_latency.py --runs 5 --visual   # a library with keyframe vectors
    .venv/bin/python bench/cli_latency.py --server --old-rev bc0d884   # through a server too

The library: two sample videos of ../shared/media (speech and a screen clock) indexed once by
this tree's `chronoscope index` into bench/.cache/cli_latency/. The old code is the old
commit's files (`git archive`, into bench/.cache/cli_latency/old-<rev>), run by this venv's
Python from that directory, so its modules shadow the editable install; the dependencies
are the same; the old code runs on this tree's library, with this tree's migrations (so it
reads a schema migrated past its own; f40e058 predates the columns of migration 0007 that
its queries need: on a library indexed since, pass `--old-rev` of a later commit).
Both trees are byte-compiled first, as `pip install` leaves an installed
package (this environment sets PYTHONDONTWRITEBYTECODE, so nothing would be cached).

Cold: before each run the OS page cache is dropped (`echo 3 > /proc/sys/vm/drop_caches`,
when permitted: root outside a container; else said so, and "cold" is only the first run
after the other path ran). Warm: the same command once more, then timed. Also timed: the
floor of a fresh process (`python -c pass`) and of the imports every search needs
(typer, settings, SQLAlchemy and the store, FAISS, numpy). The outputs of both paths are
compared: same moments, order and scores (3 decimals). With --server, two more paths: the
same command sent to a `chronoscope serve` of that library (started here, on a free port), as
a user with a server running would, by this tree (the quick lane of api/cli/lane.py) and by
the old commit (its --server path: the SDK, when it has one)."""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache" / "cli_latency"
MEDIA = ROOT.parent / "shared" / "media"
VIDEOS = ("his_girl_friday_6s.mp4", "timer_text_61s.mp4")
QUERIES = ("somebody took the royal jewels", "what time does the clock show at thirty seconds",
           "a man and a woman talking")
FLOOR = "import api.cli.commands, search.query, store.db, search.index.reader"
DROP = Path("/proc/sys/vm/drop_caches")


def env_for(home: Path, visual: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")}
    env.update(CHRONOSCOPE_HOME=str(home), HF_HUB_OFFLINE="1")
    if visual:
        env["CHRONOSCOPE_VISUAL__MODEL"] = str(visual)
    return env


def siglip() -> Path:
    """SigLIP 2 base of the published size with random weights (no hub here): the real cost
    of its text tower, not its accuracy."""
    path = CACHE / "siglip2-base-random"
    if not (path / "model.safetensors").exists():
        sys.path.insert(0, str(ROOT))
        from fixtures.visual_tiny import build
        build(path, tiny=False)
    return path


def library(visual: Path | None) -> dict:
    """The environment of a search in the indexed library (with keyframe vectors too)."""
    home = CACHE / ("home-visual" if visual else "home")
    env = env_for(home, visual)
    if not (home / "vectors.faiss.state.npz").exists():
        files = [str(MEDIA / v) for v in VIDEOS]
        subprocess.run([sys.executable, "-m", "api.cli", "index", *files], cwd=ROOT,
                       env=env, check=True, stdout=sys.stderr)
    return env


def server(env: dict) -> tuple[subprocess.Popen, str]:
    """`chronoscope serve` of the library on a free port, and its URL; the key of its
    default tenant goes into env (CHRONOSCOPE_API_KEY) for the --server path."""
    cli = [sys.executable, "-m", "api.cli"]
    made = subprocess.run([*cli, "keys", "create", "default", "--json"], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True)
    env["CHRONOSCOPE_API_KEY"] = json.loads(made.stdout)["key"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("chronoscope serve did not start")


def old_tree(rev: str) -> Path:
    """The old commit's files, with this tree's migrations: a library that this tree has
    migrated further must not look unknown to the old code (which ignores the new columns)."""
    path = CACHE / f"old-{rev}"
    if not (path / "api").is_dir():
        path.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    shutil.copytree(ROOT / "migrations", path / "migrations", dirs_exist_ok=True)
    return path


def compile_tree(tree: Path) -> None:
    dirs = [str(tree / d) for d in ("core", "store", "model", "search", "indexer", "workers",
                                    "api") if (tree / d).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], check=True,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})


def drop_caches() -> bool:
    try:
        os.sync()
        DROP.write_text("3\n")
        return True
    except OSError:
        return False


def _cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str, float]:
    """(wall seconds, stdout, CPU seconds of the process): on a loaded machine the CPU
    time is the steadier figure."""
    cpu, start = _cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return wall, proc.stdout, _cpu() - cpu


def measure(paths: dict, env: dict, runs: int) -> dict:
    """Median cold and warm wall seconds of each path, runs interleaved (the machine's load
    drifts; interleaving gives both paths the same share of it)."""
    times = {name: {"cold": [], "warm": [], "cpu": []} for name in paths}
    dropped = True
    for i in range(runs):
        q = QUERIES[i % len(QUERIES)]
        for name, (cmd, cwd) in paths.items():
            dropped = drop_caches() and dropped
            times[name]["cold"].append(timed([*cmd, "search", q, "--json"], cwd, env)[0])
            wall, _, cpu = timed([*cmd, "search", q, "--json"], cwd, env)
            times[name]["warm"].append(wall)
            times[name]["cpu"].append(cpu)
            print(f"run {i + 1}/{runs} {name}: cold {times[name]['cold'][-1]:.2f} s, "
                  f"warm {times[name]['warm'][-1]:.2f} s", file=sys.stderr)
    out = {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}
    out["dropped_caches"] = dropped
    return out


def same_results(paths: dict, env: dict) -> dict[str, list[str]]:
    """For each path after the first: the queries whose moments (video, start, end, text,
    in order) differ from the first path's, and those whose scores (3 decimals) differ. The
    score map is refitted now and then (search.query's A, B): an old commit's scores can
    differ while its moments do not."""
    outs: dict[str, list] = {name: [] for name in paths}
    for q in QUERIES:
        for name, (cmd, cwd) in paths.items():
            rows = json.loads(timed([*cmd, "search", q, "--json"], cwd, env)[1])
            outs[name].append([(r["video_id"], r["start"], r["end"], r["text"], r["score"])
                               for r in rows])
    first, *rest = outs.values()
    return {name: ([q for q, a, b in zip(QUERIES, first, outs[name])
                    if [r[:4] for r in a] != [r[:4] for r in b]],
                   [q for q, a, b in zip(QUERIES, first, outs[name]) if a != b])
            for name in list(paths)[1:]}


def floor(env: dict, runs: int) -> dict:
    py = [sys.executable, "-c"]
    return {"python -c pass": statistics.median(
                timed([*py, "pass"], ROOT, env)[0] for _ in range(runs)),
            "imports of a search": statistics.median(
                timed([*py, FLOOR], ROOT, env)[0] for _ in range(runs))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--old-rev", default="f40e058", help="commit with the old query path")
    ap.add_argument("--visual", action="store_true",
                    help="the library has keyframe vectors (SigLIP 2 base, random weights): "
                         "a text query is searched there too")
    ap.add_argument("--server", action="store_true",
                    help="also time the same search sent to a running `chronoscope serve`")
    args = ap.parse_args()
    env = library(siglip() if args.visual else None)
    old = old_tree(args.old_rev)
    for tree in (ROOT, old):
        compile_tree(tree)
    cli = [sys.executable, "-m", "api.cli"]
    paths = {"new": (cli, ROOT), f"old {args.old_rev}": (cli, old)}
    served = server(env) if args.server else None
    if served:
        paths["new --server"] = ([*cli, "--server", served[1]], ROOT)
        paths["old --server"] = ([*cli, "--server", served[1]], old)
    try:
        differ = same_results(paths, env)
        result = measure(paths, env, args.runs)
    finally:
        if served:
            served[0].terminate()
            served[0].wait()
    base = floor(env, args.runs)
    new, old_t = result["new"], result[f"old {args.old_rev}"]
    print(f"{platform.node()}  {os.cpu_count()} CPUs  load {os.getloadavg()[0]:.1f}  "
          f"{datetime.datetime.now():%Y-%m-%d %H:%M}  runs {args.runs}  "
          f"{'with' if args.visual else 'no'} keyframe vectors  "
          f"page cache dropped: {'yes' if result['dropped_caches'] else 'no (not permitted)'}")
    print(f"{'path':<16} {'cold s':>8} {'warm s':>8} {'warm CPU s':>11}")
    for name in paths:
        r = result[name]
        print(f"{name:<16} {r['cold']:>8.2f} {r['warm']:>8.2f} {r['cpu']:>11.2f}")
    if served:
        lane, sdk = result["new --server"], result["old --server"]
        print(f"speed-up through the server (old/new): cold {sdk['cold'] / lane['cold']:.1f}x, "
              f"warm {sdk['warm'] / lane['warm']:.1f}x")
    print(f"speed-up (old/new): cold {old_t['cold'] / new['cold']:.1f}x, "
          f"warm {old_t['warm'] / new['warm']:.1f}x, warm CPU {old_t['cpu'] / new['cpu']:.1f}x")
    for name, value in base.items():
        print(f"floor: {name:<22} {value:.2f} s")
    for name, (moments, scored) in differ.items():
        print(f"results of {name!r} against {next(iter(paths))!r}: moments "
              f"{'identical' if not moments else f'DIFFER for {moments}'}; scores "
              f"{'identical' if not scored else f'differ for {len(scored)} of {len(QUERIES)}'}")


if __name__ == "__main__":
    main()
