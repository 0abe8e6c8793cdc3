"""A local OpenAI-compatible chat-completions server that misbehaves on purpose.

It listens on 127.0.0.1 only, in a daemon thread. Each feedback text (the part of the
first user message after ``"Feedback:\\n"``) has a script: the behaviour of its 1st,
2nd, ... request; once the script is used up, requests are answered well. So the
misbehaviour is deterministic per text whatever the order in which concurrent
requests arrive.

Behaviours: ``ok`` (a valid JSON list), ``fenced`` (the same inside a ```json fence),
``429`` (with ``Retry-After``), ``500``, ``500leak`` (a 500 whose body echoes the
Authorization header, to test redaction), ``400`` (this request only: context too long),
``401``, ``403``, ``404``, ``slow`` (sleeps ``slow_s`` then answers), ``drop`` (closes the
connection without answering), ``badbody`` (a 200 whose body is not JSON), ``malformed``,
``truncated`` (cut JSON, finish_reason ``length``), ``empty`` (empty content), ``badschema``
(valid JSON, wrong fulfillment value).

Like vLLM it lists its ``models`` at ``GET /v1/models`` and answers 404 to a completion for any
other model; with ``api_key`` set, a request without that bearer key gets 401; a request asking
``logprobs`` gets one entry per answer character (with ``top_logprobs`` alternatives) unless
``logprobs=False``. ``reply(payload)``, when given, writes the content of ``ok`` answers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def good_answer(feedback: str) -> list[dict]:
    """The deterministic answer for a feedback text: its first sentence judges correctness."""
    first = feedback.split(". ")[0].strip()
    return [{"evidence": first, "principle": "correctness", "fulfillment": "Yes"}]


def feedback_of(payload: dict) -> str:
    content = payload["messages"][0]["content"]
    return content.rsplit("Feedback:\n", 1)[-1].rstrip("\n")


class FakeOpenAI:
    """Start with ``with FakeOpenAI(scripts) as server:``; ``server.base_url`` ends in ``/v1``."""

    def __init__(self, scripts: dict[str, list[str]] | None = None, slow_s: float = 1.0,
                 retry_after: str = "1", latency_s: float = 0.0, models: tuple[str, ...] = ("fake-model",),
                 api_key: str | None = None, logprobs: bool = True, reply=None):
        self.scripts = dict(scripts or {})
        self.slow_s, self.retry_after, self.latency_s = slow_s, retry_after, latency_s
        self.models, self.api_key, self.logprobs, self.reply = list(models), api_key, logprobs, reply
        self.calls: list[dict] = []  # one per completion request: time, feedback, behaviour, authorization, payload
        self.model_lists = 0  # GET /v1/models requests
        self.per_text: Counter = Counter()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def requests(self) -> int:
        with self.lock:
            return len(self.calls)

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_behaviour(self, feedback: str, authorization: str | None, payload: dict | None = None) -> str:
        with self.lock:
            n = self.per_text[feedback]
            self.per_text[feedback] += 1
            script = self.scripts.get(feedback, [])
            behaviour = script[n] if n < len(script) else "ok"
            self.calls.append({"time": time.monotonic(), "feedback": feedback, "behaviour": behaviour,
                               "authorization": authorization, "payload": payload})
        return behaviour

    def authorized(self, authorization: str | None) -> bool:
        return self.api_key is None or authorization == f"Bearer {self.api_key}"

    def times_of(self, feedback: str) -> list[float]:
        with self.lock:
            return [c["time"] for c in self.calls if c["feedback"] == feedback]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if not self.path.endswith("/models"):
                    return self._send(404, {"error": "not found"})
                with server.lock:
                    server.model_lists += 1
                if not server.authorized(self.headers.get("Authorization")):
                    return self._send(401, {"error": {"message": "invalid api key"}})
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": "not found"})
                payload = json.loads(body)
                feedback = feedback_of(payload)
                behaviour = server.next_behaviour(feedback, self.headers.get("Authorization"), payload)
                if server.latency_s:
                    time.sleep(server.latency_s)
                if not server.authorized(self.headers.get("Authorization")):
                    return self._send(401, {"error": {"message": "invalid api key"}})
                if payload.get("model") not in server.models:
                    return self._send(404, {"error": {"message": f"The model `{payload.get('model')}` does not exist.",
                                                      "type": "NotFoundError", "code": 404}})
                self._act(behaviour, payload, feedback)

            def _act(self, behaviour: str, payload: dict, feedback: str) -> None:
                answer = server.reply(payload) if server.reply else json.dumps(good_answer(feedback))
                if behaviour == "ok":
                    return self._complete(payload, answer)
                if behaviour == "fenced":
                    return self._complete(payload, f"```json\n{answer}\n```")
                if behaviour == "429":
                    return self._send(429, {"error": {"message": "rate limited"}},
                                      {"Retry-After": server.retry_after})
                if behaviour == "500":
                    return self._send(500, {"error": {"message": "internal error"}})
                if behaviour == "500leak":
                    return self._send(500, {"error": f"bad auth {self.headers.get('Authorization')}"})
                if behaviour == "400":
                    return self._send(400, {"error": {"message": "This model's maximum context length is 8192 "
                                                                 "tokens; your request has 9000."}})
                if behaviour in ("401", "403", "404"):
                    return self._send(int(behaviour), {"error": {"message": f"scripted {behaviour}"}})
                if behaviour == "slow":
                    time.sleep(server.slow_s)
                    return self._complete(payload, answer)
                if behaviour == "drop":
                    self.close_connection = True
                    self.request.shutdown(socket.SHUT_RDWR)
                    return None
                if behaviour == "badbody":
                    return self._send_raw(200, b"<html>gateway says hi</html>")
                if behaviour == "malformed":
                    return self._complete(payload, "Sure! Here are the principles: [oops")
                if behaviour == "truncated":
                    return self._complete(payload, answer[: len(answer) // 2], finish_reason="length")
                if behaviour == "empty":
                    return self._complete(payload, "")
                if behaviour == "badschema":
                    return self._complete(payload, json.dumps([{"evidence": "x", "principle": "p",
                                                                "fulfillment": "Maybe"}]))
                raise ValueError(f"unknown behaviour {behaviour!r}")

            def _complete(self, payload: dict, content: str, finish_reason: str = "stop") -> None:
                choice = {"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}
                if payload.get("logprobs") and server.logprobs:
                    n = max(1, int(payload.get("top_logprobs") or 1))
                    chars = list(content[: payload.get("max_tokens") or len(content)]) or [""]
                    choice["logprobs"] = {"content": [
                        {"token": c, "logprob": -0.1, "top_logprobs": [{"token": c, "logprob": -0.1}] +
                         [{"token": f"<alt{k}>", "logprob": -5.0 - k} for k in range(n - 1)]} for c in chars]}
                self._send(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": payload.get("model"),
                                 "choices": [choice],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
                self._send_raw(status, json.dumps(obj).encode(), headers)

            def _send_raw(self, status: int, data: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout)

        return Handler
