"""Principle extraction: answer parsing, the rules lexicon, and the OpenAI backend against a
local misbehaving server (retries, Retry-After, secrets, kill/resume, corrupt cache lines, a stop at
the first 401/403/404, the preflight).

Every request goes to 127.0.0.1 (a guard on ``socket.connect`` refuses anything else).
"""
import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlbff_lib.core.http import EndpointError
from rlbff_lib.principles.extraction import (AnswerError, ExtractionCache, ExtractionConfig, feedback_items, main,
                                             parse_answer, rules_extract, run_extraction)
from rlbff_lib.core.io import read_jsonl, read_jsonl_tolerant

from fakes.openai_server import FakeOpenAI, good_answer  # noqa: E402
from rlbff_lib.core.params import REPO_ROOT
from rlbff_lib.evaluation.benchmarks import benchmarks_dir

ROOT = REPO_ROOT
SECRET = "sk-test-PLANTED-SECRET-7f3a9c"
KEY_VAR = "RLBFF_TEST_EXTRACTION_KEY"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuse any connection that is not to 127.0.0.1; drop proxy settings; plant the key."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"test tried to connect to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KEY_VAR, SECRET)


def _cfg(server: FakeOpenAI, **over) -> ExtractionConfig:
    values = dict(backend="openai", base_url=server.base_url, model="fake-model", api_key_env=KEY_VAR,
                  concurrency=4, max_retries=3, max_parse_retries=2, timeout_s=5.0, backoff_base_s=0.01,
                  backoff_max_s=0.05, failure_threshold=0.5)
    values.update(over)
    return ExtractionConfig(**values)


def _items(texts: list[str]) -> list[dict]:
    return [{"item_id": f"r{i}:1:0", "record_id": f"r{i}", "response": 1, "annotator": 0, "text": t}
            for i, t in enumerate(texts)]


def _record(i: int, texts1: list[str], texts2: list[str]) -> dict:
    return {"id": f"rec{i}", "domain": "general", "language": "english",
            "context": [{"role": "user", "content": f"Question {i}?"}], "response1": "A.", "response2": "B.",
            "feedback1": texts1, "feedback2": texts2}


