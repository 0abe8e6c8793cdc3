"""Alignment: config, principle-tagged prompts, the reward (scalar RM, BT, remote judge, checker; final
answer, several principles, length penalty), and GRPO that raises checker-measured fulfilment, resumes,
and runs from its command line."""
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from rlbff_lib.synthetic import world as W
from rlbff_lib.alignment.grpo import (AlignmentConfig, PrincipleReward, RewardConfig, curves_from_history,
                                 judge_principle_score, launch_grpo, main, pick_train_properties, principle_prompts,
                                 train_grpo, validate_rows, yes_no_from_logprobs, yes_no_from_text)
from rlbff_lib.training.launch import TrainJob
from rlbff_lib.models.lm import ModelSizeConfig, load_causal_lm
from rlbff_lib.core.params import ParamError, build
from rlbff_lib.alignment.policy import PolicySFTConfig, fulfilment, train_policy_sft
from rlbff_lib.models.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer
from fakes.tiny_models import save_base, spread_model

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)
FIXED = {"concise": True, "bulleted_list": False, "worked_example": False, "bold_key_terms": False,
         "no_repetition": True}
TRAINED, HELD_OUT = "followup_question", "direct_answer"


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(list(W.corpus_texts(W.generate_world(W.WorldConfig(n_prompts=300, seed=0)))),
                           TokenizerConfig(vocab_size=1000))


