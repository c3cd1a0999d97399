"""Fuzz the media entry points: real samples (../shared/media) mutated by byte flips, cuts and
splices, each run through probe and a bounded decode (tests/badfiles.check_media).

    .venv/bin/python bench/fuzz_media.py [--count 1000] [--seconds 300] [--seed 0]

Printed: inputs tried, how many were refused (BadVideo) or indexed ("ok"), and every crash
(any other exception, a time outside the span, or a hang over --hang-s) with the recipe to
rebuild it. Exit status 1 when something crashed.
"""

import argparse
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import badfiles  # noqa: E402

SEEDS = ["his_girl_friday_6s.mp4", "timer_text_61s.mp4", "big_buck_bunny_30s.webm",
         "car_detection_30s.mp4", "people_walking_139s.mp4"]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def recipe(rng: random.Random) -> list[tuple]:
    ops = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(["flip", "flip", "cut", "splice"])
        if kind == "flip":
            ops.append(("flip", rng.random(), rng.randrange(256)))
        elif kind == "cut":
            ops.append(("cut", rng.uniform(0.01, 1)))
        else:
            ops.append(("splice", rng.random(), rng.random(), rng.randint(1, 4096)))
    return ops


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000, help="most inputs to try")
    ap.add_argument("--seconds", type=float, default=300, help="stop after this long")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-s", type=int, default=30, help="one input's time limit")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seeds = {n: (badfiles.MEDIA / n).read_bytes() for n in SEEDS}
    outcomes = {"ok": 0, "refused": 0}
    crashes = []
    signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    tried = 0
    with tempfile.TemporaryDirectory() as tmp:
        while tried < args.count and time.monotonic() - start < args.seconds:
            name, ops = rng.choice(SEEDS), recipe(rng)
            path = Path(tmp) / f"fuzz{Path(name).suffix}"
            path.write_bytes(badfiles.mutate(seeds[name], ops))
            tried += 1
            signal.alarm(args.hang_s)
            try:
                outcomes[badfiles.check_media(path, max_ms=4000)] += 1
            except Exception as e:  # noqa: BLE001 - every other outcome is a finding
                crashes.append((name, ops, type(e).__name__, str(e)[:200]))
                traceback.print_exc()
            finally:
                signal.alarm(0)
    took = time.monotonic() - start
    print(f"inputs tried: {tried} in {took:.0f} s ({tried / took:.2f}/s); "
          f"ok {outcomes['ok']}, refused {outcomes['refused']}, crashes {len(crashes)}")
    for name, ops, kind, msg in crashes:
        print(f"CRASH {kind}: {msg}\n  seed {name}, ops {ops}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