def _write_input(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------- parsing, config, items

def test_parse_answer_strict_and_fenced():
    good = [{"evidence": "It is correct.", "principle": "correctness", "fulfillment": "yes"}]
    assert parse_answer(json.dumps(good)) == [{**good[0], "fulfillment": "Yes"}]
    assert parse_answer("```json\n" + json.dumps(good) + "\n```") == parse_answer(json.dumps(good))
    assert parse_answer("[]") == []
    bad = {
        "": "empty answer",
        "Here you go: []": "invalid JSON",
        '[{"evidence": "x", "princ': "invalid JSON",
        '{"evidence": "x"}': "expected a JSON list",
        '["x"]': "expected an object",
        '[{"evidence": "x", "principle": "p"}]': "keys must be exactly",
        '[{"evidence": "x", "principle": "p", "fulfillment": "Yes", "why": 1}]': "keys must be exactly",
        '[{"evidence": " ", "principle": "p", "fulfillment": "Yes"}]': "evidence must be a non-empty string",
        '[{"evidence": "x", "principle": "p", "fulfillment": "Maybe"}]': "fulfillment must be one of",
        json.dumps([{"evidence": "x", "principle": "p" * 101, "fulfillment": "No"}]): "longer than 100",
    }
    for raw, reason in bad.items():
        with pytest.raises(AnswerError, match=reason):
            parse_answer(raw)


def test_config_messages_start_with_field_and_never_echo_a_key():
    with pytest.raises(ValueError, match=r"^concurrency:"):
        ExtractionConfig(concurrency=0)
    with pytest.raises(ValueError, match=r"^failure_threshold:"):
        ExtractionConfig(failure_threshold=1.5)
    with pytest.raises(ValueError, match=r"^base_url:"):
        ExtractionConfig(backend="openai", base_url="localhost:8000")
    with pytest.raises(ValueError, match=r"^prompt_version:"):
        ExtractionConfig(backend="openai", prompt_version="v999")
    with pytest.raises(ValueError, match=r"^api_key_env:") as e:
        ExtractionConfig(api_key_env=SECRET)
    assert SECRET not in str(e.value)


def test_feedback_items_ids_and_index_fallback():
    recs = [_record(0, ["a", "b"], ["c"]), {k: v for k, v in _record(1, [], ["d"]).items() if k != "id"}]
    items = feedback_items(recs)
    assert [i["item_id"] for i in items] == ["rec0:1:0", "rec0:1:1", "rec0:2:0", "1:2:0"]
    assert items[1] == {"item_id": "rec0:1:1", "record_id": "rec0", "response": 1, "annotator": 1, "text": "b"}


# ---------------------------------------------------------------- rules backend

def _pairs(text: str) -> dict[str, str]:
    return {p["principle"]: p["fulfillment"] for p in rules_extract(text)}


@pytest.mark.parametrize("text, expected", [
    ("The response lacks code comments and examples.",
     {"contains inline comments": "No", "provides examples": "No"}),
    ("The code has no errors and is well commented.",
     {"correctness": "Yes", "contains inline comments": "Yes"}),
    ("The response is only partially correct.", {"correctness": "Partially"}),
    ("The response is somewhat verbose.", {"conciseness": "Partially"}),
    ("The response is too verbose.", {"conciseness": "No"}),
    ("The response is not concise.", {"conciseness": "No"}),
    ("The answer is not verbose, but it is inaccurate.", {"conciseness": "Yes", "correctness": "No"}),
    ("The response is correct but could be more concise.", {"correctness": "Yes", "conciseness": "No"}),
    ("The response does not fully follow the instructions.", {"instruction following": "Partially"}),
    ("Comments are missing.", {"contains inline comments": "No"}),
    ("It repeats the same point several times.", {"avoids repetition": "No"}),
    ("The response fails to use markdown.", {"uses markdown appropriately": "No"}),
    ("The response is written in the wrong language.", {"responds in the prompt's language": "No"}),
    ("The response should have asked a clarifying question.", {"asks clarifying questions": "No"}),
    ("The response is clear and well formatted.", {"clarity": "Yes", "formatting": "Yes"}),
    ("For example, the response is confusing.", {"clarity": "No"}),
    ("It avoids repeating itself.", {"avoids repetition": "Yes"}),
    ("There is a little redundancy.", {"avoids repetition": "Partially"}),
    ("Only some of the key terms are in bold.", {"uses bold for key terms": "Partially"}),
    ("The function is missing a docstring.", {"documents functions with docstrings": "No"}),
    ("It would help to add comments to the code.", {"contains inline comments": "No"}),
    ("Without code fences the snippet is harder to copy.", {"uses code blocks": "No"}),
    ("The response switches to English instead of following the prompt's language.",
     {"responds in the prompt's language": "No"}),
    ("The opening pleasantry is unnecessary.", {"answers directly without preamble": "No"}),
    ("There is no follow-up question to check the user's needs.", {"ends with a follow-up question": "No"}),
    ("The response would be easier to read with a bulleted list.", {"uses bullet points": "No"}),
    ("The incomplete explanation limits its use.", {"completeness": "No", "includes an explanation": "No"}),
])
def test_rules_polarity_and_partially(text, expected):
    assert _pairs(text) == expected


@pytest.mark.parametrize("level, fulfillment", [("not", "No"), ("slightly", "No"), ("partially", "Partially"),
                                                ("mostly", "Yes"), ("perfectly", "Yes")])
def test_rules_helpfulness_from_opening_sentence(level, fulfillment):
    principles = rules_extract(f"The response is {level} helpful. It is accurate.")
    assert principles[0] == {"evidence": f"The response is {level} helpful.", "principle": "helpful",
                             "fulfillment": fulfillment}
    assert principles[1]["principle"] == "correctness"


def _card_dir() -> Path:
    base = str(benchmarks_dir() or ROOT / "nonexistent")
    path = Path(base) / "helpsteer3-card-examples"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"benchmark folder missing in CI: {path}")
        pytest.skip("shared benchmarks not available")
    return path