@pytest.fixture(scope="module")
def base_dir(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("base_policy")
    return save_base(tok, TINY, path)


@pytest.fixture(scope="module")
def sft_policy(base_dir, tmp_path_factory):
    """A tiny SFT policy whose responses end with a follow-up question about half the time."""
    out = tmp_path_factory.mktemp("sft")
    cfg = PolicySFTConfig(name_or_path=str(base_dir), sft_steps=250, n_examples=600, domains=["general"],
                          fixed_properties=FIXED, learning_rate=1e-2, per_device_train_batch_size=8, max_length=256,
                          logging_steps=50, save_steps=1000)
    return train_policy_sft(cfg, out)["model_dir"]


@pytest.fixture(scope="module")
def random_rm(tok):
    return spread_model(tok, TINY, seed=4)


def grpo_cfg(**kw):
    args = dict(reward=RewardConfig(backend="checker", model_path=""), domains=["general"], train_properties=[TRAINED],
                n_prompts=256, learning_rate=1e-3, max_steps=30, num_generations=8, per_device_train_batch_size=32,
                max_completion_length=64, beta=0.02, logging_steps=5, save_steps=1000)
    args.update(kw)
    return AlignmentConfig(**args)


# ------------------------------------------------------------------ config and data


def test_config_validation_names_the_field():
    for kwargs, field in (({"train_properties": ["sparkly"]}, "train_properties"),
                          ({"train_properties": ["inline_comments"], "domains": ["general"]}, "train_properties"),
                          ({"num_generations": 1}, "num_generations"),
                          ({"per_device_train_batch_size": 12, "num_generations": 8}, "per_device_train_batch_size"),
                          ({"temperature": 0.0}, "temperature"), ({"beta": -0.1}, "beta"),
                          ({"vllm_mode": "remote"}, "vllm_mode"), ({"domains": ["poetry"]}, "domains")):
        with pytest.raises(ValueError, match=f"^{field}"):
            AlignmentConfig(**kwargs)
    for kwargs, field in (({"backend": "oracle"}, "backend"), ({"backend": "scalar", "model_path": ""}, "model_path"),
                          ({"backend": "judge", "judge_model": "m", "judge_base_url": "ftp://x"}, "judge_base_url"),
                          ({"backend": "judge", "judge_model": ""}, "judge_model"),
                          ({"judge_api_key_env": "sk-abc123 x"}, "judge_api_key_env"),
                          ({"length_penalty": -1.0}, "length_penalty")):
        with pytest.raises(ValueError, match=f"^{field}"):
            RewardConfig(**kwargs)
    with pytest.raises(ParamError, match="alignment.reward.backend"):
        build(AlignmentConfig, {"reward": {"backend": "oracle"}}, "alignment")
    raw = {"reward": {"backend": "bt", "model_path": "m"}, "use_vllm": True, "vllm_mode": "server",
           "chat_template_kwargs": {"enable_thinking": True}}
    cfg = build(AlignmentConfig, raw, "alignment")
    assert cfg.reward.label.startswith("Bradley-Terry") and cfg.use_vllm


def test_trl_config_makes_a_cpu_grpo_config(tmp_path):
    from rlbff_lib.training.trl_config import trl_config

    cfg = grpo_cfg(chat_template_kwargs={"enable_thinking": False})
    args = trl_config(cfg, tmp_path)
    assert args.bf16 is False and args.use_vllm is False and args.use_cpu is True
    assert args.num_generations == 8 and args.generation_batch_size == 32 and args.beta == 0.02
    assert args.gradient_checkpointing is False and args.remove_unused_columns is False
    assert args.chat_template_kwargs == {"enable_thinking": False} and args.max_completion_length == 64
    assert cfg.held_out_properties() == [p for p in W.DOMAIN_PROPERTIES["general"] if p != TRAINED]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^use_vllm"):
            trl_config(grpo_cfg(use_vllm=True, vllm_mode="server"), tmp_path)


def test_principle_prompts_hide_the_principle_from_the_policy():
    cfg = AlignmentConfig(reward=RewardConfig(backend="checker"), n_prompts=60, domains=["general", "stem", "code"],
                          train_properties=["followup_question", "arithmetic_correct", "inline_comments",
                                            "direct_answer"],
                          principles_per_prompt=2)
    rows = principle_prompts(cfg)
    assert len(rows) == 60 and rows == principle_prompts(cfg)
    for r in rows:
        assert len(r["principles"]) == len(r["properties"]) == 2 and len(set(r["properties"])) == 2
        for principle, prop in zip(r["principles"], r["properties"]):
            assert W.match_property(principle) == prop and r["domain"] in W.PROPERTIES[prop].domains
            assert all(principle not in m["content"] for m in r["prompt"])   # the policy never sees it
        assert r["prompt"][-1]["role"] == "user" and isinstance(json.loads(r["prompt_info"]), dict)
    assert {p for r in rows for p in r["properties"]} == set(cfg.train_properties)
    assert validate_rows([{"prompt": "hi", "principles": "is concise"}])[0]["prompt"] == [
        {"role": "user", "content": "hi"}]
    own = principle_prompts(AlignmentConfig(reward=RewardConfig(backend="checker"), n_prompts=10, domains=["general"],
                                            train_properties=[TRAINED], principle_texts={TRAINED: ["asks back"]}))
    assert {p for r in own for p in r["principles"]} == {"asks back"}
    with pytest.raises(ValueError, match="^principle_texts"):
        AlignmentConfig(principle_texts={TRAINED: []})
    with pytest.raises(ValueError, match="principles"):
        validate_rows([{"prompt": "hi", "principles": []}])
    with pytest.raises(ValueError, match="prompt"):
        validate_rows([{"prompt": [{"role": "user"}], "principles": ["x"]}])


def test_pick_train_properties_follows_the_reward_models_accuracy():
    acc = {"followup_question": 0.9, "concise": 0.8, "inline_comments": 0.99, "direct_answer": 0.55,
           "bulleted_list": 0.8}
    assert pick_train_properties(acc, ["general"], k=2) == ["followup_question", "bulleted_list"]
    assert pick_train_properties(acc, ["code"], k=5) == ["inline_comments", "followup_question", "concise"]
    with pytest.raises(ValueError, match="accuracy"):
        pick_train_properties({"direct_answer": 0.5}, ["general"])


# ------------------------------------------------------------------ the reward


def _completion(text):
    return [{"role": "assistant", "content": text}]


def test_checker_reward_scores_the_final_answer_averages_principles_and_penalises_length(tok):
    info = json.dumps({"lang": "en", "word_limit": 70, "topic": "sleep"})
    prompt = [{"role": "user", "content": "Any tips for sleeping well?"}]
    texts = ["<think>Should I ask a question?</think>Sleep at a fixed time.",     # only the thinking asks
             "Sleep at a fixed time. Anything else you would like to know?",
             "Great question! Sleep at a fixed time. Anything else?"]
    ids = [tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in texts]
    reward = PrincipleReward(RewardConfig(backend="checker", length_penalty=0.01), policy_tokenizer=tok)
    metrics = {}
    out = reward(prompts=[prompt] * 3, completions=[_completion(t) for t in texts], completion_ids=ids,
                 principles=[["ends with a follow-up question", "answers directly without filler"]] * 3,
                 properties=[["followup_question", "direct_answer"]] * 3, prompt_info=[info] * 3,
                 log_metric=lambda k, v: metrics.setdefault(k, v))
    expected = [0.5, 1.0, 0.5]   # mean over the two properties, on the final answer only
    assert out == pytest.approx([e - 0.01 * len(i) for e, i in zip(expected, ids)])
    assert metrics["principle_score"] == pytest.approx(2 / 3) and metrics["fulfilment"] == pytest.approx(2 / 3)
    assert metrics["length_penalty"] == pytest.approx(0.01 * sum(map(len, ids)) / 3)
    # without the policy tokenizer, the text is cut at "</think>" instead
    assert PrincipleReward(RewardConfig(backend="checker")).answers([_completion(texts[0])], None) == [
        "Sleep at a fixed time."]


def test_scalar_reward_is_the_principle_rm_score_of_the_final_answer(random_rm, tok):
    from rlbff_lib.reward_models.scorers import Scorer

    prompt = [{"role": "user", "content": "What should I know about budgeting?"}]
    answer = "A budget is a plan for where each month's income goes. Want more detail?"
    reward = PrincipleReward(RewardConfig(backend="scalar", model_path="unused"), policy_tokenizer=tok,
                             model=random_rm, tokenizer=tok)
    p1, p2 = "ends with a follow-up question", "is concise"
    texts = [answer, "<think>scratch work</think>" + answer]
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    out = reward(prompts=[prompt, prompt], completions=[_completion(t) for t in texts], completion_ids=ids,
                 principles=[[p1, p2], [p1, p2]])
    direct = Scorer("scalar", random_rm, tok)([prompt, prompt], [answer, answer], [p1, p2]).scores
    assert out[0] == pytest.approx(sum(direct) / 2, abs=1e-5)
    assert out[1] == pytest.approx(out[0], abs=1e-5)   # the thinking is not scored
    single = reward(prompts=[prompt], completions=[_completion(answer)], completion_ids=ids[:1], principles=[[p2]])
    assert single[0] == pytest.approx(direct[1], abs=1e-5) and abs(direct[0] - direct[1]) > 1e-3


def test_genrm_reward_is_the_genrm_score_of_the_final_answer(random_rm, tok):
    from rlbff_lib.reward_models.genrm import genrm_score

    prompt = [{"role": "user", "content": "Explain vaccines."}]
    answers = ["Vaccines train the immune system.", "They show the body a harmless copy. Want more?"]
    cfg = RewardConfig(backend="genrm", model_path="unused", genrm_max_new_tokens=6, max_length=256)
    reward = PrincipleReward(cfg, policy_tokenizer=tok, model=random_rm, tokenizer=tok)
    out = reward(prompts=[prompt] * 2, completions=[_completion("<think>x</think>" + a) for a in answers],
                 completion_ids=[tok.encode("<think>x</think>" + a, add_special_tokens=False) for a in answers],
                 principles=[["is concise", "ends with a follow-up question"]] * 2)
    # max_length counts the whole window: 256 - 6 reasoning tokens leave 250 for the prompt
    direct = genrm_score([prompt] * 4, [answers[0], answers[0], answers[1], answers[1]],
                         ["is concise", "ends with a follow-up question"] * 2, random_rm, tok, 6, 8, 250).scores
    assert out == pytest.approx([(direct[0] + direct[1]) / 2, (direct[2] + direct[3]) / 2])


def test_bt_reward_ignores_the_principle(base_dir, tok, tmp_path):
    from rlbff_lib.reward_models.scorers import Scorer, load_model

    model, btok = load_model("bt", base_dir)   # a BT model: the tiny causal LM with a (random) scalar head
    model.save_pretrained(tmp_path)
    btok.save_pretrained(tmp_path)
    reward = PrincipleReward(RewardConfig(backend="bt", model_path=str(tmp_path)), policy_tokenizer=tok)
    prompt = [{"role": "user", "content": "Tell me about recycling."}]
    answers = ["Recycling turns used materials into new products.", "Great question! Rinse containers first?"]
    ids = [tok.encode(a, add_special_tokens=False) for a in answers]
    a = reward(prompts=[prompt] * 2, completions=[_completion(x) for x in answers], completion_ids=ids,
               principles=[["is concise"], ["ends with a follow-up question"]])
    b = reward(prompts=[prompt] * 2, completions=[_completion(x) for x in answers], completion_ids=ids,
               principles=[["uses a bulleted list"], ["is concise"]])
    assert a == pytest.approx(b, abs=1e-6)
    assert a == pytest.approx(Scorer("bt", model, btok)([prompt] * 2, answers).scores, abs=1e-5)


# ------------------------------------------------------------------ remote judge (a local fake server)


class FakeJudge:
    """An OpenAI-compatible chat server on 127.0.0.1: answers Yes when the judged response ends with '?'.

    Modes per request, taken in order from ``script`` (then ``logprobs``): ``logprobs`` (Yes/No in
    top_logprobs), ``yes_only`` (No missing from the list), ``text`` (no logprobs, a written answer),
    ``500`` (a server error echoing the Authorization header), ``400`` (this request only), ``401``.
    Like vLLM it lists ``models`` at ``GET /v1/models``; the preflight's one-message probe is
    answered apart (counted in ``probes``, with logprobs unless ``logprobs=False``).
    """

    def __init__(self, script=(), models=("judge-1", "genrm"), logprobs=True):
        self.script, self.requests, self.lock = list(script), [], threading.Lock()
        self.models, self.logprobs, self.probes = list(models), logprobs, 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": m} for m in server.models]})

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if len(payload["messages"]) == 1:  # the preflight's probe
                    server.probes += 1
                    lp = {"content": [{"token": "Yes", "logprob": -0.1, "top_logprobs": [
                        {"token": "Yes", "logprob": -0.1}]}]} if server.logprobs and payload.get("logprobs") else None
                    return self._send(200, {"choices": [{"index": 0, "finish_reason": "length", "logprobs": lp,
                                                         "message": {"role": "assistant", "content": "Yes"}}]})
                with server.lock:
                    mode = server.script.pop(0) if server.script else "logprobs"
                    server.requests.append({"payload": payload, "auth": self.headers.get("Authorization")})
                if mode == "500":
                    return self._send(500, {"error": f"boom {self.headers.get('Authorization')}"})
                if mode in ("400", "401"):
                    return self._send(int(mode), {"error": {"message": "bad key" if mode == "401" else "too long"}})
                if payload["messages"][-1]["role"] == "principle":   # the GenRM's chat: reasoning + judgement
                    return self._genrm(payload, mode)
                response = payload["messages"][-2]["content"]
                yes = response.rstrip().endswith("?")
                lp_yes, lp_no = (-0.1, -2.5) if yes else (-3.0, -0.05)
                top = [{"token": "Yes", "logprob": lp_yes}, {"token": " No", "logprob": lp_no},
                       {"token": "Maybe", "logprob": -6.0}]
                if mode == "yes_only":
                    top = [t for t in top if t["token"] != " No"]
                choice = {"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": "Yes" if yes else "No"}}
                if mode != "text" and payload.get("logprobs"):
                    choice["logprobs"] = {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                                       "top_logprobs": top}]}
                self._send(200, {"choices": [choice]})

            def _genrm(self, payload, mode):
                yes = payload["messages"][-2]["content"].rstrip().endswith("?")
                pieces = ["It", " ends", " with", " a", " question", ".", "\n", "Final", " Judgement", ":",
                          " Yes" if yes else " No"]
                if mode == "nojudgement":
                    pieces = pieces[:6]
                tokens = [{"token": t, "logprob": -0.01, "top_logprobs": [{"token": t, "logprob": -0.01}]}
                          for t in pieces]
                if mode != "nojudgement":
                    tokens[-1]["top_logprobs"] = [{"token": " Yes", "logprob": -0.2 if yes else -2.2},
                                                  {"token": " No", "logprob": -1.9 if yes else -0.1}]
                tokens.append({"token": "<|im_end|>", "logprob": -0.01, "top_logprobs": []})  # EOS last, as vLLM's engine
                choice = {"index": 0, "finish_reason": "stop", "logprobs": {"content": tokens},
                          "message": {"role": "assistant", "content": "".join(pieces)}}
                self._send(200, {"choices": [choice]})

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def test_yes_no_readers():
    top = [{"token": " yes", "logprob": -0.5}, {"token": "Yes", "logprob": -1.0}, {"token": "No", "logprob": -2.0}]
    import math

    assert yes_no_from_logprobs(top) == pytest.approx(math.log(math.exp(-0.5) + math.exp(-1.0)) + 2.0)
    assert yes_no_from_logprobs([{"token": "No", "logprob": -0.1}, {"token": "x", "logprob": -4.0}]) == \
        pytest.approx(-4.0 + 0.1)   # the missing side gets the smallest listed log-probability
    assert yes_no_from_logprobs([{"token": "x", "logprob": -1.0}]) is None
    assert [yes_no_from_text(t) for t in ("Yes.", " no", "**Yes**", "Maybe", None)] == [1.0, -1.0, 1.0, None, None]


