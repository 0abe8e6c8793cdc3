"""Extraction client throughput against a server with a fixed latency, and the concurrency bound.

    .venv/bin/python bench/extraction.py [--requests 320] [--concurrency 16] [--latency 0.2] [--reps 3]

The server runs in a SEPARATE process (so it does not share the client's GIL) and answers every
request after a fixed ``latency_s``: by default (``--server asyncio``) a minimal asyncio HTTP/1.1
server whose only work per request is parsing it and writing the fake answer, the closest this
machine gets to "a server with a fixed latency"; for comparison (``--server threaded``, also
measured and recorded under ``threaded_server``) the test suite's fake OpenAI endpoint
(``tests/fakes/openai_server.py``: ``http.server``, one thread per connection), whose per-request
work on a 2-core machine is a share of the gap to the bound that no client can close. The client is :func:`rlbff_lib.principles.extraction.run_extraction` with the ``openai``
backend, as the ``principles`` stage calls it, on distinct feedback texts and an empty cache file
each repetition (no cache hits; every answer is appended and fsync'ed, as in the stage).

Ideal bound: with ``c`` requests in flight and a latency of ``L`` seconds, ``n`` requests take at
least ``ceil(n / c) × L`` seconds. ``ratio_to_concurrency_bound`` = bound / measured (1.0: the
client adds nothing; goal >= 0.9). Also measured: the same run without a cache file
(``cache_path=None``), which isolates the cost of the durable cache writes, and a minimal raw
asyncio HTTP client sending the same requests (the floor set by the server and the operating
system on this machine): ``ratio_to_bare_client`` = bare-client seconds / library seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common


def serve(latency: float) -> None:
    """Child process: run the fake server until stdin closes; print its base URL first."""
    import http.server

    sys.path.insert(0, str(common.REPO_ROOT / "tests"))
    from fakes.openai_server import FakeOpenAI

    # a real server's accept queue: the default of 5 resets connections when 16 arrive at once
    http.server.ThreadingHTTPServer.request_queue_size = 1024

    with FakeOpenAI(latency_s=latency) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()
        print(f"served {server.requests}", flush=True)


def serve_asyncio(latency: float) -> None:
    """Child process: a minimal asyncio HTTP/1.1 keep-alive server answering every chat-completions
    request with the fake's deterministic answer after ``latency`` seconds; print its base URL first."""
    import asyncio
    import json

    sys.path.insert(0, str(common.REPO_ROOT / "tests"))
    from fakes.openai_server import feedback_of, good_answer

    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET "):  # the client's preflight: GET /v1/models
                    body = json.dumps({"object": "list", "data": [{"id": "fake-model"}]}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
                    await writer.drain()
                    continue
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                payload = json.loads(await reader.readexactly(length))
                await asyncio.sleep(latency)
                body = json.dumps({
                    "id": "chatcmpl-fake", "object": "chat.completion", "model": payload.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": json.dumps(good_answer(feedback_of(payload)))}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        print(f"served {served}", flush=True)

    asyncio.run(main())


def items(n: int, rep: int) -> list[dict]:
    """``n`` distinct feedback items (distinct per repetition too: nothing is cached)."""
    return [{"item_id": f"b{rep}-{i}:1:0", "record_id": f"b{rep}-{i}", "response": 1, "annotator": 0,
             "text": f"The response is mostly helpful. Item {rep}-{i} answers the question correctly."}
            for i in range(n)]


async def _bare_client(base_url: str, texts: list[str], concurrency: int, model: str) -> None:
    """The floor: a minimal keep-alive HTTP/1.1 client on raw asyncio streams (no httpx, no
    parsing, no cache), sending the same requests. What it loses to the bound is the server and
    the operating system (scheduling on a busy machine), not the client library."""
    import asyncio
    import json
    from urllib.parse import urlsplit

    from rlbff_lib.principles.extraction import load_prompt

    url = urlsplit(base_url.rstrip("/") + "/chat/completions")
    prompt = load_prompt("v1")
    queue = list(texts)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            while queue:
                text = queue.pop()
                body = json.dumps({"model": model, "messages": [{"role": "user",
                                   "content": prompt.replace("{feedback}", text)}]}).encode()
                writer.write(f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def costs_behind_the_fixes(folder: Path, reps: int = 30) -> dict:
    """The two per-request costs the client used to pay inside its event loop, measured here:
    an fsync'ed append of one cache line (now done by a writer thread, one fsync per group) and
    one failed ``import`` of a missing module (httpcore tries ``import sniffio`` per request; the
    client now records the absence once). Milliseconds, medians of ``reps``."""
    import importlib

    from rlbff_lib.core.io import append_jsonl

    row = {"key": "x" * 64, "status": "ok", "principles": [{"evidence": "e", "principle": "p", "fulfillment": "Yes"}]}
    fsync, failed = [], []
    for i in range(reps):
        t0 = time.perf_counter()
        append_jsonl(folder / "fsync_probe.jsonl", {**row, "i": i}, fsync=True)
        fsync.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"rlbff_missing_module_{i}")
        except ImportError:
            pass
        failed.append(time.perf_counter() - t0)
    return {"fsync_append_ms": round(1e3 * statistics.median(fsync), 3),
            "failed_import_ms": round(1e3 * statistics.median(failed), 3)}


SERVERS = {"asyncio": "a minimal asyncio HTTP/1.1 server (bench/extraction.py serve_asyncio) in a separate process "
                      "(127.0.0.1)",
           "threaded": "tests/fakes/openai_server.FakeOpenAI (http.server, a thread per connection) in a separate "
                       "process (127.0.0.1)"}


def measure(args, kind: str) -> dict:
    """The three variants (library with cache, without, bare client) against one server kind."""
    from rlbff_lib.principles.extraction import ExtractionConfig, run_extraction

    serve_flag = "--serve" if kind == "threaded" else "--serve-asyncio"
    server = subprocess.Popen([sys.executable, __file__, serve_flag, str(args.latency)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        cfg = ExtractionConfig(backend="openai", base_url=base_url, model="fake-model", api_key_env="",
                               concurrency=args.concurrency, timeout_s=60.0, max_retries=2, backoff_base_s=0.05)
        run_extraction(items(args.concurrency, -1), cfg, None)  # warm-up: imports, connections
        bound = math.ceil(args.requests / args.concurrency) * args.latency
        times: dict[str, list[float]] = {"with_cache": [], "no_cache": [], "bare_client": []}
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                variants = ("with_cache", "no_cache", "bare_client")
                for variant in (variants if rep % 2 == 0 else variants[::-1]):
                    batch = items(args.requests, 3 * rep + variants.index(variant))
                    t0 = time.perf_counter()
                    if variant == "bare_client":
                        asyncio.run(_bare_client(base_url, [it["text"] for it in batch], args.concurrency, cfg.model))
                        times[variant].append(time.perf_counter() - t0)
                        continue
                    cache = Path(tmp) / f"cache-{rep}.jsonl" if variant == "with_cache" else None
                    rows, summary = run_extraction(batch, cfg, cache)
                    times[variant].append(time.perf_counter() - t0)
                    if summary["ok"] != args.requests or summary["cache_hits"] or summary["requests"] != args.requests:
                        raise SystemExit(f"unexpected run: {summary}")
            costs = costs_behind_the_fixes(Path(tmp))
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = bound / med["with_cache"]
    result = {
        "ratio_to_concurrency_bound": round(ratio, 4),
        "ratio_to_concurrency_bound_without_cache": round(bound / med["no_cache"], 4),
        "bare_client_ratio_to_concurrency_bound": round(bound / med["bare_client"], 4),
        "ratio_to_bare_client": round(med["bare_client"] / med["with_cache"], 4),
        "goal_ratio_to_concurrency_bound": 0.9,
        "requests": args.requests, "concurrency": args.concurrency, "latency_s": args.latency,
        "bound_s": bound, "bound_requests_per_s": round(args.requests / bound, 2),
        "requests_per_s": {k: round(args.requests / v, 2) for k, v in med.items()},
        "timings": {k: common.summary(v) for k, v in times.items()},
        "per_request_costs_removed_from_the_event_loop": costs,
        "reps": args.reps, "server": SERVERS[kind],
        "machine": common.machine(),
    }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--server", choices=("asyncio", "threaded"), default="asyncio",
                    help="the server of the headline numbers (the other is measured too, for comparison)")
    ap.add_argument("--serve", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--serve-asyncio", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.serve is not None:
        return serve(args.serve)
    if args.serve_asyncio is not None:
        return serve_asyncio(args.serve_asyncio)

    result = measure(args, args.server)
    other = "threaded" if args.server == "asyncio" else "asyncio"
    result[f"{other}_server"] = {k: v for k, v in measure(args, other).items() if k != "machine"}
    result["machine"] = common.machine()
    ratio, bound, med = (result["ratio_to_concurrency_bound"], result["bound_s"],
                         {k: args.requests / v for k, v in result["requests_per_s"].items()})
    common.show("extraction", {"ratio_to_concurrency_bound": ratio,
                               "ratio_to_concurrency_bound_without_cache": bound / med["no_cache"],
                               "bare_client_ratio_to_concurrency_bound": bound / med["bare_client"],
                               "ratio_to_bare_client": med["bare_client"] / med["with_cache"]},
                {"bound": f"{bound:.2f}s for {args.requests} requests", "measured": f"{med['with_cache']:.2f}s",
                 "machine": result["machine"]})
    if not args.no_save:
        common.merge_results("extraction", result)


if __name__ == "__main__":
    main()
