"""The simulated extraction LLM: it reads the world's feedback back, answers in the extraction prompt's
format with noise at the configured rates (measured here against the world's own record of each remark),
and serves it over OpenAI-compatible HTTP, in a thread or a child process the stage starts and stops."""
import json
import re
import urllib.error
import urllib.request
from collections import Counter

import pytest

from rlbff_lib.principles.extraction import (LEXICON, ExtractionConfig, feedback_items, load_prompt, parse_answer,
                                             AnswerError, run_extraction)
from rlbff_lib.core.child import get_json
from rlbff_lib.principles.filters import evidence_score
from rlbff_lib.synthetic import extraction_server as X
from rlbff_lib.synthetic import world as W


@pytest.fixture(scope="module")
def world():
    return W.generate_world(W.WorldConfig(n_prompts=250, seed=5))


def _texts(world):
    """(feedback text, that annotator's remarks from the world's truth) for every feedback text."""
    by_id = {r["id"]: r for r in world.records}
    for t in world.truth:
        for k, text in enumerate(by_id[t["id"]][f"feedback{t['response']}"]):
            yield text, [c for c in t["comments"] if c["annotator"] == k]


# ---------------------------------------------------------------- reading

def test_every_world_feedback_text_is_read_back_into_its_remarks(world):
    for text, remarks in _texts(world):
        read = X.read_feedback(text)
        assert [r.kind for r in read][0] == "opening" and "unknown" not in {r.kind for r in read}, text
        assert [(r.principle, r.stated, r.sentence) for r in read if r.kind == "property"] == \
            [(c["property"], c["stated"], c["text"]) for c in remarks if c["property"]]
        assert " ".join(r.sentence for r in read) == text


def test_unknown_text_falls_back_to_the_rules_lexicon():
    text = "The response is mostly helpful. Sadly the code has no comments at all."
    read = X.read_feedback(text)
    assert [r.kind for r in read] == ["opening", "unknown"]
    got = X.SimulatedExtractor(X.ServeConfig(helpfulness_rate=0.0, invent_rate=0.0)).principles(text)
    assert got == [{"evidence": "Sadly the code has no comments at all.", "principle": "contains inline comments",
                    "fulfillment": "No"}]


def test_banks_cover_the_world():
    assert set(X.OFFTOPIC_READINGS) == set(W.OFFTOPIC + W.NEUTRAL)
    assert set(W.PRINCIPLE_NAMES) == set(W.PROPERTIES)
    lexicon = {c.principle for c in LEXICON}
    for prop, names in W.PRINCIPLE_NAMES.items():
        assert len(names) >= 5 and len(set(names)) == len(names)
        assert names[0] in lexicon  # the usual name is the one the rules lexicon gives
        assert all(W.match_property(n) == prop for n in names)


# ---------------------------------------------------------------- noise at known rates

def _measure(world, cfg):
    """Noise shares measured from the answers against the world's record of each remark."""
    ex = X.SimulatedExtractor(cfg)
    n = Counter()
    for text, remarks in _texts(world):
        answer = ex.principles(text)
        by_prop = {W.match_property(p["principle"]): p for p in answer if W.match_property(p["principle"])}
        said = [c for c in remarks if c["property"]]
        n["texts"] += 1
        n["opening_listed"] += any(p["evidence"] == text.split(" helpful.")[0] + " helpful." for p in answer)
        n["invented"] += len(set(by_prop) - {c["property"] for c in said})
        for c in said:
            n["remarks"] += 1
            got = by_prop.get(c["property"])
            if got is None:
                n["missed"] += 1
                continue
            n["answered"] += 1
            n["paraphrased"] += got["principle"] != W.PRINCIPLE_NAMES[c["property"]][0]
            n["misquoted"] += got["evidence"] != c["text"]
            if c["stated"] != "Partially":
                n["binary"] += 1
                n["hedged"] += got["fulfillment"] == "Partially"
                n["flipped"] += got["fulfillment"] not in (c["stated"], "Partially")
            else:
                n["partial_kept"] += got["fulfillment"] == "Partially"
                n["partial"] += 1
    return n


def test_noise_rates_match_the_config(world):
    cfg = X.ServeConfig(paraphrase_rate=0.3, wrong_label_rate=0.1, hedge_rate=0.05, miss_rate=0.05,
                        misquote_rate=0.2, invent_rate=0.25, helpfulness_rate=0.6)
    n = _measure(world, cfg)
    assert n["remarks"] > 5000
    assert abs(n["missed"] / n["remarks"] - cfg.miss_rate) < 0.015
    assert abs(n["paraphrased"] / n["answered"] - cfg.paraphrase_rate) < 0.025
    assert abs(n["misquoted"] / n["answered"] - cfg.misquote_rate) < 0.025
    assert abs(n["flipped"] / n["binary"] - cfg.wrong_label_rate) < 0.02
    assert abs(n["hedged"] / n["binary"] - cfg.hedge_rate) < 0.015
    assert n["partial_kept"] == n["partial"] > 0
    assert abs(n["invented"] / n["texts"] - cfg.invent_rate) < 0.04
    assert abs(n["opening_listed"] / n["texts"] - cfg.helpfulness_rate) < 0.04
    quiet = _measure(world, X.ServeConfig(paraphrase_rate=0, wrong_label_rate=0, hedge_rate=0, miss_rate=0,
                                          misquote_rate=0, invent_rate=0, helpfulness_rate=0))
    assert quiet["paraphrased"] == quiet["misquoted"] == quiet["flipped"] == quiet["hedged"] == quiet["missed"] == 0
    assert quiet["invented"] == quiet["opening_listed"] == 0