def test_judge_reward_reads_logprobs_retries_and_keeps_the_key_secret(monkeypatch):
    monkeypatch.setenv("RLBFF_TEST_JUDGE_KEY", "sk-secret-123")
    server = FakeJudge(script=["500", "logprobs", "yes_only", "text"])
    try:
        cfg = RewardConfig(backend="judge", judge_base_url=server.url, judge_model="judge-1",
                           judge_api_key_env="RLBFF_TEST_JUDGE_KEY", judge_concurrency=1, judge_max_retries=2)
        reward = PrincipleReward(cfg)
        reward._load()
        assert server.probes == 1  # the preflight asked for logprobs once (judge_mode logprobs)
        reward.client.cfg.backoff_base_s = 0.01
        prompt = [{"role": "user", "content": "Tips for sleep?"}]
        answers = ["Keep a fixed bedtime. Want more?", "Keep a fixed bedtime. Want more?", "Keep a fixed bedtime."]
        out = reward(prompts=[prompt] * 3, completions=[_completion(a) for a in answers],
                     principles=[["ends with a follow-up question"]] * 3)
        # 1st request: a 500 (retried), then logprobs: -0.1 - (-2.5); 2nd: No missing -> floor -6.0;
        # 3rd: no logprobs, the written answer "No" -> -1
        assert out == pytest.approx([2.4, -0.1 + 6.0, -1.0])
        assert len(server.requests) == 4
        first = server.requests[1]["payload"]
        assert first["model"] == "judge-1" and first["max_tokens"] == 1 and first["top_logprobs"] == 20
        assert "Only answer Yes or No." in first["messages"][-1]["content"]
        assert "ends with a follow-up question" in first["messages"][-1]["content"]
        assert all(r["auth"] == "Bearer sk-secret-123" for r in server.requests)
        # the GenRM's chat over the endpoint: log P(" Yes") - log P(" No") at the judgement token
        genrm = PrincipleReward(RewardConfig(backend="judge", judge_base_url=server.url, judge_model="genrm",
                                             judge_prompt="genrm", genrm_max_new_tokens=64, judge_concurrency=1))
        server.script = ["logprobs", "logprobs", "nojudgement", "logprobs"]
        g = genrm(prompts=[prompt] * 3, completions=[_completion(a) for a in answers],
                  principles=[["ends with a follow-up question"]] * 3)
        assert g == pytest.approx([-0.2 + 1.9, -0.2 + 1.9, 0.0])   # no judgement: 0.0 (NVIDIA's RLHF environment)
        sent = server.requests[-1]["payload"]
        assert sent["messages"][-1] == {"role": "principle", "content": "ends with a follow-up question"}
        assert sent["max_tokens"] == 64 and genrm.cfg.label.startswith("principle judge (genrm, genrm prompt")
        no = genrm(prompts=[prompt], completions=[_completion(answers[2])], principles=[["is concise"]])
        assert no == pytest.approx([-2.2 + 0.1])
        # a retryable failure left after the retries is redacted and counted
        from rlbff_lib.core.http import ChatClient, EndpointError, RequestFailed, TooManyFailures

        client = ChatClient(replace(cfg, judge_max_retries=0).endpoint())
        server.script = ["500"]
        with pytest.raises(RequestFailed) as err:
            client.complete([{"role": "user", "content": "hi"}, {"role": "user", "content": "there"}])
        assert "sk-secret-123" not in str(err.value) and "***" in str(err.value) and client.stats.failed == 1
        # a failure of one request (400) scores None; past 2% of the calls so far (3 + 3) the run fails
        server.script = ["logprobs", "400", "logprobs"]
        with pytest.raises(TooManyFailures, match=r"reward judge endpoint .* 1 of 6 requests failed"):
            reward(prompts=[prompt] * 3, completions=[_completion(a) for a in answers],
                   principles=[["is concise"]] * 3)
        # a refused key stops at the first answer, in one line naming the parameter, and sends nothing more
        server.script = ["401"] + ["logprobs"] * 5
        before = len(server.requests)
        with pytest.raises(EndpointError) as err:
            judge_principle_score(client, prompt, "x", "is concise")
        message = str(err.value)
        assert message.startswith(f"reward judge endpoint: HTTP 401 from {server.url} (bad key)")
        assert "alignment.grpo.reward.judge_api_key_env" in message and "sk-secret-123" not in message
        with pytest.raises(EndpointError):
            judge_principle_score(client, prompt, "y", "is concise")
        assert len(server.requests) == before + 1
        client.close()
    finally:
        server.close()


