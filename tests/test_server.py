"""The HTTP API through the ASGI test client: searches in each mode and every bad request."""

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from fastapi.testclient import TestClient

from twotower import Searcher
from twotower.serve.batching import MicroBatcher
from twotower.serve.server import create_app
from tests.tiny_index import OTHER_PASSAGES as OTHER
from tests.tiny_index import (PASSAGES, build_index, free_port, make_model, served, server_pids, worker_pids,
                              write_collection)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return build_index(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def client(index):
    return TestClient(create_app(Searcher.from_index(index, device="cpu")), raise_server_exceptions=False)


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_search_returns_hits_with_id_score_text_and_time(client, mode):
    response = client.get("/search", params={"q": "flea life cycle", "k": 3, "mode": mode})
    assert response.status_code == 200
    body = response.json()
    assert (body["mode"], body["k"], body["query"], body["truncated"]) == (mode, 3, "flea life cycle", False)
    assert body["took_ms"] > 0
    assert body["hits"][0] == {"rank": 1, "id": "d1", "score": pytest.approx(body["hits"][0]["score"]),
                               "text": "the flea life cycle takes weeks"}
    assert len(body["hits"]) == (1 if mode == "bm25" else 3)  # BM25 returns only passages with a query term
    scores = [hit["score"] for hit in body["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_health_says_what_is_served(client, index):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["passages"] == 8 and body["modes"] == ["dense", "bm25", "hybrid"]
    assert body["index"] == "exact" and len(body["model_sha256"]) == 64
    assert body["build"] == json.loads((index / "manifest.json").read_text())["build"]
    assert len(body["build"]["id"]) == 12 and body["build"]["finished"].endswith("+00:00")


def test_the_page_and_its_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-mode="bm25"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/%2e%2e/server.py", "/static/../../../etc/passwd",
                                  "/server.py", "/static/"])
def test_only_its_own_static_files_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "error" in response.json()
    assert "import" not in response.text


@pytest.mark.parametrize("params, status, message", [
    ({"q": ""}, 400, "q is empty"),
    ({"q": "   \t"}, 400, "q is empty"),
    ({"q": "???"}, 400, "q has no words to search for: '???' holds no letters or digits"),
    ({"q": "...", "mode": "bm25"}, 400, "q has no words to search for: '...'"),
    ({"q": " !!! ", "mode": "hybrid"}, 400, "q has no words to search for: ' !!! '"),
    ({}, 422, "q is required"),
    ({"q": "cat", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"q": "cat", "k": 1001}, 422, "k: Input should be less than or equal to 1000"),
    ({"q": "cat", "k": "ten"}, 422, "k: Input should be a valid integer"),
    ({"q": "cat", "mode": "sparse"}, 422, "mode 'sparse' is not one of dense, bm25, hybrid"),
])
def test_bad_requests_get_a_json_error(client, params, status, message):
    response = client.get("/search", params=params)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_unknown_mode_lists_the_accepted_ones(client):
    assert client.get("/search", params={"q": "cat", "mode": "x"}).json()["accepted"] == ["dense", "bm25", "hybrid"]


def test_a_100_kb_query_is_truncated_not_a_crash_and_a_huge_request_is_refused(index):
    """Over a real server: no HTTP client library sends a 100 KB URL, but a browser or curl can."""
    query = "coffee bean " + "filler " * 15_000
    assert len(query) > 100_000
    with served(index) as url:
        host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
        for mode in ("dense", "bm25", "hybrid"):
            connection = http.client.HTTPConnection(host, port, timeout=60)
            connection.request("GET", "/search?" + urllib.parse.urlencode({"q": query, "k": 2, "mode": mode}))
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 200
            assert body["truncated"] is True
            assert body["query"] == "coffee bean " + " ".join(["filler"] * 6)  # the model reads 8 words
            assert body["hits"][0]["id"] == "d6"
        connection = http.client.HTTPConnection(host, port, timeout=60)
        try:  # h11 answers a request line over the cap with an error and closes, often mid-send
            connection.request("GET", "/search?q=" + "x" * (1 << 20))
            response = connection.getresponse()
            assert response.status in (400, 413, 414, 431)
            assert "Traceback" not in response.read().decode(errors="replace")
        except (ConnectionResetError, BrokenPipeError):
            pass
        with urllib.request.urlopen(url + "/health", timeout=10) as health:  # still serving
            assert json.loads(health.read())["status"] == "ok"


def test_worker_processes_serve_the_folder_on_one_port(index):
    with served(index, options=["--workers", "2"]) as url:
        for mode in ("dense", "bm25", "hybrid") * 4:  # a new connection each: either worker may answer
            with urllib.request.urlopen(url + "/search?" + urllib.parse.urlencode(
                    {"q": "coffee bean", "k": 2, "mode": mode}), timeout=60) as response:
                assert json.loads(response.read())["hits"][0]["id"] == "d6"
    result = subprocess.run([sys.executable, "-m", "twotower.cli", "serve", "--index", str(index), "--workers", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == "error: --workers must be at least 1, got 0\n"
    result = subprocess.run([sys.executable, "-m", "twotower.cli", "serve", "--index", str(index), "--workers", "2",
                             "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == (
        "error: --workers above 1 forks the loaded index, which cuda does not survive: use --device cpu, "
        "or --workers 1 on the accelerator\n")


def test_forked_workers_are_replaced_on_sighup_and_when_one_dies(index):
    """SIGHUP: the parent loads the folder again and forks new workers in place of the old; a
    worker killed from outside is forked again. The port answers throughout."""
    import os
    import signal

    def answers(url):
        with urllib.request.urlopen(url + "/search?q=coffee+bean&k=2&mode=hybrid", timeout=60) as response:
            return json.loads(response.read())["hits"][0]["id"]

    def wait_for(condition, url):
        deadline = time.monotonic() + 120
        while not condition():
            assert time.monotonic() < deadline
            assert answers(url) == "d6"
            time.sleep(0.2)

    with served(index, options=["--workers", "2"]) as url:
        parent, first = server_pids(url)
        assert len(first) == 2 and len(parent) == 1
        os.kill(parent.pop(), signal.SIGHUP)
        wait_for(lambda: len(worker_pids(url)) == 2 and not worker_pids(url) & first, url)
        second = worker_pids(url)
        victim = min(second)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(url)) == 2 and victim not in worker_pids(url), url)
        assert answers(url) == "d6"


def test_forked_workers_need_a_cpu_model():
    from twotower.errors import TwoTowerError
    from twotower.serve.workers import forked_device

    with pytest.raises(TwoTowerError, match="--workers above 1 forks the loaded index, which mps does not survive"):
        forked_device("mps")
    assert forked_device("cpu") == forked_device("auto") == "cpu"


def test_a_failing_search_is_a_500_without_a_traceback(index, monkeypatch):
    searcher = Searcher.from_index(index, device="cpu")
    monkeypatch.setattr(searcher, "search", lambda *a, **k: 1 / 0)
    response = TestClient(create_app(searcher), raise_server_exceptions=False).get("/search", params={"q": "cat"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error: the search failed"}


@pytest.mark.parametrize("make_bad,workers", [("missing", "1"), ("other model", "1"), ("missing", "2"),
                                              ("other model", "2")])
def test_serve_refuses_to_start_on_a_bad_index_with_one_line(index, tmp_path, make_bad, workers):
    args = ["--index", str(tmp_path / "nowhere"), "--workers", workers]
    if make_bad == "other model":
        make_model(tmp_path / "other.pt", seed=3)
        args = ["--index", str(index), "--model", str(tmp_path / "other.pt"), "--workers", workers]
    result = subprocess.run([sys.executable, "-m", "twotower.cli", "serve", *args, "--port", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert ("index folder not found" if make_bad == "missing" else "is a different model") in result.stderr


def test_a_search_stuck_behind_a_hung_one_is_a_503_and_the_server_recovers(index):
    searcher = Searcher.from_index(index, device="cpu")
    exact, started, release = searcher.dense_search, threading.Event(), threading.Event()

    def hanging(vectors, k):
        started.set()
        release.wait(30)
        return exact(vectors, k)

    searcher.dense_search = MicroBatcher(hanging, timeout=0.2)
    client = TestClient(create_app(searcher), raise_server_exceptions=False)
    first = {}
    hung = threading.Thread(target=lambda: first.setdefault("response", client.get("/search", params={"q": "cat"})))
    hung.start()
    assert started.wait(30)
    response = client.get("/search", params={"q": "flea life cycle", "mode": "hybrid"})
    assert response.status_code == 503
    assert response.json() == {"error": "search timed out after waiting 0.2 s for other searches"}
    release.set()
    hung.join(30)
    assert first["response"].status_code == 200
    assert client.get("/search", params={"q": "flea life cycle"}).json()["hits"][0]["id"] == "d1"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_rebuild_while_serving_is_swapped_in_whole(tmp_path, workers):
    """`twotower index --force` onto the folder a server is answering from, with clients asking
    all along: every answer is a 200 from one whole build, first A and then B. With forked
    workers, the parent loads B and replaces them one by one."""
    index = build_index(tmp_path)  # A
    write_collection(OTHER, tmp_path / "b.parquet", "parquet")
    builds = {"A": set(zip(PASSAGES["id"], PASSAGES["text"])), "B": set(zip(OTHER["id"], OTHER["text"]))}
    answers, stop = [], threading.Event()

    def ask(url):
        while not stop.is_set():
            for query, mode in [("coffee bean", "dense"), ("bank loan interest", "bm25"), ("coffee tea", "hybrid")]:
                try:
                    with urllib.request.urlopen(f"{url}/search?" + urllib.parse.urlencode(
                            {"q": query, "k": 3, "mode": mode}), timeout=60) as response:
                        answers.append((response.status, json.loads(response.read())["hits"]))
                except urllib.error.HTTPError as error:
                    answers.append((error.code, []))

    def build_served(url):
        with urllib.request.urlopen(url + "/health", timeout=60) as response:
            return json.loads(response.read())["build"]

    with served(index, options=["--workers", workers]) as url:
        first, forked = build_served(url), worker_pids(url)
        assert len(forked) == (0 if workers == "1" else 2)
        clients = [threading.Thread(target=ask, args=(url,)) for _ in range(2)]
        for client in clients:
            client.start()
        try:
            before = len(answers)
            subprocess.run([sys.executable, "-m", "twotower.cli", "index", str(tmp_path / "b.parquet"), "--out",
                            str(index), "--model", str(tmp_path / "model.pt"), "--index", "exact", "--force",
                            "--device", "cpu", "-q"], cwd=tmp_path, check=True, capture_output=True, timeout=300)
            during = len(answers) - before
            rebuilt = json.loads((index / "manifest.json").read_text())["build"]
            deadline = time.monotonic() + 120
            while build_served(url) != rebuilt or worker_pids(url) & forked:  # noticed within a second, loaded
                assert time.monotonic() < deadline, "the server never swapped to the new build"
                time.sleep(0.2)
            assert len(worker_pids(url)) == len(forked)
            swapped = len(answers)
            while len(answers) < swapped + 6:
                time.sleep(0.05)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=120)
    assert first != rebuilt and during > 0
    assert all(status == 200 for status, _ in answers)
    served_from = ["A" if pairs <= builds["A"] else "B" if pairs <= builds["B"] else "mixed"
                   for pairs in ({(hit["id"], hit["text"]) for hit in hits} for _, hits in answers)]
    assert "mixed" not in served_from and all(hits for _, hits in answers)
    # once /health shows B, only the two clients' requests already in flight may still be A's
    assert served_from[0] == "A" and served_from[swapped + 2:] == ["B"] * (len(answers) - swapped - 2)


def test_every_connection_gets_tcp_nodelay():
    """The socket uvicorn binds for --workers has protocol number 0, so asyncio leaves Nagle on
    and a keep-alive client waited ~40 ms a request; `no_delay` turns it off per connection."""
    import socket

    from twotower.serve.server import no_delay

    class Transport:
        def __init__(self, sock):
            self.sock = sock

        def get_extra_info(self, name):
            return self.sock if name == "socket" else None

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                no_delay(Transport(accepted))
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    no_delay(Transport(None))  # a transport without a socket is left alone


@pytest.mark.parametrize("options, logged", [((), False), (("--access-log",), True)])
def test_a_line_per_request_is_logged_only_when_asked_for(index, options, logged):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "twotower.cli", "serve", "--index", str(index), "--port",
                               str(port), "--device", "cpu", "--log-level", "info", *options],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/search?q=coffee", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Application startup complete" in output  # info lines are there either way
    assert ('"GET /search?q=coffee HTTP/1.1" 200' in output) == logged
