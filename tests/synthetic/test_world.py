"""The synthetic feedback world: checkers agree with the renderer, the world is deterministic,
records follow the HelpSteer3-Feedback schema, and the annotator noise has the configured rates."""

import itertools
import json
import random
import re
import time

import pytest

from rlbff_lib.synthetic import world as W
from rlbff_lib.synthetic.world import (DOMAIN_PROPERTIES, DOMAINS, PROPERTIES, World, WorldConfig, all_phrasings, check,
                             check_all, corpus_texts, generate_world, match_property, reasoning, render_response,
                             sample_policy_prompts, sample_prompt)

HELPFUL_RE = re.compile(r"^The response is (not|slightly|partially|mostly|perfectly) helpful\.")
SENT_RE = re.compile(r"(?<=[.!?])\s+")


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(n_prompts=300, seed=11))


def _dump(w: World) -> str:
    return json.dumps({"records": w.records, "truth": w.truth}, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------- checkers vs renderer

@pytest.mark.parametrize("domain", DOMAINS)
def test_every_property_combination_renders_and_checks(domain):
    """All 2^n value combinations of the domain's properties: checker(render(values)) == values."""
    rng = random.Random(f"combos-{domain}")
    props = DOMAIN_PROPERTIES[domain]
    for bits in itertools.product([False, True], repeat=len(props)):
        values = dict(zip(props, bits))
        _, info = sample_prompt(domain, rng)
        response = render_response(domain, info, values, rng)
        assert check_all(domain, response, info) == values, (values, response)


@pytest.mark.parametrize("limit", [W.MIN_WORD_LIMIT, 70, W.MAX_WORD_LIMIT])
@pytest.mark.parametrize("domain", DOMAINS)
def test_random_draws_agree_at_any_word_limit(domain, limit):
    rng = random.Random(f"draws-{domain}-{limit}")
    for _ in range(150):
        _, info = sample_prompt(domain, rng, word_limit=limit)
        values = {p: rng.random() < 0.5 for p in DOMAIN_PROPERTIES[domain]}
        response = render_response(domain, info, values, rng)
        assert check_all(domain, response, info) == values, (values, response)
        assert (W.prose_words(response) <= limit) == values["concise"]


@pytest.mark.parametrize("domain", DOMAINS)
def test_longest_concise_responses_fit_the_smallest_limit(domain):
    """Every optional part on (filler, bullets, example, repetition, question) still fits MIN_WORD_LIMIT."""
    rng = random.Random(f"longest-{domain}")
    for i in range(300):
        _, info = sample_prompt(domain, rng, word_limit=W.MIN_WORD_LIMIT)
        values = {p: True for p in DOMAIN_PROPERTIES[domain]}
        values.update(no_repetition=False, direct_answer=False)
        if domain == "multilingual":
            values["same_language"] = bool(i % 2)
        response = render_response(domain, info, values, rng)
        assert check_all(domain, response, info) == values, response


def test_renderer_defaults_and_unknown_properties():
    rng = random.Random(0)
    _, info = sample_prompt("code", rng)
    response = render_response("code", info, {}, rng)
    assert check_all("code", response, info) == {p: W.DEFAULT_VALUES[p] for p in DOMAIN_PROPERTIES["code"]}
    with pytest.raises(ValueError, match="values"):
        render_response("code", info, {"shiny": True}, rng)


def test_checker_examples():
    info = {"answer": 444, "expression": "37 * 12", "lang": "es", "word_limit": 10}
    assert check("arithmetic_correct", "After working it out, the answer is **444**.", info)
    assert not check("arithmetic_correct", "The answer is 443.", info)
    assert check("arithmetic_correct", "37 * 12 = 444", info)  # no answer sentence: the last number
    assert not check("arithmetic_correct", "The answer is 444.", {})  # nothing to check against
    assert check("same_language", "La fotosíntesis es el proceso por el cual las plantas viven.", info)
    assert not check("same_language", "Photosynthesis is how plants turn light into energy.", info)
    assert W.lang_id("Der Wasserkreislauf bewegt das Wasser und die Luft.") == "de"
    assert W.lang_id("Le cycle de l'eau fait circuler l'eau dans les océans.") == "fr"
    assert not check("direct_answer", "¡Buena pregunta! El reciclaje es útil.", info)
    assert not check("direct_answer", "Sure, here it is.", info)
    assert check("direct_answer", "Surely the sun rises.", info)  # word boundary, not prefix of a word
    assert check("followup_question", "Done. Anything else?**", info)
    assert not check("bold_key_terms", "```python\nx = n ** 0.5 ** 2\n```", info)  # ** in code is no bold
    assert check("concise", "one two three\n```\n" + "code " * 50 + "\n```", info)  # code is not counted
    assert not check("no_repetition", "It is what it is. Fine. It is what it is!", info)
    assert check("no_repetition", "Yes. Yes. Yes.", info)  # fragments under three words are not sentences
    assert check("inline_comments", "    def f():\n        return 1  # one", info)
    assert not check("fenced_code", "    def f():\n        return 1", info)
    assert check("code_docstring", '```\ndef f(a, b=()):\n    """Doc."""\n```', info)


@pytest.mark.parametrize("text", [
    "", " ", "\n\n", "?", "```", "```python\n", "**", "- ", "-\n-", "#", "def (:", '"""', "\x00\x01",
    "🙂 日本語のテキスト ¿¡ «»", "é" * 5000, "The answer is ,,,.", "The answer is -", "1e999 " * 3,
])
def test_checkers_survive_odd_text(text):
    for domain in DOMAINS:
        for info in ({}, {"answer": 3, "lang": "de", "word_limit": 5}, {"answer": "x", "lang": 7}):
            assert set(check_all(domain, text, info).values()) <= {True, False}
    for name in PROPERTIES:
        assert isinstance(check(name, None, None), bool)
        assert isinstance(reasoning(name, text, None)[0], str)


def test_checkers_survive_random_garbage():
    rng = random.Random(3)
    alphabet = "ab c.?!\n-*#`'\"é日🙂0123456789" + " " * 5
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        for name in PROPERTIES:
            assert isinstance(check(name, text, {"answer": 12, "lang": "fr"}), bool)


def test_reasoning_agrees_with_checker():
    rng = random.Random(5)
    for domain in DOMAINS:
        _, info = sample_prompt(domain, rng)
        values = {p: rng.random() < 0.5 for p in DOMAIN_PROPERTIES[domain]}
        response = render_response(domain, info, values, rng)
        for name in DOMAIN_PROPERTIES[domain]:
            text, ok = reasoning(name, response, info, PROPERTIES[name].phrasings[1])
            assert ok == values[name] and PROPERTIES[name].phrasings[1] in text
    text, ok = reasoning("concise", "word " * 74, {"word_limit": 70})
    assert not ok and "74 words" in text and "70-word limit" in text


# ---------------------------------------------------------------- properties and phrasings

def test_property_catalogue():
    assert len(PROPERTIES) >= 11
    assert set(DOMAIN_PROPERTIES) == set(DOMAINS) and all(len(v) >= 6 for v in DOMAIN_PROPERTIES.values())
    for name, prop in PROPERTIES.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name) and prop.description
        assert len({W._norm(p) for p in prop.phrasings}) >= 3
        for ph in prop.phrasings:
            assert match_property(ph) == name
            assert match_property("  " + ph.upper() + "!") == name
    assert len(all_phrasings()) == len({W._norm(p) for _, p in all_phrasings()})  # no phrasing names two properties
    assert match_property("is wearing a hat") is None and match_property("") is None


