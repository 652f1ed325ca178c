"""rtune annotate's server over real HTTP: the session token off loopback, refusals, and a SIGKILL mid-study."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from rtune.annotate.export import ExportSettings, export_annotations
from rtune.annotate.pairs import BlindPair, dir_pairs, write_pairs
from rtune.annotate.server import BackgroundServer, ServerSettings, is_loopback, page_url
from rtune.annotate.store import Store


def _pairs(n: int) -> list[BlindPair]:
    return [
        BlindPair(
            id=f"p{i}",
            instruction=f"Instruction {i}",
            output_1=f"reference {i}",
            generator_1="tulu-it-7b",
            output_2=f"model {i}",
            generator_2="tulu-rt-7b",
            shown_first=1 + i % 2,
        )
        for i in range(n)
    ]


def _request(
    url: str,
    *,
    method: str = "GET",
    body: dict | None = None,
    headers: dict | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def test_loopback_hosts_need_no_token_and_others_get_one():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org"))
    assert ServerSettings(directory=".", annotator="a").token is None
    remote = ServerSettings(directory=".", annotator="a", host="0.0.0.0")
    other = ServerSettings(directory=".", annotator="a", host="0.0.0.0")
    assert remote.token and len(remote.token) >= 24 and remote.token != other.token
    assert page_url(remote, 8123).endswith(f":8123/?token={remote.token}")
    assert page_url(ServerSettings(directory=".", annotator="a"), 8123) == "http://127.0.0.1:8123/"
    with pytest.raises(ValueError):
        ServerSettings(directory=".", annotator="   ")


def test_a_non_loopback_server_checks_the_token_on_every_request(tmp_path):
    settings = ServerSettings(directory=tmp_path, annotator="alice", host="0.0.0.0")
    with BackgroundServer(settings, _pairs(3)) as server:
        base = f"http://127.0.0.1:{server.port}"
        good = {"X-Rtune-Token": settings.token}
        assert _request(f"{base}/")[0] == 403
        assert _request(f"{base}/?token=wrong")[0] == 403
        status, page = _request(f"{base}/?token={settings.token}")
        assert status == 200 and "Which response is better?" in page
        assert _request(f"{base}/api/state")[0] == 403
        assert _request(f"{base}/api/state", headers={"X-Rtune-Token": "wrong"})[0] == 403
        assert _request(f"{base}/api/state?token={settings.token}")[0] == 403  # the API reads the header only
        judgment = {"pair_id": "p0", "choice": "left"}
        assert _request(f"{base}/api/judgments", method="POST", body=judgment)[0] == 403
        assert _request(f"{base}/api/judgments", method="POST", body=judgment, headers={"X-Rtune-Token": "x"})[0] == 403
        assert Store.in_dir(tmp_path).judgments() == []  # nothing refused was stored
        status, state = _request(f"{base}/api/judgments", method="POST", body=judgment, headers=good)
        assert status == 200 and state["done"] == 1 and state["item"]["number"] == 2
        assert _request(f"{base}/api/undo", method="POST", body={})[0] == 403
        assert len(Store.in_dir(tmp_path).judgments()) == 1
        status, state = _request(f"{base}/api/undo", method="POST", body={}, headers=good)
        assert status == 200 and state["done"] == 0 and state["undone"] == "p0"


def test_a_loopback_server_refuses_foreign_hosts_non_json_and_bad_judgments(tmp_path):
    with BackgroundServer(ServerSettings(directory=tmp_path, annotator="alice"), _pairs(2)) as server:
        api = f"{server.url}api"
        status, state = _request(f"{api}/state")
        assert status == 200 and state == {**state, "total": 2, "done": 0, "can_undo": False}
        assert not any(name in json.dumps(state) for name in ("generator", "tulu-it-7b", "tulu-rt-7b"))  # blind
        assert (state["item"]["left"], state["item"]["right"]) == ("<p>reference 0</p>\n", "<p>model 0</p>\n")
        assert _request(f"{api}/state", headers={"Host": f"attacker.example:{server.port}"})[0] == 403  # DNS rebinding
        assert (
            _request(
                f"{api}/judgments", method="POST", body={"pair_id": "p0", "choice": "left"}, content_type="text/plain"
            )[0]
            == 415
        )  # what a foreign page could send without a preflight
        assert _request(f"{api}/judgments", method="POST", body={"pair_id": "p9", "choice": "left"})[0] == 404
        assert _request(f"{api}/judgments", method="POST", body={"pair_id": "p0", "choice": "both"})[0] == 422
        assert Store.in_dir(tmp_path).judgments() == []
        assert _request(f"{api}/judgments", method="POST", body={"pair_id": "p0", "choice": "right"})[0] == 200
        status, reply = _request(f"{api}/judgments", method="POST", body={"pair_id": "p0", "choice": "left"})
        assert status == 409 and "already judged" in reply["error"] and reply["state"]["item"]["pair_id"] == "p1"
        status, page = _request(server.url)
        assert status == 200
        headers = urllib.request.urlopen(server.url, timeout=30).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["Referrer-Policy"] == "no-referrer"
    assert [(j.pair_id, j.choice) for j in Store.in_dir(tmp_path).judgments()] == [("p0", "right")]


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    """`python -m rtune annotate ARGS` and the URL it prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rtune", "annotate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            process.kill()
            pytest.fail(f"the server printed no URL within 60 s: {seen}")
        seen.append(line)
        if line.startswith("open http://"):
            return process, line.split()[1]


def test_sigkill_after_three_judgments_loses_nothing_and_the_page_resumes_at_item_4(tmp_path):
    pairs = _pairs(6)
    write_pairs(tmp_path / "blind-pairs.json", pairs)
    folder = tmp_path / "study"
    args = ["--pairs", str(tmp_path / "blind-pairs.json"), "--out", str(folder), "--annotator", "carol"]
    process, url = _start(args)
    try:
        for choice in ("left", "tie", "right"):
            status, state = _request(f"{url}api/state")
            assert status == 200
            judgment = {"pair_id": state["item"]["pair_id"], "choice": choice}
            assert _request(f"{url}api/judgments", method="POST", body=judgment)[0] == 200
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    stored = [(j.pair_id, j.choice) for j in Store.in_dir(folder).judgments("carol")]
    assert stored == [("p0", "left"), ("p1", "tie"), ("p2", "right")]

    process, url = _start(["--out", str(folder), "--annotator", "carol"])  # the folder alone resumes its pairs
    try:
        status, state = _request(f"{url}api/state")
        assert status == 200 and (state["done"], state["total"]) == (3, 6)
        assert state["item"]["number"] == 4 and state["item"]["pair_id"] == "p3"
        assert _request(f"{url}api/judgments", method="POST", body={"pair_id": "p3", "choice": "left"})[0] == 200
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert dir_pairs(folder) == pairs
    rows = json.loads(export_annotations(ExportSettings(directory=folder)).path.read_text())
    # p0 shows output 1 on the left, p1 output 2, p2 output 1, p3 output 2
    assert [(r["pair_id"], r["preference"]) for r in rows] == [("p0", 1.0), ("p1", 1.5), ("p2", 2.0), ("p3", 2.0)]
