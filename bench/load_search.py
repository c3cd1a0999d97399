"""Search under load: does a storm of searches from one tenant hurt anyone else?

    .venv/bin/python bench/load_search.py                 # 200 searches, healthz every 50 ms
    .venv/bin/python bench/load_search.py --requests 100 --seconds 30

Loopback only, bounded: it creates a fresh Postgres database on the local server
(CHRONOSCOPE_TEST_PG, default postgres@127.0.0.1:5432), indexes one short sample video with
`chronoscope index`, makes a key with `chronoscope keys create`, starts `chronoscope serve` on a free
127.0.0.1 port, warms the search path with one query, then fires the fixed number of
searches at once while probing /healthz every 50 ms, for at most --seconds. Everything it
made (server, database, data directory) is removed afterwards.

It prints the count by status code, 5xx other than 503, 503s lacking Retry-After, search
p50/p99 and /healthz p50/p99/max. A request still unanswered at the deadline counts as
"timeout".
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
PG_ADMIN = os.environ.get("CHRONOSCOPE_TEST_PG",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
QUERIES = ["the newspaper story", "who is on the phone", "a man talks to a woman",
           "divorce", "the editor in his office", "when does he mention the paper"]


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("chronoscope")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "api.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def storm(base: str, key: str, n: int, seconds: float, interval: float) -> dict:
    """n searches at once, /healthz every `interval` s until they are all answered."""
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    headers = {"Authorization": f"Bearer {key}"}
    results: list[tuple[str, float, bool]] = []     # (status, seconds, has Retry-After)
    health: list[float] = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=seconds) as client:
        async def one(i: int) -> None:
            started = time.perf_counter()
            try:
                r = await client.get("/v1/search", headers=headers,
                                     params={"q": QUERIES[i % len(QUERIES)], "k": 10})
                results.append((str(r.status_code), time.perf_counter() - started,
                                "retry-after" in r.headers))
            except httpx.HTTPError as e:
                results.append((type(e).__name__, time.perf_counter() - started, False))

        def probe(done: threading.Event) -> None:
            # Its own thread and connection: what is measured is the server's answer, not
            # this process's event loop, busy with the storm's 200 clients.
            with httpx.Client(base_url=base, timeout=seconds) as own:
                while not done.is_set():
                    started = time.perf_counter()
                    try:
                        own.get("/healthz")
                    except httpx.HTTPError:
                        pass                    # counted by its time, which hit the limit
                    health.append(time.perf_counter() - started)
                    done.wait(interval)

        done = threading.Event()
        prober = threading.Thread(target=probe, args=(done,), daemon=True)
        prober.start()
        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for t in pending:
            t.cancel()
        results += [("timeout", seconds, False)] * len(pending)
        done.set()
        prober.join(timeout=10)
    return {"results": results, "health": health}


def report(out: dict, n: int) -> str:
    results, health = out["results"], out["health"]
    codes = Counter(status for status, _, _ in results)
    ok_times = [t for status, t, _ in results if status == "200"]
    bad_5xx = sum(c for s, c in codes.items() if s.isdigit() and int(s) >= 500 and s != "503")
    no_retry = sum(1 for s, _, has in results if s == "503" and not has)
    lines = [
        f"searches: {n} at once; status: "
        + ", ".join(f"{s}: {c}" for s, c in sorted(codes.items())),
        f"5xx other than 503: {bad_5xx}; 503 without Retry-After: {no_retry}",
        f"search (200s) p50 {percentile(ok_times, .5):.2f} s, p99 "
        f"{percentile(ok_times, .99):.2f} s; all answers p99 "
        f"{percentile([t for _, t, _ in results], .99):.2f} s",
        f"/healthz: {len(health)} probes, p50 {percentile(health, .5) * 1000:.0f} ms, "
        f"p99 {percentile(health, .99) * 1000:.0f} ms, max {max(health, default=0):.2f} s",
    ]
    return "\n".join(lines)


def run(env: dict, home: Path, args) -> dict:
    def chronoscope(*argv: str, **kw):
        return subprocess.run(cli() + list(argv), env=env, cwd=ROOT, check=True,
                              capture_output=True, text=True, **kw)

    print("indexing", args.video.name, "...", flush=True)
    chronoscope("index", str(args.video), "--json", timeout=600)
    key = json.loads(chronoscope("keys", "create", "default", "--json").stdout)["key"]
    port = free_port()
    log = open(home / "serve.log", "w")
    server = subprocess.Popen(cli() + ["serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start; see {home / 'serve.log'}")
            time.sleep(0.2)
        warm = httpx.get(base + "/v1/search", params={"q": QUERIES[0]}, timeout=120,
                         headers={"Authorization": f"Bearer {key}"})
        assert warm.status_code == 200, warm.text
        print(f"warm search: {len(warm.json()['moments'])} moments; storm ...", flush=True)
        return asyncio.run(storm(base, key, args.requests, args.seconds, args.interval))
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        if args.keep_log:
            shutil.copy(home / "serve.log", args.keep_log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0, help="storm time limit")
    parser.add_argument("--interval", type=float, default=0.05, help="healthz period, s")
    parser.add_argument("--video", type=Path, default=MEDIA / "his_girl_friday_6s.mp4")
    parser.add_argument("--keep-log", type=Path, help="copy the server log here")
    args = parser.parse_args()
    name = f"chronoscope_load_{uuid.uuid4().hex[:8]}"
    server_url = PG_ADMIN.rsplit("/", 1)[0]
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    home = Path(tempfile.mkdtemp(prefix="chronoscope_load_"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")}
    env.update(CHRONOSCOPE_HOME=str(home / "home"), HF_HUB_OFFLINE="1",
               CHRONOSCOPE_DATABASE_URL=f"{server_url}/{name}",
               CHRONOSCOPE_CHUNK__LENGTH_S="6", CHRONOSCOPE_CHUNK__OVERLAP_S="1")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        out = run(env, home, args)
        print(report(out, args.requests))
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