def test_rules_on_real_helpsteer3_card_example(tmp_path):
    record = json.loads((_card_dir() / "feedback_example.json").read_text())
    items = feedback_items([record])
    rows, summary = run_extraction(items, ExtractionConfig(), tmp_path / "cache.jsonl")
    assert summary["ok"] == len(items) == 6 and summary["requests"] == 0
    for row in rows:
        assert row["principles"][0]["principle"] == "helpful"
        assert len(row["principles"]) >= 2
        for p in row["principles"]:
            assert p["evidence"] in row["text"]  # verbatim: passes the paper's evidence filter
            assert p["fulfillment"] in ("Yes", "No", "Partially")
    by_id = {r["item_id"]: {p["principle"]: p["fulfillment"] for p in r["principles"]} for r in rows}
    assert by_id["0:1:0"]["helpful"] == "Partially"
    assert by_id["0:1:0"]["correctness"] == "No"  # "The code makes a mistake ..."
    assert by_id["0:1:1"]["completeness"] == "No"  # "the implementation is incomplete"
    assert by_id["0:1:2"]["correctness"] == "Yes"  # "The code is fully correct."
    assert by_id["0:1:2"]["contains inline comments"] == "No"  # "could have been better if there were comments"
    assert by_id["0:2:2"]["conciseness"] == "No"  # "The code explanation is also lengthy."
    # a second run answers from the cache
    again, summary2 = run_extraction(items, ExtractionConfig(), tmp_path / "cache.jsonl")
    assert again == rows and summary2["cache_hits"] == 6


# The world's properties as the lexicon names them (test-side only: the extractor knows no world).
WORLD_PRINCIPLES = {
    "concise": "conciseness", "bulleted_list": "uses bullet points", "worked_example": "provides examples",
    "inline_comments": "contains inline comments", "fenced_code": "uses code blocks",
    "code_docstring": "documents functions with docstrings", "arithmetic_correct": "correctness",
    "same_language": "responds in the prompt's language", "no_repetition": "avoids repetition",
    "direct_answer": "answers directly without preamble", "followup_question": "ends with a follow-up question",
    "bold_key_terms": "uses bold for key terms",
}


def test_rules_recover_the_synthetic_worlds_remarks(tmp_path):
    world_mod = pytest.importorskip("rlbff_lib.synthetic.world")
    world = world_mod.generate_world(world_mod.WorldConfig(n_prompts=40, seed=11))
    assert set(world_mod.PROPERTIES) == set(WORLD_PRINCIPLES)
    items = feedback_items(world.records)
    rows, summary = run_extraction(items, ExtractionConfig(), tmp_path / "cache.jsonl")
    assert summary["ok"] == len(items) and summary["failed"] == 0
    found = {(r["record_id"], r["response"], r["annotator"]): {p["principle"]: p["fulfillment"] for p in r["principles"]}
             for r in rows}
    right = total = 0
    for truth in world.truth:
        for remark in truth["comments"]:
            if remark["property"] is None:
                continue
            got = found[(truth["id"], truth["response"], remark["annotator"])]
            total += 1
            right += got.get(WORLD_PRINCIPLES[remark["property"]]) == remark["stated"]
    assert total > 100 and right / total >= 0.9, (right, total)
    assert all(r["principles"][0]["principle"] == "helpful" for r in rows)


# ---------------------------------------------------------------- openai backend

SCRIPTS = {
    "The response is ok after a 429.": ["429", "ok"],
    "The response is ok after two 500s.": ["500", "500", "ok"],
    "The response is ok after a slow answer.": ["slow", "ok"],
    "The response is ok after a dropped connection.": ["drop", "ok"],
    "The response is ok after a non-JSON body.": ["badbody", "ok"],
    "The response is ok after malformed JSON.": ["malformed", "ok"],
    "The response is ok after truncated JSON.": ["truncated", "ok"],
    "The response is ok after empty content.": ["empty", "ok"],
    "The response is ok after a bad schema.": ["badschema", "ok"],
    "The response is fenced.": ["fenced"],
    "The response is never parseable.": ["malformed"] * 10,
    "The response always errors.": ["500leak"] * 10,
    "The response is too long for the model.": ["400"],
}
EXPECTED_REQUESTS = {"429": 2, "two 500s": 3, "slow": 2, "dropped": 2, "non-JSON": 2, "malformed JSON": 2,
                     "truncated": 2, "empty": 2, "bad schema": 2, "fenced": 1, "never": 3, "always": 4,
                     "too long": 1}


