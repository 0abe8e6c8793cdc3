"""The one OpenAI-compatible client (rlbff_lib.core.http): what is retried and what stops the run,
Retry-After, the preflight (closed port, wrong model, no logprobs, refused key), the request cache,
calls from plain threads and from inside a running event loop. Every request goes to 127.0.0.1."""
import asyncio
import socket
import time

import pytest

from fakes.openai_server import FakeOpenAI
from rlbff_lib.core.cache import JsonlCache
from rlbff_lib.core.http import (ChatClient, EndpointConfig, EndpointError, RequestFailed, check_endpoint, is_fatal,
                                 retry_after_seconds)

KEY_VAR = "RLBFF_TEST_HTTP_KEY"
SECRET = "sk-http-PLANTED-9b1e"


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_VAR, SECRET)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def _cfg(server, **over) -> EndpointConfig:
    values = dict(base_url=server.base_url, model="fake-model", api_key_env=KEY_VAR, timeout_s=5.0, max_retries=3,
                  backoff_base_s=0.01, backoff_max_s=0.05, concurrency=4, service="test endpoint",
                  url_param="t.base_url", model_param="t.model", key_param="t.api_key_env")
    values.update(over)
    return EndpointConfig(**values)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _msg(text: str) -> list[dict]:
    return [{"role": "user", "content": f"Feedback:\n{text}"}]


def test_retry_after_forms():
    assert retry_after_seconds("2", cap=60) == 2.0
    assert retry_after_seconds("999", cap=60) == 60
    assert retry_after_seconds(None, cap=60) is None
    assert retry_after_seconds("soon", cap=60) is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds(http_date, cap=60) <= 31


def test_which_statuses_stop_the_run():
    assert all(is_fatal(s, "") for s in (401, 403, 404))
    assert is_fatal(400, "The model `gpt-5` does not exist.") and is_fatal(422, "model 'x' not found")
    assert not any(is_fatal(s, "context length exceeded") for s in (400, 408, 413, 422, 429, 500, 503))


def test_retryable_failures_are_retried_and_a_per_request_failure_is_not():
    scripts = {"a": ["429", "ok"], "b": ["500", "drop", "ok"], "c": ["400"], "d": ["500"] * 9}
    with FakeOpenAI(scripts, retry_after="1") as server, ChatClient(_cfg(server)) as client:
        out = client.complete(_msg("a"))
        assert out["content"] and out["finish_reason"] == "stop" and out["tokens"] is None
        gap = server.times_of("a")
        assert gap[1] - gap[0] >= 0.95  # Retry-After honoured over a 10 ms backoff
        client.complete(_msg("b"))
        with pytest.raises(RequestFailed, match=r"^HTTP 400: This model's maximum context"):
            client.complete(_msg("c"))
        with pytest.raises(RequestFailed, match=r"HTTP 500: internal error \(after 4 attempts\)"):
            client.complete(_msg("d"))
        assert server.per_text == {"a": 2, "b": 3, "c": 1, "d": 4}
        s = client.stats
        assert (s.calls, s.requests, s.retries, s.failed) == (4, 10, 1 + 2 + 3, 2)
        client.complete(_msg("e"))  # a per-request failure leaves the client usable


@pytest.mark.parametrize("status", ["401", "403", "404"])
def test_a_fatal_status_stops_every_later_call_without_sending(status):
    with FakeOpenAI({"x": [status]}) as server, ChatClient(_cfg(server)) as client:
        with pytest.raises(EndpointError) as err:
            client.complete(_msg("x"))
        message = str(err.value)
        assert message.startswith(f"test endpoint: HTTP {status} from {server.base_url} (scripted {status}): ")
        assert ("t.api_key_env" if status != "404" else "t.base_url") in message and "\n" not in message
        with pytest.raises(EndpointError):
            client.complete(_msg("y"))
        with pytest.raises(EndpointError):
            client.map(lambda t: client.complete(_msg(t)), [f"z{i}" for i in range(20)])
        assert server.requests == 1


def test_a_wrong_model_during_the_run_is_fatal_like_vllm_answers_it():
    with FakeOpenAI(models=("served",)) as server, ChatClient(_cfg(server, model="typo")) as client:
        with pytest.raises(EndpointError, match=r"HTTP 404 .*The model `typo` does not exist.*t.model='typo'"):
            client.complete(_msg("x"))