def test_judge_preflight_names_the_missing_model_logprobs_or_server(monkeypatch):
    import socket
    import time

    from rlbff_lib.core.http import EndpointError

    server = FakeJudge(models=("other-model",), logprobs=False)
    try:
        cfg = RewardConfig(backend="judge", judge_base_url=server.url, judge_model="judge-1")
        with pytest.raises(EndpointError, match=r"reward judge endpoint \(alignment.grpo.reward.judge_base_url=.*\) "
                                                r"does not serve 'judge-1' \(alignment.grpo.reward.judge_model\)"):
            PrincipleReward(cfg)._load()
        server.models.append("judge-1")
        with pytest.raises(EndpointError, match="returned no log-probabilities for 'judge-1'"):
            cfg.preflight()
        replace(cfg, judge_mode="answer").preflight()  # the written answer needs no logprobs
        assert not server.requests
    finally:
        server.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match=rf"judge_base_url=http://127.0.0.1:{port}/v1\) unreachable"):
        RewardConfig(backend="judge", judge_base_url=f"http://127.0.0.1:{port}/v1", judge_model="m").preflight()
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------ GRPO


@pytest.mark.slow
def test_grpo_with_a_verifiable_reward_raises_fulfilment_of_the_trained_principle(sft_policy, tmp_path):
    prompts = W.sample_policy_prompts(64, 777, ["general"], max_turns=1)
    props = [TRAINED, HELD_OUT, "concise"]

    def measure(path):
        return fulfilment(load_causal_lm(path), load_tokenizer(path), prompts, props, trained=[TRAINED],
                          temperature=1.0, num_samples=2, max_new_tokens=64, batch_size=64, seed=3)

    before = measure(sft_policy)
    cfg = grpo_cfg()
    rec = train_grpo(cfg, sft_policy, tmp_path)
    after = measure(rec["model_dir"])
    gain = after["rates"][TRAINED] - before["rates"][TRAINED]
    print(f"GRPO (checker reward) {TRAINED}: {before['rates'][TRAINED]:.3f} -> {after['rates'][TRAINED]:.3f} "
          f"(gain {gain:+.3f}); held-out {HELD_OUT}: {before['rates'][HELD_OUT]:.3f} -> "
          f"{after['rates'][HELD_OUT]:.3f}; tokens {before['mean_tokens']:.1f} -> {after['mean_tokens']:.1f}; "
          f"{rec['seconds']:.1f}s")
    assert 0.1 < before["rates"][TRAINED] < 0.9
    assert gain > 0.25
    assert after["terminated"] > 0.9   # still coherent: it stops
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert [p["step"] for p in curves] == [1, 5, 10, 15, 20, 25, 30]
    assert all(p["kl"] is not None and p["completion_length"] > 0 for p in curves)
    assert curves[-1]["fulfilment"] > curves[0]["fulfilment"] and curves[-1]["reward"] > curves[0]["reward"]
    assert rec["reward"]["label"].startswith("world checkers") and rec["held_out_properties"][0] != TRAINED
    assert (tmp_path / "model" / "model.safetensors").exists() and rec["resumed_from"] is None
    assert json.loads((tmp_path / "training_log.json").read_text())["global_step"] == 30