def test_misbehaving_server_every_item_ends_ok_failed_or_skipped(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    texts = list(SCRIPTS) + ["The response is ok after a 429.", "", "   \n", "x" * 30_000]
    items = _items(texts)
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAI(SCRIPTS, slow_s=2.0, retry_after="1") as server:
        rows, summary = run_extraction(items, _cfg(server, timeout_s=1.5), cache)
        gap = server.times_of("The response is ok after a 429.")
        auth = {c["authorization"] for c in server.calls}
        total_requests = server.requests

    assert len(rows) == len(items) and [r["item_id"] for r in rows] == [i["item_id"] for i in items]
    status = {r["text"]: r for r in rows}
    failed = {"The response is never parseable.", "The response always errors.", "The response is too long for the model."}
    for text in SCRIPTS:
        expected = "failed" if text in failed else "ok"
        assert status[text]["status"] == expected, (text, status[text])
        if expected == "ok":
            assert status[text]["principles"] == good_answer(text)
    assert "no valid answer in 3 attempts" in status["The response is never parseable."]["reason"]
    assert "HTTP 500" in status["The response always errors."]["reason"]
    assert "HTTP 400: This model's maximum context length" in status["The response is too long for the model."]["reason"]
    assert [r["status"] for r in rows[-3:]] == ["skipped"] * 3
    assert rows[-4]["status"] == "ok"  # the duplicate text was asked once
    # Retry-After: 1 is honoured although the backoff base is 10 ms
    assert len(gap) == 2 and gap[1] - gap[0] >= 0.95
    assert total_requests == sum(EXPECTED_REQUESTS.values()) == summary["requests"]
    assert summary["ok"] == 11 and summary["failed"] == 3 and summary["skipped"] == 3
    assert summary["failure_share"] == pytest.approx(3 / 14, abs=1e-6) and summary["passed"]
    assert summary["http_retries"] == 1 + 2 + 1 + 1 + 1 + 3
    assert summary["parse_retries"] == 4 + 2
    # the key was sent, and never written anywhere
    assert auth == {f"Bearer {SECRET}"}
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    captured = capsys.readouterr()
    for blob in (out.read_text(), cache.read_text(), caplog.text, captured.out, captured.err, json.dumps(summary)):
        assert SECRET not in blob
    assert "***" in status["The response always errors."]["reason"]  # the echoed key was redacted


def test_rerun_uses_cache_and_retries_failures_only_when_asked(tmp_path):
    scripts = {"Bad once.": ["400"], "Good.": ["ok"]}
    items = _items(list(scripts))
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAI(scripts) as server:
        rows, _ = run_extraction(items, _cfg(server), cache)
        assert [r["status"] for r in rows] == ["failed", "ok"] and server.requests == 2
        rows, summary = run_extraction(items, _cfg(server, retry_failed=False), cache)
        assert [r["status"] for r in rows] == ["failed", "ok"] and server.requests == 2
        assert summary["cache_hits"] == 2
        rows, summary = run_extraction(items, _cfg(server), cache)  # default: retry failures
        assert [r["status"] for r in rows] == ["ok", "ok"] and server.requests == 3
        assert summary["cache_hits"] == 1 and summary["requests"] == 1


@pytest.mark.parametrize("status", ["401", "403", "404"])
def test_a_refused_key_or_wrong_url_stops_the_run_at_the_first_answer(tmp_path, status):
    """401/403/404 mean every request would fail: one line naming URL, status, server message and
    parameter, no further request, nothing cached as this text's answer (it is not the text's fault)."""
    texts = [f"Feedback {i}." for i in range(40)]
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAI({texts[0]: [status]}) as server:
        with pytest.raises(EndpointError) as err:
            run_extraction(_items(texts), _cfg(server, concurrency=1), cache)
        assert server.requests == 1
        message = str(err.value)
        assert "\n" not in message and server.base_url in message and f"HTTP {status}" in message
        assert f"scripted {status}" in message
        param = "principles.extraction.api_key_env" if status != "404" else "principles.extraction.base_url"
        assert param in message and SECRET not in message
        assert not cache.exists() or not _valid_cache_keys(cache)
    # every request refused, 4 workers: what was in flight when the first answer came, nothing more
    with FakeOpenAI({t: [status] * 5 for t in texts}) as server:
        with pytest.raises(EndpointError):
            run_extraction(_items(texts), _cfg(server, concurrency=4), tmp_path / "c2.jsonl")
        assert 1 <= server.requests <= 4


def test_a_401_from_the_cli_is_one_line_and_exit_status_2(tmp_path, capsys):
    inp = _write_input(tmp_path / "feedback.jsonl", [_record(0, [f"Text {i}." for i in range(20)], [])])
    with FakeOpenAI(api_key="sk-the-right-one") as server:  # the planted key is refused
        assert main(_cli_args(server, tmp_path, inp)) == 2
        assert server.requests == 0 and server.model_lists == 1  # the preflight caught it
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and err[0].startswith("error: extraction endpoint: HTTP 401 from " + server.base_url)
    assert "invalid api key" in err[0] and f"${KEY_VAR}" in err[0] and "principles.extraction.api_key_env" in err[0]
    assert SECRET not in err[0]


def test_preflight_wrong_model_and_closed_port_fail_in_seconds(tmp_path):
    with FakeOpenAI(models=("deepseek-v3",)) as server:
        with pytest.raises(EndpointError, match=r"does not serve 'fake-model' \(principles.extraction.model\); "
                                                r"it serves: 'deepseek-v3'"):
            run_extraction(_items(["Some feedback."]), _cfg(server), tmp_path / "cache.jsonl")
        assert server.requests == 0
        _cfg(server, model="deepseek-v3").preflight()  # the right name passes
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = ExtractionConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key_env=KEY_VAR)
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match=r"extraction endpoint \(principles.extraction.base_url=http://127.0.0.1:"
                                            rf"{port}/v1\) unreachable"):
        run_extraction(_items(["Some feedback."]), cfg, tmp_path / "cache.jsonl")
    assert time.monotonic() - t0 < 5
    # everything cached: no endpoint needed (the rules of a finished run reproduce offline)
    rows, summary = run_extraction(_items([""]), cfg, tmp_path / "cache.jsonl")
    assert rows[0]["status"] == "skipped" and summary["requests"] == 0


