"""A scoring service for the principle reward models: one loaded scalar or Bradley–Terry RM answers every
training rank (or any RL stack) over HTTP, batching concurrent requests into the model's forward passes.

    python -m rlbff_lib.reward_models.serve --kind scalar|bt --model PATH [--host 127.0.0.1] [--port 8002]
        [--batch-size 8] [--max-length 4096] [--max-wait-ms 5] [--max-rows 256] [--device-map auto]
        [--gpus-per-replica N]

HTTP API (JSON, UTF-8, HTTP/1.1 with keep-alive; stdlib asyncio, no framework):

``GET /health`` → 200 ``{"status": "ok", "kind", "model", "replicas", "requests", "rows", "batches", "errors"}``
(counts since start).

``POST /score`` with ``{"conversations": [...], "responses": [...], "principles": [...] | "..." | null}`` →
200 ``{"scores": [...], "truncated": [...]}``:

- ``conversations``: N items, each a list of chat messages ``{"role", "content"}`` (the last one from the user)
  or a string (one user turn);
- ``responses``: N strings, the assistant responses to score;
- ``principles``: N strings, or one string for all (e.g. ``"is concise"``); the Bradley–Terry RM never sees a
  principle, so for ``bt`` it may be null or absent;
- ``scores``: N floats in input order, in nats: ``scalar`` = logit("Yes") − logit("No") at the first answer
  position of the RLBFF prompt (> 0: the response satisfies the principle); ``bt`` = the Bradley–Terry reward.
  A conversation too long for ``--max-length`` is cut from the left, as in-process scoring does
  (:mod:`rlbff_lib.reward_models.scorers`), so served and in-process scores agree; ``truncated`` flags those.

Errors: 400 ``{"error": "..."}`` names the bad field, and nothing of the request is scored; 404 unknown path;
411 / 413 missing or oversized body; 500 the model failed on the batch holding the request.

Batching: a request's rows join a queue; the batcher waits up to ``--max-wait-ms`` after the first queued
request for more, then scores up to ``--max-rows`` rows of whole requests in one scorer call (which sorts them
by length into forward passes of ``--batch-size``) and hands each request its scores. With
``--gpus-per-replica N`` on a node with G GPUs, G // N replicas run in worker processes (each sees its N GPUs,
``device_map`` auto over them) and take batches as they free up; otherwise one replica runs in this process.

Clients: :class:`ServedScorer` (``scorer(conversations, responses, principles).scores``, what the GRPO reward
uses when ``alignment.grpo.reward.score_url`` is set; :func:`serve_subprocess` starts the service on one machine
and yields that URL) and :func:`served_reward`, a TRL reward function
(``GRPOTrainer(reward_funcs=served_reward(url), ...)``) for any TRL setup; other stacks (OpenRLHF's remote
reward model, verl's reward function) post the same JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rlbff_lib.core.child import child_server

KINDS = ("scalar", "bt")
MAX_BODY_BYTES = 256 * 2 ** 20


# ------------------------------------------------------------------ requests


def parse_request(body: dict, kind: str) -> tuple[list, list[str], list[str] | None]:
    """(conversations, responses, principles) of a ``/score`` body; ``ValueError`` names the bad field."""
    if not isinstance(body, dict):
        raise ValueError("body: expected a JSON object")
    convs, resps, prins = body.get("conversations"), body.get("responses"), body.get("principles")
    if not isinstance(resps, list) or not all(isinstance(r, str) for r in resps):
        raise ValueError("responses: expected a list of strings")
    if not isinstance(convs, list) or len(convs) != len(resps):
        raise ValueError(f"conversations: expected a list of {len(resps)} items (one per response)")
    for i, c in enumerate(convs):
        if isinstance(c, str):
            continue
        if not (isinstance(c, list) and c and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                  and isinstance(m.get("content"), str) for m in c)):
            raise ValueError(f"conversations[{i}]: expected a string or a non-empty list of "
                             "{\"role\": str, \"content\": str} messages")
    if prins is None:
        if kind != "bt":
            raise ValueError(f"principles: the {kind} RM needs a principle per response (or one for all)")
        return convs, resps, None
    if isinstance(prins, str):
        prins = [prins] * len(resps)
    if not isinstance(prins, list) or len(prins) != len(resps) or not all(isinstance(p, str) for p in prins):
        raise ValueError(f"principles: expected one string or a list of {len(resps)} strings")
    return convs, resps, prins


def scores_of(result) -> tuple[list[float], list[bool]]:
    """(scores, truncated flags) of a scorer's result: a list of floats, or an object with ``.scores``
    (and ``.truncated``: the input was cut from the left to fit ``max_length``)."""
    scores = [float(s) for s in getattr(result, "scores", result)]
    truncated = [bool(t) for t in getattr(result, "truncated", None) or [False] * len(scores)]
    return scores, truncated


# ------------------------------------------------------------------ replicas


class LocalReplica:
    """A scorer in this process: ``scorer(conversations, responses, principles)`` → scores (or ``.scores``)."""

    def __init__(self, scorer: Callable):
        self.scorer = scorer

    def score(self, convs, resps, prins) -> tuple[list[float], list[bool]]:
        return scores_of(self.scorer(convs, resps, prins))

    def close(self) -> None:
        pass


def _worker(conn, gpus: str | None, kind: str, model: str, max_length, batch_size: int, device_map) -> None:
    """A replica process: sees only ``gpus``, loads the RM, scores what the pipe sends until it closes."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    scorer = load(kind, model, max_length, batch_size, device_map)
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", scores_of(scorer(*job))))
        except Exception as e:  # the parent answers the batch's requests with a 500
            conn.send(("error", f"{type(e).__name__}: {e}"))


