"""Serving speed: N concurrent clients on loopback, each sending single sentences of
test_2016_flickr one request at a time; prints throughput (sentences/s) and p50/p95/p99 latency.

    python scripts/bench_serve.py checkpoint=EXPORT_OR_PT [clients=1,32] [seconds=20] [key=value ...]

Starts ``python -m seq2seq.serve`` on a free port of 127.0.0.1 with the ``key=value``
overrides that are not this script's (e.g. ``decoding.beam_size=5 engine=torch``), warms it
up, measures each client count in turn and stops it. ``url=http://127.0.0.1:PORT`` measures a
server already running instead; ``api=opennmt`` speaks OpenNMT-py's REST server
(``POST /translator/translate``, ``[{"src": ..., "id": 100}]``) to compare with it.

The clients are one asyncio loop with raw keep-alive HTTP/1.1 connections (no client
library), so that as little CPU as possible goes to the load generator, which shares the
machine with the server. Every loop is bounded by ``seconds`` and ``max_requests``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import platform
import re
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "multi30k" / "test_2016_flickr.de.gz"
OWN = {
    "clients": "1,32",
    "seconds": "20",
    "warmup": "3",
    "url": "",
    "api": "seq2seq",
    "max_requests": "200000",
}


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """This script's settings (``OWN``) and the overrides passed on to the server."""
    own, rest = dict(OWN), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in OWN:
            own[key] = value
        else:
            rest.append(arg)
    return own, rest


def start_server(overrides: list[str]) -> tuple[subprocess.Popen, str]:
    """``python -m seq2seq.serve port=0 ...``; returns the process and its address."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq.serve", "port=0", *overrides],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        env=env,
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(300)
    match = re.search(r"serving on http://([^/\s]+)", line[0]) if line else None
    if match is None:
        proc.kill()
        sys.exit("the server printed no address")
    return proc, match.group(1)


def request_bytes(host: str, api: str, sentence: str) -> bytes:
    """One HTTP/1.1 keep-alive request translating ``sentence``."""
    if api == "opennmt":
        path, body = "/translator/translate", json.dumps([{"src": sentence, "id": 100}])
    else:
        path, body = "/v1/translate", json.dumps({"text": sentence})
    data = body.encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one response (Content-Length framed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    return status, await reader.readexactly(length)


def translated(api: str, body: bytes) -> bool:
    """Whether a 200 answer holds a translation (OpenNMT-py answers 200 with {"error": ...} too)."""
    answer = json.loads(body)
    if api == "opennmt":
        return isinstance(answer, list) and isinstance(answer[0][0].get("tgt"), str)
    return isinstance(answer.get("translations", [{}])[0].get("text"), str)


async def client(address: str, api: str, sentences: list[str], offset: int, stop: float, budget, latencies):
    """Send sentences one request at a time until ``stop`` (a loop.time()) or the shared budget ends."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    loop = asyncio.get_running_loop()
    i = offset
    try:
        while loop.time() < stop and budget[0] > 0:
            budget[0] -= 1
            sent = loop.time()
            writer.write(request_bytes(address, api, sentences[i % len(sentences)]))
            status, body = await read_response(reader)
            if status != 200 or not translated(api, body):
                raise RuntimeError(f"status {status}: {body[:200]!r}")
            latencies.append(loop.time() - sent)
            i += 1
    finally:
        writer.close()


async def measure(
    address: str, api: str, sentences: list[str], clients: int, seconds: float, max_requests: int
):
    """Throughput and latencies of ``clients`` concurrent clients for ``seconds``."""
    latencies: list[float] = []
    budget = [max_requests]
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop = start + seconds
    step = max(1, len(sentences) // clients)
    await asyncio.gather(
        *(client(address, api, sentences, k * step, stop, budget, latencies) for k in range(clients))
    )
    wall = loop.time() - start
    latencies.sort()

    def pct(p: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    return {
        "clients": clients,
        "requests": len(latencies),
        "sentences_per_s": len(latencies) / wall,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
    }


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return re.search(r"Model name:\s*(.+)", out).group(1).strip()
    except (OSError, AttributeError):
        return platform.processor() or "unknown CPU"


def main() -> None:
    own, overrides = parse(sys.argv[1:])
    with gzip.open(SOURCE, "rt", encoding="utf-8") as f:
        sentences = [line.strip() for line in f if line.strip()]
    proc = None
    address = own["url"].removeprefix("http://").rstrip("/")
    if not address:
        proc, address = start_server(overrides)
    try:
        print(f"# {cpu_name()}, {os.cpu_count()} CPUs; server: {' '.join(overrides) or own['url']}")
        asyncio.run(
            measure(address, own["api"], sentences, 4, float(own["warmup"]), int(own["max_requests"]))
        )
        print("| clients | requests | sentences/s | p50 ms | p95 ms | p99 ms |")
        print("|---:|---:|---:|---:|---:|---:|")
        for clients in (int(c) for c in own["clients"].split(",")):
            r = asyncio.run(
                measure(
                    address, own["api"], sentences, clients, float(own["seconds"]), int(own["max_requests"])
                )
            )
            print(
                f"| {r['clients']} | {r['requests']} | {r['sentences_per_s']:.1f} | {r['p50_ms']:.1f} | "
                f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} |",
                flush=True,
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
