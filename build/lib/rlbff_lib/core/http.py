"""One OpenAI-compatible chat-completions client for every remote model call (httpx), and its preflight.

Retries what a retry can mend; stops the run at the first answer that none can (a refused key, a
wrong URL or model), in one line naming the service, URL, HTTP status, server message and parameter.

What is retried (exponential backoff with jitter, ``Retry-After`` honoured): 408, 409, 429, every
5xx, timeouts and dropped connections. What stops the run (:class:`EndpointError`): 401, 403, 404,
and a 400/422 that says the model does not exist. Any other status (e.g. 400 for a prompt that is
too long) fails that request only (:class:`RequestFailed`); callers count failures and
:meth:`ChatClient.check_failures` fails the run past a threshold. :func:`check_endpoint` is the
preflight: in seconds it tells whether the endpoint is reachable, serves the model (``GET /models``)
and, when asked, returns log-probabilities.

:class:`ChatClient` is asynchronous inside (one httpx.AsyncClient on an event loop in a thread of
its own) and serves both kinds of caller: coroutines run on its loop (:meth:`ChatClient.run`,
:meth:`ChatClient.acomplete`), plain code calls :meth:`ChatClient.complete` from any thread.
With a :class:`~rlbff_lib.core.cache.JsonlCache` it answers a request it has answered before from
the cache (key: model, ``tag`` and the full request), so a rerun sends only new requests. The API key
is read from the environment variable the config names, sent only in the Authorization header and
redacted from every message.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib.util
import logging
import os
import random
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rlbff_lib.core.cache import JsonlCache
from rlbff_lib.core.io import stable_hash

log = logging.getLogger("rlbff.http")

FATAL_STATUSES = (401, 403, 404)
RETRY_STATUSES = (408, 409, 429)  # and every 5xx
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_MISSING = re.compile(r"model\b.{0,120}\b(does not exist|not found|not exist|unknown|is not served)", re.I | re.S)


class RequestFailed(RuntimeError):
    """One request left unanswered: retries spent, or a status that concerns this request only."""


class EndpointError(RuntimeError):
    """The endpoint is unusable (unreachable, key refused, wrong URL or model): the run stops.
    The message is one line naming the service, its base URL, the HTTP status and the parameters."""


class TooManyFailures(RuntimeError):
    """The share of failed requests passed the threshold."""


# ---------------------------------------------------------------- configuration


@dataclass
class EndpointConfig:
    """One OpenAI-compatible endpoint and how to call it (built by the configs that name one).

    base_url: e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` and ``/models`` are appended).
    model: the served model name. api_key_env: NAME of the environment variable holding the key
    ("" for none). timeout_s: per request. max_retries: retries of a retryable failure.
    backoff_base_s, backoff_max_s: wait ``min(max, base * 2**attempt)`` times a jitter in [0.5, 1.5).
    max_retry_after_s: cap on a server's ``Retry-After``. concurrency: requests in flight at once.
    max_failure_share: share of failed requests above which :meth:`ChatClient.check_failures` raises.
    service: what messages call the endpoint (e.g. "extraction endpoint"); url_param, model_param,
    key_param: the parameters that set base_url, model and api_key_env (messages name them).
    """

    base_url: str
    model: str
    api_key_env: str = ""
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0
    concurrency: int = 8
    max_failure_share: float = 0.02
    service: str = "OpenAI-compatible endpoint"
    url_param: str = "base_url"
    model_param: str = "model"
    key_param: str = "api_key_env"

    def check(self, need_logprobs: bool = False, top_logprobs: int = 20, timeout_s: float = 10.0) -> list[str]:
        """:func:`check_endpoint` of this endpoint; returns the served model names."""
        return check_endpoint(self.base_url, self.model, self.api_key_env, need_logprobs, timeout_s,
                              top_logprobs=top_logprobs, service=self.service, url_param=self.url_param,
                              model_param=self.model_param, key_param=self.key_param)


def api_key(env_name: str, param: str = "api_key_env") -> str | None:
    """The key held by the environment variable ``env_name`` ("" → no key); errors name ``param``."""
    if not env_name:
        return None
    if not _ENV_NAME.match(env_name):  # never echo the value: a user may have pasted the key itself
        raise ValueError(f"{param}: must be the NAME of an environment variable (letters, digits, _), "
                         "not the key itself")
    key = (os.environ.get(env_name) or "").strip()
    if not key:
        raise ValueError(f"{param}: environment variable {env_name} is not set "
                         f"(set it, or set {param} to '' for a server without a key)")
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        # an HTTP library would quote such a header value in its error message
        raise ValueError(f"{param}: the value of {env_name} holds spaces or non-printable characters")
    return key


# ---------------------------------------------------------------- pieces


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), cap)


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: uniform in [0.5, 1.5) × min(cap, base × 2**attempt)."""
    return min(cap, base * 2 ** attempt) * (0.5 + random.random())


def parse_completion(body: dict) -> dict:
    """``{"content", "finish_reason", "tokens", "top_logprobs"}`` of a chat-completions body.

    With log-probabilities in the answer, ``tokens`` lists every generated token as
    ``{"token", "logprob", "top": [{"token", "logprob"}, ...]}`` (``top`` is the token alone when
    no alternatives came) and ``top_logprobs`` is the first token's ``top``; otherwise both are None.
    """
    choice = body["choices"][0]
    content = choice["message"].get("content")
    if content is not None and not isinstance(content, str):
        raise TypeError(f"message content is {type(content).__name__}, not a string")
    lp = choice.get("logprobs") or {}
    raw = lp.get("content") if isinstance(lp, dict) else None
    tokens = None
    if raw:
        tokens = []
        for t in raw:
            top = [{"token": a["token"], "logprob": float(a["logprob"])} for a in t.get("top_logprobs") or []]
            own = {"token": t["token"], "logprob": float(t["logprob"])}
            tokens.append({**own, "top": top or [own]})
    return {"content": content, "finish_reason": choice.get("finish_reason"), "tokens": tokens,
            "top_logprobs": tokens[0]["top"] if tokens else None}


def server_message(resp) -> str:
    """The server's error message of a response, on one line (the JSON ``error.message`` when there is one)."""
    text = resp.text
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or err
        if err is not None:
            text = err if isinstance(err, str) else str(err)
    return " ".join(str(text).split())[:300]


def is_fatal(status: int, message: str) -> bool:
    """An answer that no retry can mend and that every other request would get too."""
    return status in FATAL_STATUSES or (status in (400, 422) and bool(_MODEL_MISSING.search(message)))


def request_key(model: str, tag: str, payload: dict) -> str:
    """Cache key of a request: the model, the caller's ``tag`` (prompt version) and every other field."""
    return stable_hash(model, tag, {k: v for k, v in payload.items() if k != "model"})


def _record_missing_sniffio() -> None:
    """httpcore 1.0 runs ``import sniffio`` several times per request (each lock set-up); without
    the optional package every failed import rescans ``sys.path`` (``bench/extraction.py`` measures
    the cost of one). Record its absence once, so the import fails at once."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def _tls(base_url: str) -> dict:
    """httpx options for ``base_url``: plain ``http://`` never uses TLS, so the client need not load
    the certificate store (a tenth of a second of CPU per client on a small machine)."""
    return {} if base_url.lower().startswith("https://") else {"verify": False}


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _fatal_message(service: str, base_url: str, status: int, message: str, url_param: str, model_param: str,
                   model: str, key_param: str, api_key_env: str) -> str:
    if status in (401, 403):
        hint = (f"the key in ${api_key_env} was refused: check that variable ({key_param})" if api_key_env else
                f"the server wants a key: set {key_param} to the NAME of the variable holding it")
    else:
        hint = f"check {url_param} (it should end in /v1) and {model_param}={model!r}"
    return f"{service}: HTTP {status} from {base_url} ({message}): {hint}"


# ---------------------------------------------------------------- the client


@dataclass
class CallStats:
    """Counters of one client: completions asked (``calls``, cache hits excluded), HTTP requests
    sent (``requests``, retries included), ``retries``, ``failed`` calls, ``cache_hits``."""

    calls: int = 0
    requests: int = 0
    retries: int = 0
    failed: int = 0
    cache_hits: int = 0
    last_failure: str = ""


class ChatClient:
    """Chat completions against one :class:`EndpointConfig` (see the module docstring).

    cache: answers of earlier identical requests (rows ``{"key", "model", "tag", "answer"}``);
    None asks every time. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, cfg: EndpointConfig, cache: JsonlCache | None = None):
        _record_missing_sniffio()
        import httpx

        self.cfg, self.cache, self.stats = cfg, cache, CallStats()
        self._key = api_key(cfg.api_key_env, cfg.key_param)
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._httpx = httpx
        self._fatal: EndpointError | None = None
        self._client = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.cfg.model

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced by ``***`` (a server may echo it back)."""
        return _redact(text, self._key)

    # -- the event loop of the client
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="rlbff-http", daemon=True)
                self._thread.start()
        return self._loop

    def run(self, coro):
        """Run ``coro`` on the client's event loop and return its result; callable from any thread,
        also from inside a running event loop (Jupyter). Coroutines that call :meth:`acomplete` run here."""
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            raise RuntimeError("ChatClient.run called from the client's own event loop: await the coroutine")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self._loop is None:
            return
        if self._client is not None:
            self.run(self._client.aclose())
            self._client = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def _async_client(self):
        if self._client is None:  # created on the loop's thread, used only there
            httpx, c = self._httpx, self.cfg
            headers = {"Content-Type": "application/json"}
            if self._key:
                headers["Authorization"] = f"Bearer {self._key}"
            self._client = httpx.AsyncClient(
                headers=headers, timeout=httpx.Timeout(c.timeout_s), **_tls(c.base_url),
                limits=httpx.Limits(max_connections=c.concurrency, max_keepalive_connections=c.concurrency))
        return self._client

    # -- completions
    async def acomplete(self, messages: Sequence[dict], max_tokens: int = 1024, temperature: float = 0.0,
                        top_logprobs: int | None = None, tag: str = "", extra: dict | None = None) -> dict:
        """One completion (see :func:`parse_completion`); on the client's loop (:meth:`run`).

        ``top_logprobs``: alternatives asked per token (None: no log-probabilities). ``tag``: the
        caller's prompt version, part of the cache key. ``extra``: other request fields (e.g.
        ``top_p``, ``seed``, vLLM's ``top_k`` and ``chat_template_kwargs``), part of the cache key.
        Raises :class:`RequestFailed` (counted) or :class:`EndpointError` (and every later call
        raises it too, without sending).
        """
        payload: dict[str, Any] = {"model": self.cfg.model, "messages": list(messages), "max_tokens": max_tokens,
                                   "temperature": temperature, **(extra or {})}
        if top_logprobs:
            payload.update(logprobs=True, top_logprobs=top_logprobs)
        key = request_key(self.cfg.model, tag, payload) if self.cache is not None else None
        hit = self.cache.get(key) if key is not None else None
        if hit is not None:
            self.stats.cache_hits += 1
            return hit["answer"]
        self.stats.calls += 1
        try:
            answer = await self._post(payload)
        except RequestFailed as e:
            self.stats.failed += 1
            self.stats.last_failure = str(e)
            raise
        if key is not None:
            row = {"key": key, "model": self.cfg.model, "tag": tag, "time": round(time.time(), 3), "answer": answer}
            await asyncio.to_thread(self.cache.put, row)
        return answer

    def complete(self, messages: Sequence[dict], max_tokens: int = 1024, temperature: float = 0.0,
                 top_logprobs: int | None = None, tag: str = "", extra: dict | None = None) -> dict:
        """:meth:`acomplete` from plain (threaded) code."""
        return self.run(self.acomplete(messages, max_tokens, temperature, top_logprobs, tag, extra))

    async def _post(self, payload: dict) -> dict:
        httpx, c = self._httpx, self.cfg
        client = self._async_client()
        reason = "no attempt"
        for attempt in range(c.max_retries + 1):
            if self._fatal is not None:
                raise self._fatal
            if attempt:
                self.stats.retries += 1
            self.stats.requests += 1
            delay = None
            try:
                resp = await client.post(self.url, json=payload)
            except httpx.TimeoutException as e:
                reason = f"timeout ({type(e).__name__})"
            except httpx.TransportError as e:
                reason = f"connection error ({type(e).__name__}: {self.redact(str(e))[:200]})"
            else:
                if resp.status_code == 200:
                    try:
                        return parse_completion(resp.json())
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                        reason = f"malformed response body ({self.redact(str(e))[:200]})"
                else:
                    message = self.redact(server_message(resp))
                    reason = f"HTTP {resp.status_code}: {message}"
                    if is_fatal(resp.status_code, message):
                        self._fatal = EndpointError(_fatal_message(
                            c.service, c.base_url, resp.status_code, message, c.url_param, c.model_param, c.model,
                            c.key_param, c.api_key_env))
                        raise self._fatal
                    if resp.status_code not in RETRY_STATUSES and resp.status_code < 500:
                        raise RequestFailed(reason)
                    delay = retry_after_seconds(resp.headers.get("retry-after"), c.max_retry_after_s)
            if attempt == c.max_retries:
                break
            delay = backoff_seconds(attempt, c.backoff_base_s, c.backoff_max_s) if delay is None else delay
            log.info("request failed (%s); retry %d/%d in %.2fs", reason, attempt + 1, c.max_retries, delay)
            await asyncio.sleep(delay)
        raise RequestFailed(f"{reason} (after {c.max_retries + 1} attempts)")

    # -- many calls
    def map(self, fn: Callable[[Any], Any], items: Sequence) -> list:
        """``fn(item)`` for every item (``fn`` calls :meth:`complete`), ``concurrency`` at a time,
        results in order; then :meth:`check_failures`. An :class:`EndpointError` cancels what is
        left and propagates."""
        items = list(items)
        if self.cfg.concurrency == 1 or len(items) <= 1:
            out = [fn(x) for x in items]
        else:
            pool = ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(items)))
            try:
                out = list(pool.map(fn, items))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        self.check_failures()
        return out

    def check_failures(self, max_share: float | None = None) -> None:
        """Raise :class:`TooManyFailures` when more than ``max_share`` (default: the config's) of
        the calls so far failed."""
        share = self.cfg.max_failure_share if max_share is None else max_share
        s = self.stats
        if s.failed and s.failed > share * s.calls:
            raise TooManyFailures(f"{self.cfg.service} ({self.cfg.url_param}={self.cfg.base_url}): {s.failed} of "
                                  f"{s.calls} requests failed ({s.failed / s.calls:.1%}, above {share:.1%}); "
                                  f"last: {s.last_failure[:300]}")


# ---------------------------------------------------------------- preflight


def check_endpoint(base_url: str, model: str, api_key_env: str = "", need_logprobs: bool = False,
                   timeout: float = 10.0, *, top_logprobs: int = 20, service: str = "OpenAI-compatible endpoint",
                   url_param: str = "base_url", model_param: str = "model", key_param: str = "api_key_env") -> list[str]:
    """Preflight of an endpoint before any work; returns the served model names.

    Raises :class:`EndpointError` (one line naming ``service`` and the parameter to fix) when the
    endpoint is unreachable within ``timeout`` seconds, refuses the key, does not list ``model`` in
    ``GET {base_url}/models``, or, with ``need_logprobs``, answers a one-token request asking
    ``top_logprobs`` alternatives without log-probabilities; :class:`ValueError` naming
    ``key_param`` when the key's variable is not set.
    """
    _record_missing_sniffio()
    import httpx

    key = api_key(api_key_env, key_param)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    base = base_url.rstrip("/")
    where = f"{service} ({url_param}={base_url})"

    def fail(status: int, resp) -> EndpointError:
        message = _redact(server_message(resp), key)
        if is_fatal(status, message):
            return EndpointError(_fatal_message(service, base_url, status, message, url_param, model_param, model,
                                                key_param, api_key_env))
        return EndpointError(f"{where}: HTTP {status} ({message})")

    with httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), **_tls(base_url)) as client:
        try:
            resp = client.get(base + "/models")
        except httpx.HTTPError as e:
            raise EndpointError(f"{where} unreachable ({type(e).__name__}: {_redact(str(e), key)[:200]}): "
                                f"start the server or fix {url_param}") from None
        if resp.status_code != 200:
            raise fail(resp.status_code, resp)
        try:
            served = [m["id"] for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise EndpointError(f"{where}: GET /models did not answer an OpenAI model list: is {url_param} an "
                                "OpenAI-compatible server (ending in /v1)?") from None
        if model not in served:
            raise EndpointError(f"{where} does not serve {model!r} ({model_param}); it serves: "
                                f"{', '.join(map(repr, served[:10])) or 'nothing'}")
        if need_logprobs:
            payload = {"model": model, "messages": [{"role": "user", "content": "Answer Yes or No: is 2 even?"}],
                       "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": top_logprobs}
            try:
                resp = client.post(base + "/chat/completions", json=payload)
            except httpx.HTTPError as e:
                raise EndpointError(f"{where}: the log-probability probe failed ({type(e).__name__})") from None
            if resp.status_code != 200:
                raise EndpointError(f"{where}: HTTP {resp.status_code} to a request asking top_logprobs="
                                    f"{top_logprobs} ({_redact(server_message(resp), key)}): the server must allow "
                                    f"that many (vLLM: --max-logprobs)")
            try:
                tokens = parse_completion(resp.json())["tokens"]
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                tokens = None
            if not tokens:
                raise EndpointError(f"{where} returned no log-probabilities for {model!r} (asked top_logprobs="
                                    f"{top_logprobs}); the judge reads them: serve a model that returns them")
    return served