@pytest.mark.slow
def test_grpo_with_the_scalar_rm_resumes_and_runs_from_the_command_line(sft_policy, random_rm, tok, tmp_path,
                                                                        capfd, monkeypatch):
    monkeypatch.setenv("RLBFF_PAPERMILL", "1")   # as under papermill: no progress bars, one line per log
    # the scalar backend inside GRPOTrainer, with an injected (random) principle RM
    cfg = grpo_cfg(max_steps=2, save_steps=2, num_generations=2, per_device_train_batch_size=4,
                   max_completion_length=8, logging_steps=1, reward=RewardConfig(backend="scalar", model_path="x"),
                   principles_per_prompt=1)
    reward = PrincipleReward(cfg.reward, policy_tokenizer=tok, model=random_rm, tokenizer=tok)
    capfd.readouterr()
    first = train_grpo(cfg, sft_policy, tmp_path, reward=reward)
    out, err = capfd.readouterr()
    assert [line.split(" reward")[0] for line in out.splitlines() if line.startswith("[grpo]")] == [
        "[grpo] step 1/2", "[grpo] step 2/2"]
    assert "it/s" not in out + err and "\r" not in out + err and "{'loss'" not in out
    assert first["global_step"] == 2 and len(first["curves"]) == 2
    assert all(p["principle_score"] is not None for p in first["curves"])
    assert train_grpo(cfg, sft_policy, tmp_path, reward=reward)["reused"]   # finished: not trained again
    # a crash after the last checkpoint, before the final save: loaded from checkpoint-2, no extra step
    (tmp_path / "training_log.json").unlink()
    __import__("shutil").rmtree(tmp_path / "model")
    again = train_grpo(cfg, sft_policy, tmp_path, reward=reward)
    assert again["resumed_from"].endswith("checkpoint-2") and again["global_step"] == 2
    assert len(again["curves"]) == 2 and (tmp_path / "model" / "model.safetensors").exists()
    longer = grpo_cfg(**{**cfg.__dict__, "max_steps": 3})
    second = train_grpo(longer, sft_policy, tmp_path, reward=reward)
    assert second["resumed_from"].endswith("checkpoint-2") and second["global_step"] == 3
    # the accelerate subprocess path: launch_grpo writes a job and explicit rows; the child runs the
    # module's command line (`python -m rlbff_lib.alignment.grpo train --config JOB`), run in-process here
    rows = [{"prompt": [{"role": "user", "content": "Any tips for budgeting?"}],
             "principles": ["ends with a follow-up question"], "properties": ["followup_question"],
             "prompt_info": {"lang": "en", "word_limit": 70}}] * 4
    launched = []

    def fake_launch(module, config_path, accelerate_config="cpu.yaml", num_processes=None, env=None, prefix=""):
        launched.append((module, accelerate_config))
        assert main(["train", "--config", str(config_path)]) == 0

    monkeypatch.setattr("rlbff_lib.training.launch.launch", fake_launch)
    job_cfg = grpo_cfg(max_steps=1, num_generations=2, per_device_train_batch_size=4, max_completion_length=8,
                       logging_steps=1, save_steps=10)
    log = launch_grpo(job_cfg, sft_policy, tmp_path / "cli", rows=rows, accelerate_config="cpu.yaml")
    assert launched == [("rlbff_lib.alignment.grpo", "cpu.yaml")]
    job = TrainJob.read(tmp_path / "cli" / "job.json")
    assert job.train_file.endswith("rows.jsonl") and build(AlignmentConfig, job.config) == job_cfg
    assert log["n_rows"] == 4 and log["global_step"] == 1 and (tmp_path / "cli" / "model").is_dir()
    assert launch_grpo(job_cfg, sft_policy, tmp_path / "cli", rows=rows) == log and len(launched) == 1  # reused


def test_curves_from_history_keeps_one_point_per_logging_step():
    history = [{"step": 1, "reward": 0.5, "kl": 0.0, "completions/mean_length": 12.0, "loss": 0.1},
               {"step": 1, "train_runtime": 3.0},
               {"step": 2, "reward": float("nan"), "fulfilment": 0.75}]
    pts = curves_from_history(history)
    assert [p["step"] for p in pts] == [1, 2]
    assert pts[0]["completion_length"] == 12.0 and pts[0]["fulfilment"] is None
    assert pts[1]["reward"] is None and pts[1]["fulfilment"] == 0.75