class ProcessReplica:
    """A scorer in a worker process of its own (its GPUs only)."""

    def __init__(self, gpus: str | None, kind: str, model: str, max_length, batch_size: int, device_map):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, gpus, kind, model, max_length, batch_size, device_map),
                                daemon=True)
        self.proc.start()
        status, _ = self.conn.recv()
        if status != "ready":
            raise RuntimeError(f"replica on GPUs {gpus} failed to start")

    def score(self, convs, resps, prins) -> tuple[list[float], list[bool]]:
        self.conn.send((convs, resps, prins))
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        self.conn.close()
        self.proc.join(timeout=30)


def load(kind: str, model: str, max_length: int | None, batch_size: int, device_map: str | None):
    """The scorer of :func:`rlbff_lib.reward_models.scorers.load_scorer`."""
    from rlbff_lib.reward_models.scorers import load_scorer

    return load_scorer(kind, model, max_length=max_length, batch_size=batch_size, device_map=device_map)


# ------------------------------------------------------------------ the service


@dataclass
class _Pending:
    convs: list
    resps: list[str]
    prins: list[str] | None
    future: asyncio.Future


@dataclass
class ScoreService:
    """The batching HTTP service around ``replicas`` (see the module docstring)."""

    replicas: list
    kind: str
    model_name: str
    max_rows: int = 256
    max_wait_s: float = 0.005
    stats: dict = field(default_factory=lambda: {"requests": 0, "rows": 0, "batches": 0, "errors": 0})

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._idle: asyncio.Queue = asyncio.Queue()
        for r in self.replicas:
            self._idle.put_nowait(r)
        self._batcher = asyncio.create_task(self._batch_loop())
        return await asyncio.start_server(self._connection, host, port)

    # -- batching
    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Pending | None = None
        while True:
            first = carry or await self._queue.get()
            carry, batch, rows = None, [first], len(first.resps)
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_rows:
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                if rows + len(nxt.resps) > self.max_rows:
                    carry = nxt
                    break
                batch.append(nxt)
                rows += len(nxt.resps)
            replica = await self._idle.get()
            asyncio.create_task(self._run(replica, batch))

    async def _run(self, replica, batch: list[_Pending]) -> None:
        convs = [c for p in batch for c in p.convs]
        resps = [r for p in batch for r in p.resps]
        prins = None if self.kind == "bt" else [x for p in batch for x in p.prins]
        try:
            scores, cut = await asyncio.get_running_loop().run_in_executor(None, replica.score, convs, resps, prins)
            if len(scores) != len(resps) or len(cut) != len(resps):
                raise RuntimeError(f"scorer returned {len(scores)} scores for {len(resps)} rows")
            self.stats["batches"] += 1
            k = 0
            for p in batch:
                p.future.set_result((scores[k:k + len(p.resps)], cut[k:k + len(p.resps)]))
                k += len(p.resps)
        except Exception as e:
            self.stats["errors"] += 1
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
        finally:
            self._idle.put_nowait(replica)

    async def score(self, convs, resps, prins) -> tuple[list[float], list[bool]]:
        future = asyncio.get_running_loop().create_future()
        self.stats["requests"] += 1
        self.stats["rows"] += len(resps)
        if not resps:
            return [], []
        await self._queue.put(_Pending(convs, resps, prins, future))
        return await future

    # -- HTTP
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = (line.decode("latin-1").split(" ", 2) + ["", ""])[:3]
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                status, body = await self._route(method, urllib.parse.urlsplit(path).path, headers, reader)
                payload = json.dumps(body).encode()
                close = headers.get("connection", "").lower() == "close" or status == 413  # body left unread
                writer.write(f"HTTP/1.1 {status} {http.client.responses.get(status, '')}\r\nContent-Type: "
                             f"application/json\r\nContent-Length: {len(payload)}\r\n"
                             f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode() + payload)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _route(self, method: str, path: str, headers: dict, reader) -> tuple[int, dict]:
        length = int(headers.get("content-length") or 0)
        raw = await reader.readexactly(length) if 0 < length <= MAX_BODY_BYTES else b""
        if path == "/health" and method == "GET":
            return 200, {"status": "ok", "kind": self.kind, "model": self.model_name,
                         "replicas": len(self.replicas), **self.stats}
        if path != "/score":
            return 404, {"error": f"{method} {path}: not found (GET /health, POST /score)"}
        if method != "POST":
            return 405, {"error": "/score: use POST"}
        if length > MAX_BODY_BYTES:
            return 413, {"error": f"body of {length} bytes exceeds {MAX_BODY_BYTES}"}
        if not length:
            return 411, {"error": "/score: a JSON body with Content-Length is required"}
        try:
            convs, resps, prins = parse_request(json.loads(raw), self.kind)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            return 400, {"error": str(e)}
        try:
            scores, cut = await self.score(convs, resps, prins)
            return 200, {"scores": scores, "truncated": cut}
        except Exception as e:
            return 500, {"error": f"scoring failed: {type(e).__name__}: {e}"}


