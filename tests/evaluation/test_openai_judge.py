"""The MT-Bench / Arena-Hard judges behind an OpenAI-compatible endpoint, against a counting fake
judge: answers cached (a rerun asks nothing, a changed prompt or answer asks exactly the new
requests), failures counted and fatal statuses stopping the run, the preflight."""
import json

import pytest

from fakes.openai_server import FakeOpenAI
from rlbff_lib.core.http import EndpointError, TooManyFailures
from rlbff_lib.evaluation.policy_bench import PairItem, PolicyEvalConfig, SingleItem, make_judges, parse_rating

KEY_VAR = "RLBFF_TEST_JUDGE_KEY"


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_VAR, "sk-judge-secret")


def _cfg(server: FakeOpenAI, **over) -> PolicyEvalConfig:
    values = dict(judge="openai", judge_base_url=server.base_url, mtbench_judge_model="gpt-4",
                  arena_judge_model="gpt-4.1", judge_api_key_env=KEY_VAR, judge_concurrency=3)
    return PolicyEvalConfig(**{**values, **over})


def _reply(payload: dict) -> str:
    user = payload["messages"][-1]["content"]
    return "[[A=B]]" if "Assistant A" in user else f"Rating: [[{len(user) % 9 + 1}]]"


def _single(answers: list[str], prompt: str = "single-v1") -> list[SingleItem]:
    return [SingleItem(i, "writing", 1, prompt, "", f"[Question] Q{i}? [The Start of Assistant's Answer] {a}", [], a)
            for i, a in enumerate(answers)]


def _pairs(n: int) -> list[PairItem]:
    return [PairItem(f"u{i}", "hard_prompt", g, "", f"Assistant A: base {i}. Assistant B: ours {i} game {g}",
                     f"Q{i}", "a", "b") for i in range(n) for g in (0, 1)]


def test_rerun_asks_no_judge_and_a_change_asks_exactly_the_new_requests(tmp_path):
    cache = tmp_path / "judge_cache.jsonl"
    answers = [f"Answer number {i}." for i in range(5)]
    with FakeOpenAI(models=("gpt-4", "gpt-4.1"), reply=_reply) as server:
        mt, arena = make_judges(_cfg(server), cache_path=cache)
        first = mt.judge_single(_single(answers)), arena.judge_pair(_pairs(2))
        assert server.requests == 5 + 4
        assert [parse_rating(t) for t in first[0]] == [len(it.user) % 9 + 1 for it in _single(answers)]
        models = [c["payload"]["model"] for c in server.calls]
        assert models.count("gpt-4") == 5 and models.count("gpt-4.1") == 4
        lines = cache.read_text().splitlines()
        assert len(lines) == 9 and "sk-judge-secret" not in cache.read_text()

        # a rerun (new judges reading the file): nothing is sent, the judgments are the same
        mt, arena = make_judges(_cfg(server), cache_path=cache)
        again = mt.judge_single(_single(answers)), arena.judge_pair(_pairs(2))
        assert server.requests == 9 and again == first
        assert mt.endpoint.stats.cache_hits == 5 and arena.endpoint.stats.cache_hits == 4

        # one answer changed, one prompt version changed: exactly two new requests
        changed = list(answers)
        changed[3] = "A different answer."
        mt.judge_single(_single(changed))
        assert server.requests == 10
        mt.judge_single(_single(answers[:1], prompt="single-v1-multi-turn"))  # same messages, other prompt version
        assert server.requests == 11
        # another judge model on the same requests is asked anew
        mt4o, _ = make_judges(_cfg(server, mtbench_judge_model="gpt-4.1"), cache_path=cache)
        mt4o.judge_single(_single(answers[:2]))
        assert server.requests == 13
        # append-only: the first lines are untouched
        assert cache.read_text().splitlines()[:9] == lines and len(cache.read_text().splitlines()) == 13

        # a line cut by a crash is skipped and its request asked again
        data = cache.read_bytes()
        cache.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 20])
        mt, _ = make_judges(_cfg(server, mtbench_judge_model="gpt-4.1"), cache_path=cache)
        assert mt.endpoint.cache.corrupt_count == 1
        mt.judge_single(_single(answers[:2]))
        assert server.requests == 14
    for line in cache.read_text().splitlines()[:-2]:
        json.loads(line)


def test_failed_judge_calls_are_counted_and_fail_the_run_past_the_threshold(tmp_path):
    answers = [f"Answer {i}." for i in range(4)]
    items = _single(answers)
    with FakeOpenAI({items[1].user: ["400"]}, models=("gpt-4", "gpt-4.1"), reply=_reply) as server:
        mt, _ = make_judges(_cfg(server), cache_path=tmp_path / "c.jsonl")
        with pytest.raises(TooManyFailures, match=r"MT-Bench judge endpoint .* 1 of 4 requests failed .*HTTP 400"):
            mt.judge_single(items)
        assert mt.endpoint.stats.failed == 1 and server.requests == 4
        # the failure is not cached: a rerun asks that one again (and now gets an answer)
        mt, _ = make_judges(_cfg(server), cache_path=tmp_path / "c.jsonl")
        assert parse_rating(mt.judge_single(items)[1]) > 0 and server.requests == 5


def test_a_refused_key_stops_the_judges_at_once_and_the_preflight_names_the_parameter(tmp_path):
    items = _single([f"Answer {i}." for i in range(30)])
    with FakeOpenAI(models=("gpt-4", "gpt-4.1"), api_key="sk-another-key", reply=_reply) as server:
        cfg = _cfg(server)
        with pytest.raises(EndpointError) as err:
            cfg.preflight()
        assert str(err.value).startswith(f"MT-Bench judge endpoint: HTTP 401 from {server.base_url} (invalid api key)")
        assert "alignment.evaluation.judge_api_key_env" in str(err.value)
        mt, _ = make_judges(cfg, cache_path=tmp_path / "c.jsonl")
        with pytest.raises(EndpointError, match="HTTP 401"):
            mt.judge_single(items)
        assert 1 <= server.requests <= cfg.judge_concurrency  # what was in flight, nothing more
    with FakeOpenAI(models=("gpt-4",)) as server:
        with pytest.raises(EndpointError, match=r"Arena-Hard judge endpoint .* does not serve 'gpt-4.1' "
                                                r"\(alignment.evaluation.arena_judge_model\)"):
            _cfg(server).preflight()
    PolicyEvalConfig().preflight()  # the principle-RM judge needs no endpoint