def test_preflight_closed_port_wrong_model_refused_key_and_logprobs():
    port = _closed_port()
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match=rf"^svc \(u=http://127.0.0.1:{port}/v1\) unreachable .*: start the "
                                            r"server or fix u$"):
        check_endpoint(f"http://127.0.0.1:{port}/v1", "m", service="svc", url_param="u")
    assert time.monotonic() - t0 < 5
    with FakeOpenAI(models=("a", "b")) as server:
        assert _cfg(server, model="b").check() == ["a", "b"]
        with pytest.raises(EndpointError, match=r"does not serve 'fake-model' \(t.model\); it serves: 'a', 'b'"):
            _cfg(server).check()
        assert _cfg(server, model="a").check(need_logprobs=True, top_logprobs=5) == ["a", "b"]
        assert server.requests == 1  # the logprobs probe
    with FakeOpenAI(logprobs=False) as server:
        with pytest.raises(EndpointError, match="returned no log-probabilities for 'fake-model'"):
            _cfg(server).check(need_logprobs=True)
    with FakeOpenAI(api_key="sk-other") as server:
        with pytest.raises(EndpointError) as err:
            _cfg(server).check()
        assert f"HTTP 401 from {server.base_url} (invalid api key)" in str(err.value)
        assert f"${KEY_VAR}" in str(err.value) and "t.api_key_env" in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(ValueError, match="^t.api_key_env: environment variable RLBFF_UNSET_VAR_X is not set"):
        check_endpoint("http://127.0.0.1:1/v1", "m", "RLBFF_UNSET_VAR_X", key_param="t.api_key_env")
    with pytest.raises(ValueError, match="^t.api_key_env: must be the NAME") as err:
        ChatClient(EndpointConfig("http://127.0.0.1:1/v1", "m", SECRET, key_param="t.api_key_env"))
    assert SECRET not in str(err.value)


def test_logprobs_are_parsed_per_token():
    with FakeOpenAI(reply=lambda p: "Yes") as server, ChatClient(_cfg(server)) as client:
        out = client.complete(_msg("q"), max_tokens=3, top_logprobs=3)
        assert [t["token"] for t in out["tokens"]] == ["Y", "e", "s"]
        assert out["top_logprobs"] == [{"token": "Y", "logprob": -0.1}, {"token": "<alt0>", "logprob": -5.0},
                                       {"token": "<alt1>", "logprob": -6.0}]
        assert server.calls[0]["payload"]["top_logprobs"] == 3 and server.calls[0]["payload"]["logprobs"] is True
        assert server.calls[0]["authorization"] == f"Bearer {SECRET}"


def test_request_cache_keys_on_model_tag_and_request(tmp_path):
    path = tmp_path / "cache.jsonl"
    with FakeOpenAI(models=("m1", "m2")) as server:
        cache = JsonlCache(path, valid=lambda r: isinstance(r.get("answer"), dict))
        with ChatClient(_cfg(server, model="m1"), cache) as c1, ChatClient(_cfg(server, model="m2"), cache) as c2:
            a = c1.complete(_msg("x"), tag="v1")
            assert c1.complete(_msg("x"), tag="v1") == a and server.requests == 1
            c1.complete(_msg("x"), tag="v2")
            c1.complete(_msg("x"), tag="v1", max_tokens=7)
            c2.complete(_msg("x"), tag="v1")
            assert server.requests == 4 and c1.stats.cache_hits == 1
        reread = JsonlCache(path, valid=lambda r: isinstance(r.get("answer"), dict))
        assert len(reread) == 4
        with ChatClient(_cfg(server, model="m1"), reread) as c1:
            assert c1.complete(_msg("x"), tag="v1") == a and server.requests == 4


def test_map_from_threads_and_run_from_inside_a_running_event_loop():
    with FakeOpenAI(latency_s=0.2) as server, ChatClient(_cfg(server, concurrency=4)) as client:
        t0 = time.monotonic()
        outs = client.map(lambda t: client.complete(_msg(t))["content"], [f"t{i}" for i in range(8)])
        assert len(outs) == 8 and time.monotonic() - t0 < 0.2 * 8 * 0.6  # concurrent, not one by one

        async def notebook_cell():  # e.g. Jupyter: a loop is already running in this thread
            return client.complete(_msg("from a notebook"))["content"]

        assert asyncio.run(notebook_cell())

        async def two():
            return await asyncio.gather(client.acomplete(_msg("p")), client.acomplete(_msg("q")))

        assert len(client.run(two())) == 2