# ------------------------------------------------------------------ clients


class ServedScorer:
    """The service as a scorer: ``ServedScorer(url)(conversations, responses, principles).scores``.

    One keep-alive connection per thread; connection errors, timeouts and 5xx are retried with exponential
    backoff (``max_retries`` times), then raise; a 4xx raises at once with the server's message. Requests over
    ``chunk_rows`` rows are split (the service batches them again).
    """

    def __init__(self, url: str, timeout_s: float = 300.0, max_retries: int = 4, backoff_s: float = 1.0,
                 chunk_rows: int = 1024):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"score_url: expected http://HOST:PORT, got {url!r}")
        self.url, self.parts = url.rstrip("/"), parts
        self.timeout_s, self.max_retries, self.backoff_s, self.chunk_rows = timeout_s, max_retries, backoff_s, chunk_rows
        import threading

        self._local = threading.local()

    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        if fresh or getattr(self._local, "conn", None) is None:
            cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
            self._local.conn = cls(self.parts.hostname, self.parts.port, timeout=self.timeout_s)
        return self._local.conn

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        base = self.parts.path.rstrip("/")
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            conn = self._conn(fresh=attempt > 0)
            try:
                conn.request(method, base + path, body=data, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if resp.status == 200:
                    return json.loads(payload)
                message = payload.decode(errors="replace")[:500]
                if resp.status < 500:
                    raise ValueError(f"{self.url}{path}: HTTP {resp.status}: {message}")
                last = f"HTTP {resp.status}: {message}"
            if attempt < self.max_retries:
                time.sleep(self.backoff_s * 2 ** attempt)
        raise RuntimeError(f"{self.url}{path}: failed after {self.max_retries + 1} attempts (last: {last})")

    def health(self) -> dict:
        return self.request("GET", "/health")

    def __call__(self, conversations: Sequence, responses: Sequence[str], principles=None):
        from rlbff_lib.reward_models.scorers import ScoreResult

        n = len(responses)
        if isinstance(principles, str):
            principles = [principles] * n
        scores: list[float] = []
        cut: list[bool] = []
        for k in range(0, n, self.chunk_rows):
            body = {"conversations": [c if isinstance(c, str) else list(c) for c in conversations[k:k + self.chunk_rows]],
                    "responses": list(responses[k:k + self.chunk_rows]),
                    "principles": None if principles is None else list(principles[k:k + self.chunk_rows])}
            answer = self.request("POST", "/score", body)
            scores += answer["scores"]
            cut += answer.get("truncated") or [False] * len(answer["scores"])
        if len(scores) != n:
            raise RuntimeError(f"{self.url}/score: {len(scores)} scores for {n} responses")
        return ScoreResult(scores=scores, truncated=cut)


def served_reward(url: str, principle_column: str = "principles", name: str = "served_principle_reward",
                  **client_kwargs) -> Callable:
    """A TRL reward function scoring each completion with the service at ``url``.

    TRL calls it as ``reward(prompts=..., completions=..., **dataset_columns)``; prompts and completions are
    strings or chat messages (the completion's last message is scored). The dataset column
    ``principle_column`` holds a principle string or a list of them per row (the reward is their mean score);
    without it (a ``bt`` service) the response alone is scored. Returns one float per completion.
    """
    client = ServedScorer(url, **client_kwargs)

    def reward(prompts, completions, **kwargs) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        convs = [[{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts]
        column = kwargs.get(principle_column)
        if column is None:
            return client(convs, texts, None).scores
        per_row = [[p] if isinstance(p, str) else list(p) for p in column]
        flat = [(i, p) for i, ps in enumerate(per_row) for p in ps]
        scores = client([convs[i] for i, _ in flat], [texts[i] for i, _ in flat], [p for _, p in flat]).scores
        sums, counts = [0.0] * len(texts), [0] * len(texts)
        for (i, _), s in zip(flat, scores):
            sums[i] += s
            counts[i] += 1
        return [s / c if c else math.nan for s, c in zip(sums, counts)]

    reward.__name__ = name  # TRL names the reward's metrics after it
    return reward


@contextlib.contextmanager
def serve_subprocess(kind: str, model: str | Path, max_length: int | None = None, batch_size: int = 8,
                     timeout_s: float = 300.0, param: str = "scoring service") -> Iterator[str]:
    """Serve the ``kind`` RM at ``model`` from a child process on a free local port; yields its URL (for
    ``score_url``) once ``GET /health`` answers, stops the child on exit. Fails naming ``param``."""
    if not (Path(model) / "config.json").is_file():
        raise FileNotFoundError(f"{param}: {model} is not a model folder (no config.json)")
    cmd = [sys.executable, "-m", "rlbff_lib.reward_models.serve", "--kind", kind, "--model", str(model),
           "--port", "0", "--batch-size", str(batch_size)] + (["--max-length", str(max_length)] if max_length else [])
    with child_server(cmd, param, "/health", timeout_s, stop_timeout_s=30.0) as url:
        yield url


# ------------------------------------------------------------------ command line


def replicas_for(args) -> list:
    """One in-process replica, or ``visible GPUs // gpus_per_replica`` worker processes."""
    if not args.gpus_per_replica:
        return [LocalReplica(load(args.kind, args.model, args.max_length, args.batch_size, args.device_map))]
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    n = len(ids) // args.gpus_per_replica
    if n < 1:
        raise SystemExit(f"--gpus-per-replica {args.gpus_per_replica}: only {len(ids)} GPU(s) visible")
    groups = [",".join(ids[k * args.gpus_per_replica:(k + 1) * args.gpus_per_replica]) for k in range(n)]
    device_map = args.device_map or ("auto" if args.gpus_per_replica > 1 else None)
    return [ProcessReplica(g, args.kind, args.model, args.max_length, args.batch_size, device_map) for g in groups]


async def serve(service: ScoreService, host: str, port: int, ready: Callable[[int], Any] | None = None) -> None:
    server = await service.start(host, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"serving http://{host}:{bound} {service.kind} RM {service.model_name}: {len(service.replicas)} "
          "replica(s) (POST /score, GET /health)", flush=True)  # the first line: serve_subprocess reads the URL
    if ready is not None:
        ready(bound)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlbff_lib.reward_models.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--model", required=True, help="reward model folder or hub name")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to answer other nodes")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per input (null: the model's)")
    parser.add_argument("--max-rows", type=int, default=256, help="rows per scorer call (whole requests)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    parser.add_argument("--device-map", default=None, help='"auto": spread the model over the visible GPUs')
    parser.add_argument("--gpus-per-replica", type=int, default=0, help="GPUs per replica process (0: one replica "
                        "in this process)")
    args = parser.parse_args(argv)
    service = ScoreService(replicas_for(args), args.kind, args.model, args.max_rows, args.max_wait_ms / 1000)
    try:
        asyncio.run(serve(service, args.host, args.port))
    except KeyboardInterrupt:
        pass
    finally:
        for r in service.replicas:
            r.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
