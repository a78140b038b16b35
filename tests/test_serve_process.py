"""``python -m seq2seq.serve`` as a process: it drains on SIGTERM and exits 0, its mistakes are
one ``error:`` line, and 10,000 requests in a row leave its memory where it was."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs FastAPI and uvicorn (.[serve])")
httpx = pytest.importorskip("httpx", reason="the tests talk to the server through httpx (.[dev])")

from .conftest import assert_one_error, run_cli  # noqa: E402

OLD = Path(__file__).resolve().parent / "fixtures" / "format2"
TRANSFORMER = OLD / "transformer" / "checkpoints" / "last.pt"
EXPORT = OLD / "transformer_ct2"
SOURCES = (OLD / "corpus" / "test.de").read_text(encoding="utf-8").splitlines()

pytestmark = pytest.mark.slow


class Server:
    """A ``python -m seq2seq.serve`` process on a free port of 127.0.0.1."""

    def __init__(self, *args: str, cwd: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.stderr = open(cwd / "serve.log", "w+")  # noqa: SIM115
        if not any(a.startswith("checkpoint=") for a in args):
            args = (f"checkpoint={TRANSFORMER}", *args)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq.serve", "port=0", "num_threads=1", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.url = self.wait_for_address()

    def wait_for_address(self, timeout: float = 120) -> str:
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        match = re.match(r"serving on (http://\S+?)/?$", found[0].strip()) if found else None
        if match is None:
            self.proc.kill()
            raise AssertionError(f"no address printed; stderr:\n{self.log()}")
        return match.group(1)

    def log(self) -> str:
        self.stderr.flush()
        return Path(self.stderr.name).read_text()

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.stderr.close()


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def start(*args: str) -> Server:
        servers.append(Server(*args, cwd=tmp_path))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(server_factory):
    """Requests queued when SIGTERM comes (each batch waits 2 s for company) are all answered;
    new connections are refused meanwhile; the process exits 0."""
    server = server_factory("max_wait_ms=2000", "decoding=greedy")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/readyz").json() == {"status": "ready"}
    with ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        answers = [pool.submit(httpx.post, f"{server.url}/v1/translate", json={"text": s}, timeout=60)
                   for s in SOURCES[:4]]  # fmt: skip
        time.sleep(0.5)
        assert not any(a.done() for a in answers)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=5)
        results = [a.result() for a in answers]
    assert all(r.status_code == 200 and r.json()["translations"][0]["text"] for r in results)
    assert time.monotonic() - started >= 1.5  # they waited for their batch, not cut short
    assert server.proc.wait(60) == 0, server.log()
    assert "Traceback" not in server.log()


def test_mistakes_are_one_error_line(tmp_path):
    proc = run_cli("serve", "checkpoint=missing.pt", cwd=tmp_path, check=False)
    assert_one_error(proc, "missing.pt")
    proc = run_cli("serve", f"checkpoint={TRANSFORMER}", "port=99999", cwd=tmp_path, check=False)
    assert_one_error(proc, "port=99999")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("serve", f"checkpoint={TRANSFORMER}", f"port={port}", cwd=tmp_path, check=False)
    assert_one_error(proc, f"port={port}")
    help_text = run_cli("serve", "--help", cwd=tmp_path).stdout
    assert "host=127.0.0.1" in help_text and "max_wait_ms=" in help_text and "api_key=" in help_text


def test_ten_thousand_requests_leave_memory_where_it_was(server_factory):
    """RSS after 10,000 more requests (after 500 to warm up) is less than 50 MB above. The
    export decodes each in about a millisecond, so that the server's own work dominates."""
    pytest.importorskip("ctranslate2")
    server = server_factory(
        f"checkpoint={EXPORT}",
        "decoding=greedy",
        "decoding.max_len_a=0.5",
        "decoding.max_len_b=5",
        "max_wait_ms=0",  # one client, nothing to wait for: 10,500 waits of 5 ms would be most of the time
    )
    deadline = time.monotonic() + 900
    with httpx.Client(base_url=server.url, timeout=60) as http:

        def send(n: int) -> None:
            for i in range(n):
                assert time.monotonic() < deadline, f"too slow: {i} of {n} requests"
                text = SOURCES[i % len(SOURCES)] if i % 3 else [SOURCES[i % len(SOURCES)], f"Hund {i}."]
                r = http.post("/v1/translate", json={"text": text, "options": {"beam_size": 1 + i % 2}})
                assert r.status_code == 200, r.text

        send(500)
        before = server.rss_mb()
        send(10_000)
        after = server.rss_mb()
    print(f"\nRSS {before:.1f} MB after 500 requests, {after:.1f} MB after 10,000 more")
    assert after - before < 50, (before, after)