def test_comment_templates_cover_every_property_and_polarity():
    for name in PROPERTIES:
        for stated in ("Yes", "No"):
            assert len(W.COMMENTS[name][stated]) >= 3
        assert len(W.COMMENTS[name]["Partially"]) >= 2
        for t in itertools.chain.from_iterable(W.COMMENTS[name].values()):
            assert len(SENT_RE.split(t)) == 1, t  # one sentence each


def test_banks_are_large_enough():
    assert len(W.TOPICS) >= 20 and len(W.CODE_TASKS) >= 15 and len(W.ARITHMETIC) >= 3
    assert set(W.ML_TOPICS) <= set(W.TOPICS)


# ---------------------------------------------------------------- the world

def test_same_seed_same_world_other_seed_other_world():
    cfg = WorldConfig(n_prompts=40, seed=4)
    assert _dump(generate_world(cfg)) == _dump(generate_world(WorldConfig(n_prompts=40, seed=4)))
    assert _dump(generate_world(cfg)) != _dump(generate_world(WorldConfig(n_prompts=40, seed=5)))
    short = generate_world(WorldConfig(n_prompts=15, seed=4))
    assert short.records == generate_world(cfg).records[:15]  # record i depends on (seed, i) only


def test_records_follow_helpsteer3_schema(world):
    cfg = world.config
    assert len(world.records) == cfg.n_prompts and len(world.truth) == 2 * cfg.n_prompts
    assert len({r["id"] for r in world.records}) == cfg.n_prompts
    langs = {"general": {"english"}, "stem": {"english"}, "code": {"python"},
             "multilingual": {"spanish", "french", "german"}}
    for rec in world.records:
        assert rec["domain"] in DOMAINS and rec["language"] in langs[rec["domain"]]
        ctx = rec["context"]
        assert 1 <= len(ctx) <= 2 * cfg.max_turns - 1 and len(ctx) % 2 == 1
        assert [m["role"] for m in ctx] == ["user", "assistant"] * (len(ctx) // 2) + ["user"]
        assert all(isinstance(m["content"], str) and m["content"] for m in ctx)
        assert isinstance(rec["response1"], str) and isinstance(rec["response2"], str)
        for key in ("feedback1", "feedback2"):
            assert len(rec[key]) == cfg.annotators
            for text in rec[key]:
                assert HELPFUL_RE.match(text), text
                assert 2 <= len(SENT_RE.split(text)) <= 10, text
        prefs = rec["individual_preference"]
        assert len(prefs) == cfg.annotators
        for p in prefs:
            assert type(p["score"]) is int and -3 <= p["score"] <= 3 and p["reasoning"].startswith("@Response")
        mean = sum(p["score"] for p in prefs) / len(prefs)
        assert type(rec["overall_preference"]) is int and abs(rec["overall_preference"] - mean) <= 0.5


def test_truth_matches_records(world):
    by_id = {r["id"]: r for r in world.records}
    kinds = {"salient", "mistake", "partial", "offtopic"}
    for t in world.truth:
        rec = by_id[t["id"]]
        response, feedback = rec[f"response{t['response']}"], rec[f"feedback{t['response']}"]
        assert t["domain"] == rec["domain"] and set(t["properties"]) == set(DOMAIN_PROPERTIES[rec["domain"]])
        assert check_all(rec["domain"], response, t["prompt_info"]) == t["properties"]
        for c in t["comments"]:
            assert c["kind"] in kinds and c["text"] in feedback[c["annotator"]]
            if c["kind"] == "offtopic":
                assert c["property"] is None and c["stated"] is None
                continue
            assert c["property"] in t["properties"]
            truth = "Yes" if t["properties"][c["property"]] else "No"
            assert c["stated"] == {"salient": truth, "partial": "Partially"}.get(c["kind"], c["stated"])
        for k in range(world.config.annotators):  # property remarks per feedback text within the configured range
            n = sum(c["annotator"] == k and c["property"] is not None for c in t["comments"])
            assert world.config.min_comments <= n <= world.config.max_comments


def test_official_split_is_by_prompt_at_the_configured_share():
    world = generate_world(WorldConfig(n_prompts=600, seed=2, validation_share=0.3))
    by_prompt: dict[str, set] = {}
    for rec in world.records:
        by_prompt.setdefault(json.dumps(rec["context"], sort_keys=True), set()).add(rec["split"])
    assert all(len(v) == 1 for v in by_prompt.values())  # records sharing a prompt share its split
    share = sum(v == {"validation"} for v in by_prompt.values()) / len(by_prompt)
    assert abs(share - 0.3) < 0.06
    assert {r["split"] for r in generate_world(WorldConfig(n_prompts=50, validation_share=0.0)).records} == {"train"}


def test_extractor_names_name_one_property_each():
    seen: dict[str, str] = {}
    for prop, names in W.PRINCIPLE_NAMES.items():
        for n in names + PROPERTIES[prop].phrasings:
            assert seen.setdefault(W._norm(n), prop) == prop, n
    assert set(W.PRINCIPLE_NAMES) == set(PROPERTIES)


def test_noise_rates_are_near_the_config(world):
    cfg = world.config
    remarks = [c for t in world.truth for c in t["comments"] if c["kind"] != "offtopic"]
    share = lambda kind: sum(c["kind"] == kind for c in remarks) / len(remarks)
    assert abs(share("mistake") - cfg.mistake_rate) < 0.025
    assert abs(share("partial") - cfg.partial_rate) < 0.025
    texts = len(world.truth) * cfg.annotators
    offtopic = sum(c["kind"] == "offtopic" for t in world.truth for c in t["comments"]) / texts
    assert abs(offtopic - cfg.offtopic_rate) < 0.04
    labels = [v for t in world.truth for v in t["properties"].values()]
    assert abs(sum(labels) / len(labels) - cfg.property_rate) < 0.03


def test_annotators_of_one_response_agree_more_than_chance():
    """Shared salience: two annotators of the same response mention a common property more often
    than two annotators of different responses of the same domain (with 1-3 remarks per text, so
    that overlap by chance does not saturate)."""
    world = generate_world(WorldConfig(n_prompts=300, seed=11, min_comments=1, max_comments=3))

    def mentioned(t, k):
        return {c["property"] for c in t["comments"] if c["annotator"] == k and c["kind"] == "salient"}

    same = [bool(mentioned(t, 0) & mentioned(t, 1)) for t in world.truth]
    other = [bool(mentioned(a, 0) & mentioned(b, 1)) for a, b in zip(world.truth, world.truth[2:])
             if a["domain"] == b["domain"]]
    assert sum(same) / len(same) > sum(other) / len(other) + 0.15


def test_helpfulness_and_preferences_follow_the_truth(world):
    shares, levels = [], []
    by_id = {r["id"]: r for r in world.records}
    for t in world.truth:
        share = sum(t["properties"].values()) / len(t["properties"])
        for text in by_id[t["id"]][f"feedback{t['response']}"]:
            shares.append(share)
            levels.append(W.LEVELS.index(HELPFUL_RE.match(text).group(1)))
    n = len(shares)
    ms, ml = sum(shares) / n, sum(levels) / n
    cov = sum((s - ms) * (l - ml) for s, l in zip(shares, levels))
    corr = cov / (sum((s - ms) ** 2 for s in shares) * sum((l - ml) ** 2 for l in levels)) ** 0.5
    assert corr > 0.8
    truth = {(t["id"], t["response"]): t["properties"] for t in world.truth}
    agree = total = 0
    for rec in world.records:
        s1, s2 = (sum(truth[rec["id"], j].values()) for j in (1, 2))
        if s1 != s2 and rec["overall_preference"] != 0:
            total += 1
            agree += (rec["overall_preference"] > 0) == (s2 > s1)
    assert agree / total > 0.9


def test_domain_weights_and_turns():
    w = generate_world(WorldConfig(n_prompts=60, seed=2, domain_weights={"code": 1.0, "stem": 0.0}, max_turns=1))
    assert {r["domain"] for r in w.records} == {"code"}
    assert all(len(r["context"]) == 1 for r in w.records)


def test_generation_is_fast():
    t0 = time.perf_counter()
    w = generate_world(WorldConfig(n_prompts=800))
    assert time.perf_counter() - t0 < 5.0
    assert {r["domain"] for r in w.records} == set(DOMAINS)


def test_save_and_load_roundtrip(tmp_path):
    w = generate_world(WorldConfig(n_prompts=10, seed=9))
    w.save(tmp_path / "world")
    back = World.load(tmp_path / "world")
    assert back.config == w.config and _dump(back) == _dump(w)


def test_corpus_texts(world):
    texts = list(corpus_texts(world))
    assert all(isinstance(t, str) and t for t in texts)
    assert world.records[0]["response1"] in texts and world.records[-1]["feedback2"][-1] in texts


def test_policy_prompts():
    a = sample_policy_prompts(50, seed=1)
    assert a == sample_policy_prompts(50, seed=1) and a != sample_policy_prompts(50, seed=2)
    assert all(p["context"][-1]["role"] == "user" and p["domain"] == p["prompt_info"]["domain"] for p in a)
    only = sample_policy_prompts(20, seed=1, domains=["stem"])
    assert {p["domain"] for p in only} == {"stem"} and all("answer" in p["prompt_info"] for p in only)
    with pytest.raises(ValueError, match="^domains"):
        sample_policy_prompts(3, seed=1, domains=["poetry"])


# ---------------------------------------------------------------- config validation

@pytest.mark.parametrize("field,value", [
    ("mistake_rate", 1.5), ("partial_rate", -0.1), ("offtopic_rate", "high"), ("property_rate", True),
    ("neutral_rate", 2), ("n_prompts", 0), ("n_prompts", "many"), ("max_turns", 0), ("max_turns", 9),
    ("annotators", 0), ("min_comments", 0), ("max_comments", 99), ("concise_word_limit", 10),
    ("concise_word_limit", 5000), ("seed", 1.5), ("domain_weights", {"poetry": 1.0}),
    ("salience_spread", -1.0), ("domain_weights", {"code": -1.0}), ("domain_weights", {"code": 0.0}),
    ("domain_weights", {}), ("validation_share", 1.5),
])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError) as err:
        WorldConfig(**{field: value})
    assert str(err.value).startswith(f"{field}: "), str(err.value)


