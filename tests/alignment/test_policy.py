"""The policy: SFT data from the world, config, final-answer extraction, generation, verifiable
fulfilment, and an SFT warm start of a tiny Qwen3 that learns to write world-like responses."""
import json
import shutil

import pytest

from rlbff_lib.synthetic import world as W
from rlbff_lib.training.launch import TrainJob, find_resume_checkpoint
from rlbff_lib.models.lm import ModelSizeConfig, load_causal_lm
from rlbff_lib.core.params import ParamError, build
from rlbff_lib.alignment.policy import (Generation, PolicySFTConfig, data_fulfilment, draw_values, encode_prompt, final_answer,
                              fulfilment, fulfilment_gain, generate, main, sft_examples, sft_rows, split_thinking,
                              train_policy_sft)
from rlbff_lib.models.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer
from fakes.tiny_models import save_base

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)
# Only direct_answer and followup_question vary; the rest are fixed so responses stay short.
FIXED = {"concise": True, "bulleted_list": False, "worked_example": False, "bold_key_terms": False,
         "no_repetition": True}
VARIED = ("direct_answer", "followup_question")


@pytest.fixture(scope="module")
def tok():
    # corpus of the world the thresholds below were measured on (1-3 remarks per feedback text)
    world = W.generate_world(W.WorldConfig(n_prompts=300, seed=0, min_comments=1, max_comments=3))
    return train_tokenizer(list(W.corpus_texts(world)), TokenizerConfig(vocab_size=1000))