def test_corrupt_cache_line_is_detected_and_asked_again(tmp_path, caplog):
    texts = ["First feedback.", "Second feedback.", "Third feedback."]
    items = _items(texts)
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAI() as server:
        cfg = _cfg(server, concurrency=1)
        rows1, _ = run_extraction(items, cfg, cache)
        data = cache.read_bytes()
        cut = data[: data.rstrip(b"\n").rfind(b"\n") + 1 + 40]  # the last line cut after 40 bytes
        cache.write_bytes(cut)
        lost = json.loads(data.rstrip(b"\n").rsplit(b"\n", 1)[1])["key"]
        with caplog.at_level(logging.WARNING):
            rows2, summary = run_extraction(items, cfg, cache)
        assert summary["corrupt_cache_lines"] == 1 and summary["requests"] == 1 and summary["cache_hits"] == 2
        assert "corrupt line" in caplog.text
        assert rows2 == rows1 and server.requests == 4
        rows3, summary3 = run_extraction(items, cfg, cache)  # the new answer went on a line of its own
        assert summary3["requests"] == 0 and summary3["corrupt_cache_lines"] == 1 and rows3 == rows1
    good, bad = read_jsonl_tolerant(cache)
    assert len(bad) == 1 and [r["key"] for r in good].count(lost) == 1
    assert ExtractionCache(cache).corrupt_count == 1


def test_run_extraction_inside_a_running_event_loop(tmp_path):
    async def notebook_cell():
        with FakeOpenAI() as server:
            return run_extraction(_items(["From a notebook."]), _cfg(server), tmp_path / "c.jsonl")

    rows, summary = asyncio.run(notebook_cell())
    assert rows[0]["status"] == "ok" and summary["requests"] == 1


# ---------------------------------------------------------------- command line

def _cli_args(server: FakeOpenAI, tmp_path: Path, inp: Path, concurrency: int = 2, share: float = 0.1) -> list[str]:
    return ["--backend", "openai", "--base-url", server.base_url, "--model", "fake-model",
            "--api-key-env", KEY_VAR, "--input", str(inp), "--cache", str(tmp_path / "cache.jsonl"),
            "--out", str(tmp_path / "out.jsonl"), "--concurrency", str(concurrency),
            "--max-failure-share", str(share), "--backoff-base", "0.01", "--timeout", "5"]