def test_config_cross_field_checks():
    with pytest.raises(ValueError, match="^max_comments: "):
        WorldConfig(min_comments=3, max_comments=2)
    with pytest.raises(ValueError, match="^partial_rate: "):
        WorldConfig(partial_rate=0.6, mistake_rate=0.6)
    assert WorldConfig(mistake_rate=1.0, partial_rate=0.0).mistake_rate == 1.0


def test_preference_mistakes_are_mix_ups_the_truth_records():
    """An annotator who mixes up the two responses gives the reversed score; the truth records the preference
    without mix-ups and flags a record whose overall preference changed sign (helper J, Secrets-II ablation)."""
    cfg = WorldConfig(n_prompts=400, seed=3)
    clean, noisy = W.generate_world(cfg), W.generate_world(WorldConfig(n_prompts=400, seed=3, preference_mistake_rate=0.3))
    assert not any(t["preference_mistake"] for t in clean.truth)
    assert all(t["preference_without_mistakes"] == r["overall_preference"]
               for r in clean.records for t in clean.truth if t["id"] == r["id"])
    sign = lambda x: (x > 0) - (x < 0)
    mistakes = reversed_ = 0
    for a, b in zip(clean.records, noisy.records):
        assert {k: v for k, v in a.items() if "preference" not in k} == {k: v for k, v in b.items() if "preference" not in k}
        flips = [pa["score"] == -pb["score"] != 0 for pa, pb in zip(a["individual_preference"], b["individual_preference"])]
        same = [pa == pb for pa, pb in zip(a["individual_preference"], b["individual_preference"])]
        assert all(f or s or pa["score"] == 0 for f, s, pa in zip(flips, same, a["individual_preference"]))
        t = next(t for t in noisy.truth if t["id"] == b["id"])
        assert t["preference_without_mistakes"] == a["overall_preference"]
        assert t["preference_mistake"] == (sign(b["overall_preference"]) != sign(a["overall_preference"]))
        mistakes += t["preference_mistake"]
        reversed_ += sign(b["overall_preference"]) == -sign(a["overall_preference"]) != 0
    assert 0.1 < mistakes / len(noisy.records) < 0.5 and reversed_ > 0
    with pytest.raises(ValueError, match="^preference_mistake_rate"):
        WorldConfig(preference_mistake_rate=1.5)