def test_invented_quotes_mostly_fail_the_evidence_match_and_misquotes_mostly_pass(world):
    ex = X.SimulatedExtractor(X.ServeConfig(invent_rate=1.0, misquote_rate=1.0, helpfulness_rate=0.0))
    invented, misquoted = [], []
    for text, remarks in list(_texts(world))[:600]:
        said = {c["property"] for c in remarks if c["property"]}
        for p in ex.principles(text):
            prop = W.match_property(p["principle"])
            if prop is None:
                continue
            (misquoted if prop in said else invented).append(evidence_score(p["evidence"], text) > 60)
    assert sum(invented) / len(invented) < 0.25
    assert sum(misquoted) / len(misquoted) > 0.8


def test_answers_are_deterministic_per_text_and_seed(world):
    texts = [t for t, _ in _texts(world)][:50]
    a, b = X.SimulatedExtractor(), X.SimulatedExtractor()
    assert [a.answer(t, 0) for t in texts] == [b.answer(t, 0) for t in reversed(texts)][::-1]
    other = X.SimulatedExtractor(X.ServeConfig(seed=1))
    assert [a.principles(t) for t in texts] != [other.principles(t) for t in texts]


def test_malformed_answers_fail_parsing_then_a_retry_succeeds(world):
    always = X.SimulatedExtractor(X.ServeConfig(malformed_rate=1.0))
    kinds = Counter()
    for text, _ in list(_texts(world))[:60]:
        content, finish = always.answer(text, 0)
        with pytest.raises(AnswerError):
            parse_answer(content)
        kinds["length" if finish == "length" else content[:1]] += 1
    assert set(kinds) == {"length", "H", "{"}  # cut short, prose around it, an object
    never = X.SimulatedExtractor(X.ServeConfig(malformed_rate=0.0))
    text = next(_texts(world))[0]
    assert parse_answer(never.answer(text, 0)[0]) == never.principles(text)
    sometimes = X.SimulatedExtractor()
    assert sometimes.answer(text) == sometimes.answer(text, 0)  # the counter: first request is attempt 0
    assert sometimes.answer(text) == sometimes.answer(text, 1)


def test_config_validation_and_served_model_name():
    with pytest.raises(ValueError, match="^paraphrase_rate: "):
        X.ServeConfig(paraphrase_rate=1.5)
    with pytest.raises(ValueError, match="^wrong_label_rate: "):
        X.ServeConfig(wrong_label_rate=0.7, hedge_rate=0.5)
    assert X.ServeConfig().served_model() == X.ServeConfig(kind="none").served_model()
    assert X.ServeConfig().served_model() != X.ServeConfig(paraphrase_rate=0.5).served_model()


# ---------------------------------------------------------------- serving

def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_answers_the_extraction_prompt_and_nothing_else(world):
    text = next(_texts(world))[0]
    with X.ExtractionServer(X.ServeConfig(malformed_rate=0.0)) as server:
        models = get_json(server.base_url + "/models")
        assert [m["id"] for m in models["data"]] == [server.model]
        prompt = load_prompt("v1").replace("{feedback}", text)
        status, body = _post(server.base_url + "/chat/completions",
                             {"model": server.model, "messages": [{"role": "user", "content": prompt}]})
        assert status == 200 and body["choices"][0]["finish_reason"] == "stop"
        assert parse_answer(body["choices"][0]["message"]["content"]) == server.extractor.principles(text)
        status, body = _post(server.base_url + "/chat/completions",
                             {"messages": [{"role": "user", "content": "Write a poem."}]})
        assert status == 400 and "extraction prompt" in body["error"]["message"]
        assert _post(server.base_url + "/embeddings", {})[0] == 404
        assert get_json(server.base_url + "/stats")["requests"] == 1


def test_the_projects_extraction_client_runs_against_it(world, tmp_path):
    items = feedback_items(world.records[:40])
    cfg = X.ServeConfig(malformed_rate=0.2)
    with X.ExtractionServer(cfg) as server:
        ecfg = ExtractionConfig(backend="openai", base_url=server.base_url, model=server.model, api_key_env="",
                                concurrency=4, failure_threshold=0.05)
        ecfg.preflight()
        rows, summary = run_extraction(items, ecfg, tmp_path / "cache.jsonl")
    ex = X.SimulatedExtractor(cfg)

    def malformed(text, attempt):
        try:
            parse_answer(ex.answer(text, attempt)[0])
            return False
        except AnswerError:
            return True

    # the client asks a malformed answer again twice (max_parse_retries): a text fails when all three are
    texts = {r["text"] for r in rows}
    failed = {t for t in texts if all(malformed(t, a) for a in range(3))}
    assert {r["text"] for r in rows if r["status"] == "failed"} == failed
    assert summary["parse_retries"] == sum(malformed(t, 0) + (malformed(t, 0) and malformed(t, 1)) for t in texts)
    for row in rows:
        if row["status"] == "ok":
            assert row["principles"] == ex.principles(row["text"])


def test_a_child_process_server_starts_and_stops():
    with X.serve_subprocess(X.ServeConfig(seed=3)) as base_url:
        assert re.match(r"^http://127\.0\.0\.1:\d+/v1$", base_url)
        assert get_json(base_url + "/models")["data"][0]["id"] == X.ServeConfig(seed=3).served_model()
    with pytest.raises(OSError):
        get_json(base_url + "/models", timeout_s=1.0)
