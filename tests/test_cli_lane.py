"""The quick search lane (api/cli/lane.py): which command lines it takes and what it sends.
Against a live server it is tested in tests/test_client.py."""

import pytest

from api.cli.lane import quick_search

ENV = {"CHRONOSCOPE_SERVER": "http://127.0.0.1:8000", "CHRONOSCOPE_API_KEY": "cs_key"}


def test_a_plain_search_goes_to_the_server_in_one_page():
    assert quick_search(["search", "red car"], ENV) == (
        "http://127.0.0.1:8000", "cs_key", {"k": 10, "limit": 1000, "q": "red car"}, False)


def test_every_option_it_takes_read_as_click_reads_it():
    args = ["search", "--video", "abcd", "-k5", "budget", "--kind", "speech", "--start=1.5",
            "--video", "ef01", "--end", "90", "--kind", "screen_text", "--json", "-k", "7"]
    server, key, params, as_json = quick_search(args, ENV)
    assert params == {"video": ["abcd", "ef01"], "start": 1.5, "end": 90.0,
                      "kind": ["speech", "screen_text"], "k": 7, "limit": 1000, "q": "budget"}
    assert as_json


def test_server_from_the_option_first_then_the_environment():
    env = {"chronoscope_server": "http://env:1", "chronoscope_api_key": "k"}   # any case
    assert quick_search(["search", "x"], env)[0] == "http://env:1"
    assert quick_search(["--server", "https://cs.example/sub/", "search", "x"], env)[0] \
        == "https://cs.example/sub/"
    assert quick_search(["--server=http://opt:2", "search", "x"], env)[0] == "http://opt:2"
    assert quick_search(["--server", "", "search", "x"], env)[0] == "http://env:1"


@pytest.mark.parametrize("args", [
    ["list"], ["index", "a.mp4"], ["--help"], ["search", "--help"], ["search"],
    ["search", "   "], ["search", "a", "b"], ["search", "x", "--image", "p.png"],
    ["search", "--like", "abcd@3"], ["search", "x", "--ground"], ["search", "x", "--tenant", "t"],
    ["search", "x", "-k", "0"], ["search", "x", "-k", "1001"], ["search", "x", "-k", "many"],
    ["search", "x", "-k=5"], ["search", "x", "--start", "nan"], ["search", "x", "--end", "inf"],
    ["search", "x", "--start", "1e300"], ["search", "x", "--start", "-1"],
    ["search", "x", "--start", "9", "--end", "3"], ["search", "x", "--kind", "smell"],
    ["search", "x", "--video"], ["search", "-x"], ["search", "x", "--", "y"],
    ["-v", "search", "x"], ["search", "x", "--json=1"],
])
def test_everything_else_goes_to_the_whole_command_line(args):
    """Other commands, options the lane does not take and input the command line refuses
    (whose messages it owns)."""
    assert quick_search(args, ENV) is None


@pytest.mark.parametrize("env", [
    {"CHRONOSCOPE_API_KEY": "k"},                                   # no server
    {"CHRONOSCOPE_SERVER": "http://h:1"},                           # no key: its message
    {**ENV, "CHRONOSCOPE_SERVER": "ftp://h"}, {**ENV, "CHRONOSCOPE_SERVER": "h:8000"},
    {**ENV, "CHRONOSCOPE_SERVER": "http://h/?x=1"},
    {**ENV, "CHRONOSCOPE_SERVER": "http://h:port"}, {**ENV, "CHRONOSCOPE_SERVER": "http://[::1"},
    {**ENV, "HTTPS_PROXY": "http://proxy:3128"}, {**ENV, "all_proxy": "socks5://p"},
])
def test_no_server_no_key_or_a_proxy_goes_to_the_whole_command_line(env):
    assert quick_search(["search", "x"], env) is None


def test_a_server_url_that_is_not_one_is_a_clear_error(tmp_path):
    """Left to the whole command line by the lane: one line and exit 2, not a traceback."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "CHRONOSCOPE_HOME": str(tmp_path), "CHRONOSCOPE_API_KEY": "k"}
    for url in ("http://h:port", "http://[::1"):
        done = subprocess.run([sys.executable, "-m", "api.cli", "--server", url, "search", "x"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2 and done.stderr.startswith("error: --server"), done.stderr
