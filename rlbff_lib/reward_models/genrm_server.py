"""The project's own OpenAI-compatible server for a trained GenRM: real log-probabilities, vLLM's answer format.

It stands in for ``vllm serve`` where there is no GPU (the rehearsal profile, tests): the alignment
stage's ``judge`` reward talks to it exactly as to vLLM. Endpoints::

    GET  /v1/models                 {"object": "list", "data": [{"id": NAME, "object": "model", ...}]}
    POST /v1/chat/completions       messages, max_tokens, temperature, top_p, seed, logprobs, top_logprobs,
                                    chat_template_kwargs -> one choice: message.content, finish_reason
                                    ("stop" | "length"), logprobs.content = one entry per generated token
                                    {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}

Answers as vLLM's engine does for the GenRM: the prompt is the model folder's own chat template
(which carries the GenRM's pinned thinking mode and ``principle`` role, see
:func:`rlbff_lib.reward_models.genrm.prepare_tokenizer`); the generated token ids include the
end-of-sequence token when generation stopped there (its entry is the last of ``logprobs.content``),
and log-probabilities are the model's raw ones (temperature 1, vLLM's default ``--logprobs-mode
raw_logprobs``) whatever the sampling temperature. ``temperature`` 0 is greedy decoding. Requests
are answered one at a time (one model on CPU).

The real judge at paper scale (same chat template, same thinking setting: both are in the folder)::

    vllm serve models/reward_models/genrm --served-model-name genrm --port 8001 \\
        --max-logprobs 20 --logprobs-mode raw_logprobs --tensor-parallel-size 8

Command line of this server (the first stdout line is ``serving http://HOST:PORT/v1 model NAME``)::

    python -m rlbff_lib.reward_models.genrm_server --model models/reward_models/genrm --name genrm --port 8001
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from rlbff_lib.core.child import child_server

MAX_TOP_LOGPROBS = 20  # vLLM's default --max-logprobs


class RequestError(ValueError):
    """A request the server refuses (HTTP 400 with an OpenAI-style error body)."""


class GenRMService:
    """A causal LM and its tokenizer answering chat-completion requests (see the module docstring)."""

    def __init__(self, model_dir: str | Path, name: str, max_tokens_cap: int = 4096):
        from rlbff_lib.models.lm import load_causal_lm
        from rlbff_lib.models.tokenizer import load_tokenizer

        self.name, self.model_dir, self.max_tokens_cap = name, str(model_dir), max_tokens_cap
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_causal_lm(model_dir).eval()
        gen_eos = self.model.generation_config.eos_token_id
        self.stops = sorted({self.tokenizer.eos_token_id,
                             *([] if gen_eos is None else [gen_eos] if isinstance(gen_eos, int) else gen_eos)})
        self.lock = threading.Lock()
        self.created = int(time.time())

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                            "owned_by": "rlbff", "root": self.model_dir,
                                            "max_model_len": self.model.config.max_position_embeddings}]}

    def _token(self, token_id: int) -> dict:
        text = self.tokenizer.decode([token_id], skip_special_tokens=False)
        return {"token": text, "bytes": list(text.encode("utf-8"))}

    def complete(self, body: dict) -> dict:
        """One chat completion for a request body (raises :class:`RequestError` on a bad request)."""
        import torch

        if body.get("model") not in (None, self.name):
            raise RequestError(f"The model `{body.get('model')}` does not exist.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("messages: a non-empty list of chat messages is required")
        if (body.get("n") or 1) != 1:
            raise RequestError("n: only n=1 is served")
        want_logprobs = bool(body.get("logprobs"))
        top_k = int(body.get("top_logprobs") or 0) if want_logprobs else 0
        if top_k > MAX_TOP_LOGPROBS:
            raise RequestError(f"top_logprobs: at most {MAX_TOP_LOGPROBS}, got {top_k}")
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
        max_tokens = max(1, min(max_tokens, self.max_tokens_cap))
        temperature = float(1.0 if body.get("temperature") is None else body["temperature"])
        top_p = float(1.0 if body.get("top_p") is None else body["top_p"])
        kwargs = dict(body.get("chat_template_kwargs") or {})
        try:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
        except Exception as e:  # a template that refuses the messages
            raise RequestError(f"messages: the chat template refused them ({type(e).__name__}: {e})") from None
        prompt = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = self.model.config.max_position_embeddings
        if len(prompt) + max_tokens > limit:
            raise RequestError(f"This model's maximum context length is {limit} tokens. However, you requested "
                               f"{len(prompt) + max_tokens} tokens ({len(prompt)} in the messages, {max_tokens} in "
                               "the completion).")
        gen = torch.Generator().manual_seed(int(body.get("seed") or 0))
        ids, entries, finish = list(prompt), [], "length"
        with self.lock, torch.inference_mode():
            past = None
            step_input = torch.tensor([ids])
            for _ in range(max_tokens):
                out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logprobs = out.logits[0, -1].float().log_softmax(-1)  # raw: temperature 1
                if temperature <= 0:
                    token = int(logprobs.argmax())
                else:
                    probs = (logprobs / temperature).softmax(-1)
                    if top_p < 1.0:
                        sorted_p, order = probs.sort(descending=True)
                        keep = sorted_p.cumsum(-1) - sorted_p < top_p
                        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
                    token = int(torch.multinomial(probs / probs.sum(), 1, generator=gen))
                if want_logprobs:
                    values, indices = logprobs.topk(top_k) if top_k else (logprobs[:0], logprobs[:0].long())
                    entries.append({**self._token(token), "logprob": float(logprobs[token]),
                                    "top_logprobs": [{**self._token(int(i)), "logprob": float(v)}
                                                     for v, i in zip(values.tolist(), indices.tolist())]})
                ids.append(token)
                if token in self.stops:
                    finish = "stop"
                    break
                step_input = torch.tensor([[token]])
        completion = ids[len(prompt):]
        content = self.tokenizer.decode([t for t in completion if t not in self.stops], skip_special_tokens=True)
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish,
                  "logprobs": {"content": entries} if want_logprobs else None}
        return {"id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name, "choices": [choice],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(completion),
                          "total_tokens": len(prompt) + len(completion)}}


def make_handler(service: GenRMService):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: the stage's log is the client's
            pass

        def _send(self, status: int, obj: dict):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str):
            self._send(status, {"object": "error", "message": message, "type": kind, "code": status})

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, service.models())
            elif self.path.rstrip("/") in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route {self.path}", "NotFoundError")

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"no route {self.path}", "NotFoundError")
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                self._send(200, service.complete(body))
            except RequestError as e:
                status = 404 if "does not exist" in str(e) else 400
                self._error(status, str(e), "NotFoundError" if status == 404 else "BadRequestError")
            except (ValueError, TypeError) as e:
                self._error(400, f"bad request: {e}", "BadRequestError")

    return Handler


def make_server(model_dir: str | Path, name: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for the GenRM in ``model_dir``; ``port`` 0 takes a free one."""
    server = ThreadingHTTPServer((host, port), make_handler(GenRMService(model_dir, name)))
    server.daemon_threads = True
    return server


@contextmanager
def serve_subprocess(model_dir: str | Path, name: str = "genrm", timeout_s: float = 120.0,
                     param: str = "judge server") -> Iterator[str]:
    """Serve ``model_dir`` from a child process on a free local port; yields the base URL (``.../v1``)
    once ``GET /v1/models`` answers, stops the child on exit. Fails within ``timeout_s`` naming ``param``."""
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{param}: {model_dir} is not a model folder (no config.json); train the GenRM first")
    cmd = [sys.executable, "-m", "rlbff_lib.reward_models.genrm_server", "--model", str(model_dir), "--name", name,
           "--port", "0"]
    with child_server(cmd, f"{param} (the GenRM server)", "/models", timeout_s) as base_url:
        yield base_url


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlbff_lib.reward_models.genrm_server",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a trained GenRM folder (safetensors + tokenizer)")
    ap.add_argument("--name", default="genrm", help="the served model name (the client's `model`)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001, help="0: a free port (printed on the first line)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    server = make_server(args.model, args.name, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving http://{host}:{port}/v1 model {args.name}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