@pytest.fixture(scope="module")
def base_dir(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("base_policy")
    return save_base(tok, TINY, path)


def sft_cfg(base_dir, **kw):
    args = dict(name_or_path=str(base_dir), sft_steps=250, n_examples=600, domains=["general"], fixed_properties=FIXED,
                learning_rate=1e-2, per_device_train_batch_size=8, max_length=256, logging_steps=25, save_steps=125)
    args.update(kw)
    return PolicySFTConfig(**args)


@pytest.fixture(scope="module")
def sft_run(base_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("policy_sft")
    cfg = sft_cfg(base_dir)
    return cfg, out, train_policy_sft(cfg, out)


@pytest.fixture(scope="module")
def eval_prompts():
    return W.sample_policy_prompts(48, 12345, ["general"], max_turns=1)


# ------------------------------------------------------------------ config and data


def test_config_validation_names_the_field():
    for kwargs, field in (({"sft_steps": -1}, "sft_steps"), ({"domains": ["poetry"]}, "domains"),
                          ({"property_rate": 1.5}, "property_rate"), ({"fixed_properties": {"shiny": True}},
                                                                      "fixed_properties"),
                          ({"word_limit": 10}, "word_limit"), ({"learning_rate": 2.0}, "learning_rate"),
                          ({"name_or_path": " "}, "name_or_path"), ({"n_examples": 0}, "n_examples")):
        with pytest.raises(ValueError, match=f"^{field}"):
            PolicySFTConfig(**kwargs)
    with pytest.raises(ParamError, match="policy.sft_steps"):
        build(PolicySFTConfig, {"sft_steps": "many"}, "policy")


def test_paper_scale_config_skips_sft(tmp_path):
    cfg = build(PolicySFTConfig, {"name_or_path": "Qwen/Qwen3-32B", "sft_steps": 0}, "policy")
    rec = train_policy_sft(cfg, tmp_path)
    assert rec["skipped"] and rec["model_dir"] == "Qwen/Qwen3-32B"
    assert not any(tmp_path.iterdir())   # nothing trained, nothing written


def test_sft_data_has_checkable_properties_at_the_configured_rate(tmp_path):
    cfg = PolicySFTConfig(n_examples=400, domains=["general", "stem"], fixed_properties={"concise": True})
    ex = sft_examples(cfg)
    assert len(ex) == 400 and {e["domain"] for e in ex} == {"general", "stem"}
    for e in ex:   # the rendered response has exactly the drawn properties
        assert W.check_all(e["domain"], e["response"], e["prompt_info"]) == e["values"]
        assert e["values"]["concise"] is True
    rates = data_fulfilment(ex, ["followup_question", "direct_answer", "worked_example", "arithmetic_correct"])
    assert all(0.4 < r < 0.6 for r in rates.values()), rates
    assert sft_examples(cfg)[7] == ex[7]                                    # deterministic
    assert sft_examples(PolicySFTConfig(n_examples=400, data_seed=1))[7]["response"] != ex[7]["response"]
    rows = sft_rows(ex[:2])
    assert rows[0]["prompt"] == ex[0]["context"] and rows[0]["completion"] == [
        {"role": "assistant", "content": ex[0]["response"]}]
    rng = __import__("random").Random(0)
    values = draw_values("code", 0.0, rng, {"inline_comments": True, "bold_key_terms": True})
    assert values["inline_comments"] is True and "bold_key_terms" not in values   # inapplicable fixed ones ignored
    assert not any(v for k, v in values.items() if k != "inline_comments")


# ------------------------------------------------------------------ final answer and generation


def test_final_answer_is_the_text_after_think(tok):
    assert final_answer("<think>\nplan it\n</think>\n\nThe answer is 4.") == "The answer is 4."
    assert final_answer("no thinking here ") == "no thinking here"
    assert final_answer("<think>a</think>b</think> c") == "c"
    assert final_answer("<think>\nstill thinking when the budget ran out") == ""
    # on ids: the decoder drops special tokens, so the cut is made on the </think> token itself
    ids = tok.encode("<think>\nlet me see\n</think>\n\nThe answer is 4.", add_special_tokens=False)
    assert "</think>" not in tok.decode(ids, skip_special_tokens=True)
    thinking, answer = split_thinking(ids, tok)
    assert thinking == "let me see" and answer == "The answer is 4."
    assert split_thinking(tok.encode("Plain answer.", add_special_tokens=False), tok) == ("", "Plain answer.")
    cut = tok.encode("<think>\nno end in sight", add_special_tokens=False)
    assert split_thinking(cut, tok) == ("no end in sight", "")


def test_generation_is_reproducible_and_padding_invariant(base_dir, tok):
    model = load_causal_lm(base_dir)
    convs = [[{"role": "user", "content": "Tell me about recycling."}],
             [{"role": "user", "content": "Can you explain black holes, the event horizon and gravity in detail?"}]]
    greedy = generate(model, tok, convs, max_new_tokens=12, temperature=0.0, batch_size=2)
    alone = generate(model, tok, convs[:1], max_new_tokens=12, temperature=0.0, batch_size=1)
    assert greedy[0].text == alone[0].text   # left padding in a batch changes nothing
    s1 = generate(model, tok, convs, max_new_tokens=12, temperature=1.0, num_samples=3, seed=5)
    s2 = generate(model, tok, convs, max_new_tokens=12, temperature=1.0, num_samples=3, seed=5)
    assert [g.text for g in s1] == [g.text for g in s2] and [g.prompt_index for g in s1] == [0, 0, 0, 1, 1, 1]
    assert len({g.text for g in s1[:3]}) > 1   # sampling varies within a prompt
    assert all(1 <= g.n_tokens <= 12 and g.n_tokens == 12 or g.terminated for g in s1)
    ids, cut = encode_prompt(tok, convs[1], max_prompt_tokens=10)
    assert cut and len(ids) == 10
    with pytest.raises(ValueError, match="num_samples"):
        generate(model, tok, convs, temperature=0.0, num_samples=2)


def test_fulfilment_aggregates_checker_results(tok):
    prompts = [{"context": [], "domain": "general", "prompt_info": {"lang": "en", "word_limit": 70}},
               {"context": [], "domain": "code", "prompt_info": {"lang": "en", "word_limit": 70, "topic": "is_even"}}]
    gens = [Generation(0, "", "", "Great question! Photosynthesis turns light into energy. Want more?", 14, True),
            Generation(0, "", "", "Photosynthesis turns light into energy.", 8, True),
            Generation(1, "", "", "Use `n % 2 == 0`. Anything else you would like to know?", 30, False)]
    res = fulfilment(None, tok, prompts, ["direct_answer", "followup_question", "bold_key_terms"],
                     trained=["followup_question"], generations=gens)
    assert res["rates"]["direct_answer"] == pytest.approx(2 / 3)
    assert res["rates"]["followup_question"] == pytest.approx(2 / 3)
    assert res["counts"]["bold_key_terms"] == 2 and res["rates"]["bold_key_terms"] == 0.0   # not on code prompts
    z2 = 1.959964 ** 2  # Wilson at 0 of n: [0, z^2 / (n + z^2)]
    assert res["rates_ci"]["bold_key_terms"] == pytest.approx([0.0, z2 / (2 + z2)], abs=1e-6)
    assert res["rates_ci"]["direct_answer"][0] < 2 / 3 < res["rates_ci"]["direct_answer"][1]
    assert res["trained"] == pytest.approx(2 / 3) and res["held_out"] == pytest.approx((2 / 3 + 0) / 2)
    assert res["mean_tokens"] == pytest.approx(52 / 3) and res["terminated"] == pytest.approx(2 / 3)
    assert res["mean_words"] == pytest.approx((9 + 5 + 13) / 3) and res["n_responses"] == 3
    with pytest.raises(ValueError, match="properties"):
        fulfilment(None, tok, prompts, ["sparkly"], generations=gens)


def test_fulfilment_gain_compares_seeds():
    base = [{"trained": 0.40}, {"trained": 0.44}]
    runs = [{"trained": 0.70}, {"trained": 0.74}, {"trained": 0.72}]
    g = fulfilment_gain(base, runs)
    assert g["gain"] == pytest.approx(0.30) and g["seed_std"] == pytest.approx(0.02) and g["significant"]
    noisy = fulfilment_gain(base, [{"trained": 0.2}, {"trained": 0.9}, {"trained": 0.5}])
    assert not noisy["significant"] and noisy["gain"] == pytest.approx(1.6 / 3 - 0.42)
    one = fulfilment_gain(base, [{"trained": 0.9}])
    assert not one["significant"] and one["seed_std"] != one["seed_std"]   # NaN: one seed proves nothing
    assert one["ci"] is None and one["p_value"] is None
    # two seeds, gain 0.35 > 2 x std 0.07 (the old bar), but Welch on 1 df: 0.35 +- 12.706 x 0.05 spans 0
    two = fulfilment_gain([{"trained": 0.4}, {"trained": 0.4}], [{"trained": 0.7}, {"trained": 0.8}])
    assert two["ci"] == pytest.approx([0.35 - 12.706 * 0.05, 0.35 + 12.706 * 0.05], abs=1e-4)
    assert not two["significant"] and two["p_value"] > 0.05 and two["test"] == "welch"
    with pytest.raises(ValueError, match="baseline"):
        fulfilment_gain([], runs)


# ------------------------------------------------------------------ SFT warm start


@pytest.mark.slow
def test_sft_learns_coherent_responses_with_varied_properties(sft_run, base_dir, eval_prompts):
    cfg, out, rec = sft_run
    losses = [p["loss"] for p in rec["train"]]
    assert losses[0] > 5.0 and losses[-1] < 1.0, losses
    assert (out / "model" / "model.safetensors").exists() and (out / "training_log.json").exists()
    assert json.loads((out / "training_log.json").read_text())["extra"]["n_dropped_too_long"] == 0
    props = list(VARIED) + ["concise", "no_repetition"]
    policy, ptok = load_causal_lm(out / "model"), load_tokenizer(out / "model")
    after = fulfilment(policy, ptok, eval_prompts, props, temperature=1.0, num_samples=2, max_new_tokens=96)
    before = fulfilment(load_causal_lm(base_dir), ptok, eval_prompts, props, temperature=1.0, max_new_tokens=96)
    print("SFT fulfilment", json.dumps({k: after[k] for k in ("rates", "terminated", "language_ok", "mean_words")}))
    assert before["terminated"] < 0.3 and after["terminated"] > 0.9         # it learned to stop
    assert after["language_ok"] > 0.75                                      # ... in English
    assert 5 < after["mean_words"] < 60
    for p in VARIED:   # each varied property both holds and fails: GRPO has room to move it
        assert 0.1 < after["rates"][p] < 0.97, (p, after["rates"])


@pytest.mark.slow
def test_sft_is_not_redone_and_resumes_from_a_checkpoint(sft_run, tmp_path):
    cfg, out, rec = sft_run
    again = train_policy_sft(cfg, out)     # finished with the same config: returned, not retrained
    assert again["reused"] and again["global_step"] == 250 and again["train"] == rec["train"]
    resume, bad = find_resume_checkpoint(out / "checkpoints")
    assert resume is not None and resume.endswith("checkpoint-250") and bad == []
    # an interrupted longer run: a copy of checkpoint-250 is resumed and trained to the end
    shutil.copytree(resume, tmp_path / "checkpoints" / "checkpoint-250")
    longer = sft_cfg(cfg.name_or_path, sft_steps=254)
    more = train_policy_sft(longer, tmp_path)
    assert more["resumed_from"].endswith("checkpoint-250") and more["global_step"] == 254
    assert [p["step"] for p in more["train"]] == [p["step"] for p in rec["train"]]   # history restored
    assert (tmp_path / "model" / "model.safetensors").exists()


def test_command_line_runs_a_job(base_dir, tmp_path):
    config = {"sft_steps": 3, "n_examples": 24, "domains": ["general"], "fixed_properties": FIXED,
              "per_device_train_batch_size": 4, "max_length": 256, "logging_steps": 1, "save_steps": 10}
    job = TrainJob(model=str(base_dir), train_file="", output_dir=str(tmp_path / "out"), config=config)
    assert main(["train", "--config", str(job.write(tmp_path / "job.json"))]) == 0
    log = json.loads((tmp_path / "out" / "training_log.json").read_text())
    assert log["global_step"] == 3 and log["extra"]["config"]["name_or_path"] == str(base_dir)
    assert (tmp_path / "out" / "model" / "model.safetensors").exists()
