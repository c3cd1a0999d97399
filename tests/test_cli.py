"""The command line as a user runs it: a real process, a real data directory."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from badfiles import bad_inputs, corrupt_middle

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "api.cli"]


def run(home: Path, *args, check=True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")},
           "CHRONOSCOPE_HOME": str(home), "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_bad_files_fail_clearly_and_good_ones_still_index(media, tmp_path):
    bad = bad_inputs(tmp_path)
    good = media / "his_girl_friday_6s.mp4"
    files = [bad["empty"][0], bad["truncated"][0], good, bad["audio_only"][0],
             bad["text"][0], bad["unknown_codec"][0], bad["absurd"][0],
             tmp_path / "missing.mp4"]
    proc = run(tmp_path / "home", "index", *map(str, files), "--json", check=False)
    assert proc.returncode == 1
    results = json.loads(proc.stdout)           # --json prints only JSON
    assert [r["filename"] for r in results] == [f.name for f in files]
    by_name = {r["filename"]: r for r in results}
    assert by_name[good.name]["status"] == "ready" and by_name[good.name]["error"] is None
    assert by_name[good.name]["duration"] == pytest.approx(6.166, abs=0.01)
    for name, (path, words) in bad.items():
        if path in files:
            entry = by_name[path.name]
            assert entry["status"] == "failed" and words in entry["error"], entry
    assert "not found" in by_name["missing.mp4"]["error"]
    # the failed videos are recorded with their reasons
    listed = json.loads(run(tmp_path / "home", "list", "--json").stdout)
    failed = [v for v in listed if v["status"] == "failed"]
    # an empty or missing path is refused before a video exists: nothing to record
    assert len(failed) == 5 and all(v["error"] for v in failed)
    assert "empty.mp4" not in {v["filename"] for v in failed}
    # a human run prints one error line per bad file and no traceback
    # the path as typed, and the reason without the file name again
    human = run(tmp_path / "home2", "index", str(bad["empty"][0]), check=False)
    assert human.returncode == 1
    assert human.stderr.startswith(f"error: {bad['empty'][0]}: the file is empty")


def test_corrupt_middle_still_indexes(media, tmp_path):
    proc = run(tmp_path / "home", "index", str(corrupt_middle(tmp_path)), "--json")
    assert json.loads(proc.stdout)["status"] == "ready"


def test_a_folder_indexes_in_one_command(media, tmp_path):
    """`index DIR`: every video file inside, recursively (not the .vtt or .md beside them),
    a result line per file as it ends, named as typed; again, all already indexed."""
    typed = "../shared/media"                     # relative to the CLI's working directory
    assert (ROOT / typed).resolve() == media.resolve()
    names = sorted(p.name for p in media.iterdir() if p.suffix in (".mp4", ".webm", ".avi"))
    assert len(names) == 6
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")}
    proc = subprocess.Popen([*CLI, "index", typed], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env={**env, "CHRONOSCOPE_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    arrived = [(time.monotonic(), line) for line in proc.stdout if not line.startswith(" ")]
    ended = time.monotonic()
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert [line.split()[-1] for _, line in arrived] == [f"{typed}/{n}" for n in names]
    assert all("  ready  " in line for _, line in arrived)
    assert ended - arrived[0][0] > 5         # the first line came as its file ended
    results = json.loads(run(home, "list", "--json").stdout)
    assert sorted(r["filename"] for r in results) == names
    for r in results:
        assert r["status"] == "ready" and r["duration"] > 5 and r["error"] is None
        # every video has chapters that tile its whole duration: no gap, no overlap
        summary = json.loads(run(home, "summary", r["id"][:6], "--json").stdout)
        chapters = summary["chapters"]
        assert chapters and summary["summary"], summary
        assert chapters[0]["start"] == 0 and chapters[-1]["end"] == r["duration"]
        assert all(a["end"] == b["start"] for a, b in zip(chapters, chapters[1:]))
        assert all(c["start"] < c["end"] and c["title"] for c in chapters)
        # each chapter shows the keyframe it opens on: a thumbnail written at index time
        for c in chapters:
            t_ms = int(c["thumbnail"].removeprefix(f"/v1/videos/{r['id']}/thumbnails/")
                       .removesuffix(".jpg"))
            assert (home / "media" / "thumbs" / r["id"] / f"{t_ms}.jpg").is_file()
    again = run(home, "index", typed, f"{typed}/{names[0][:3]}*").stdout.splitlines()
    assert len(again) == 7 and all("  already indexed  " in line for line in again)


def test_segments_export_search_delete(media, tmp_path):
    home = tmp_path / "home"
    vid = json.loads(run(home, "index", str(media / "his_girl_friday_6s.mp4"),
                         "--json").stdout)["id"]
    status = json.loads(run(home, "status", vid, "--json").stdout)
    assert status["status"] == "ready" and status["progress"] == 100.0
    assert any("visual captions skipped" in n for n in status["notes"])

    segs = json.loads(run(home, "segments", vid, "--json").stdout)
    assert segs and all(s["kind"] == "speech" for s in segs)
    assert all(re.fullmatch(r"\d+(\.\d{1,3})?", str(s["start"])) for s in segs)
    late = json.loads(run(home, "segments", vid, "--start", "3.5", "--end", "10",
                          "--json").stdout)
    assert late and all(s["end"] > 3.5 for s in late) and len(late) < len(segs) + 1
    assert run(home, "segments", vid, "--start", "5", "--end", "2", check=False).returncode == 2
    assert run(home, "segments", vid, "--kind", "smell", check=False).returncode == 2

    vtt = tmp_path / "c.vtt"
    run(home, "export", vid, "--format", "vtt", "-o", str(vtt))
    assert vtt.read_text().startswith("WEBVTT\n") and "-->" in vtt.read_text()
    srt = run(home, "export", vid, "--format", "srt").stdout
    assert re.search(r"^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", srt, re.M)
    data = json.loads(run(home, "export", vid, "--format", "json").stdout)
    assert len(data["segments"]) == len(segs)

    hits = json.loads(run(home, "search", "somebody took the royal jewels", "--json").stdout)
    assert hits and hits[0]["video_id"] == vid and hits[0]["start"] >= 2.5
    assert run(home, "search", "x", "--start", "9", "--end", "1", check=False).returncode == 2
    for absurd in ("nan", "inf", "1e300"):        # floats all, none a time: exit 2, one line
        refused = run(home, "search", "x", "--end", absurd, check=False)
        assert refused.returncode == 2 and refused.stderr.startswith("error: times must be")

    assert "rebuilt the vector index: " in run(home, "reindex-vectors").stdout
    run(home, "delete", vid)
    assert run(home, "status", vid, check=False).returncode == 1
    assert json.loads(run(home, "search", "royal jewels", "--json").stdout) == []
    assert run(home, "delete", vid, check=False).returncode == 1