def _cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({KEY_VAR: SECRET, "PYTHONPATH": str(ROOT)})
    return env


def _valid_cache_keys(path: Path) -> set[str]:
    rows, _ = read_jsonl_tolerant(path)
    return {r["key"] for r in rows if r.get("status") == "ok"}


def test_cli_killed_run_resumes_without_asking_again(tmp_path):
    records = [_record(i, [f"Record {i} answer one is fine.", f"Record {i} answer one is poor."],
                       [f"Record {i} answer two is fine.", f"Record {i} answer two is poor."]) for i in range(6)]
    inp = _write_input(tmp_path / "feedback.jsonl", records)
    n_items, concurrency = 24, 2
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAI(latency_s=0.1) as server:
        args = [sys.executable, "-m", "rlbff_lib.principles.extraction", *_cli_args(server, tmp_path, inp, concurrency)]
        proc = subprocess.Popen(args, cwd=ROOT, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while time.time() < deadline and (not cache.exists() or len(_valid_cache_keys(cache)) < 6):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        first = server.requests
        cached = len(_valid_cache_keys(cache))
        assert 6 <= cached < n_items and not (tmp_path / "out.jsonl").exists()

        done = subprocess.run(args, cwd=ROOT, env=_cli_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        second = server.requests - first
        summary = json.loads(done.stdout.strip().splitlines()[-1])

        third = subprocess.run(args, cwd=ROOT, env=_cli_env(), capture_output=True, text=True, timeout=60)
        assert third.returncode == 0, third.stderr
        third_requests = server.requests - first - second

    print(f"kill/resume: items={n_items} run1_requests={first} cached_at_kill={cached} "
          f"run2_requests={second} run3_requests={third_requests}")
    assert second == n_items - cached  # only what had no cached answer
    assert first - cached <= concurrency  # lost at most what was in flight
    assert third_requests == 0
    assert summary["cache_hits"] == cached and summary["ok"] == n_items and summary["requests"] == second
    out = read_jsonl(tmp_path / "out.jsonl")
    assert len(out) == n_items and {r["status"] for r in out} == {"ok"}
    assert len({r["item_id"] for r in out}) == n_items
    for blob in (done.stdout, done.stderr, third.stdout, third.stderr, cache.read_text(),
                 (tmp_path / "out.jsonl").read_text()):
        assert SECRET not in blob


def test_cli_bad_input_is_reported_before_any_request(tmp_path, capsys):
    bad = _record(1, ["ok"], [])
    bad["feedback2"] = "not a list"
    inp = _write_input(tmp_path / "feedback.jsonl", [_record(0, ["fine"], []), bad])
    with FakeOpenAI() as server:
        assert main(_cli_args(server, tmp_path, inp)) == 2
        assert server.requests == 0
    err = capsys.readouterr().err
    assert "feedback.jsonl, line 2, field 'feedback2'" in err


def test_cli_exit_status_follows_the_failure_share(tmp_path, capsys):
    texts = [f"Feedback number {i}." for i in range(4)]
    inp = _write_input(tmp_path / "feedback.jsonl", [_record(0, texts[:2], texts[2:])])
    with FakeOpenAI({texts[0]: ["400"]}) as server:
        assert main(_cli_args(server, tmp_path, inp, share=0.1)) == 1  # 1/4 failed > 0.1
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["failed"] == 1 and not summary["passed"]
        assert len(read_jsonl(tmp_path / "out.jsonl")) == 4
        assert main(_cli_args(server, tmp_path, inp, share=0.3)) == 0  # retried: now ok
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["failed"] == 0 and summary["requests"] == 1


def test_cli_rules_backend_needs_no_endpoint(tmp_path, capsys):
    inp = _write_input(tmp_path / "feedback.jsonl", [_record(0, ["The response is mostly helpful. It is concise."],
                                                             ["", "The response is not helpful. It is wrong."])])
    assert main(["--input", str(inp), "--cache", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 0
    out = read_jsonl(tmp_path / "o.jsonl")
    assert [r["status"] for r in out] == ["ok", "skipped", "ok"]
    assert out[2]["principles"][1] == {"evidence": "It is wrong.", "principle": "correctness", "fulfillment": "No"}
