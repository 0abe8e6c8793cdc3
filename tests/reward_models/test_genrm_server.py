"""The project's GenRM server: OpenAI chat-completions format, the model's real log-probabilities, EOS last,
the model folder's own (pinned) chat template; the preflight and the alignment judge's reading accept it."""
import json
import threading
import urllib.error
import urllib.request

import pytest
import torch

from rlbff_lib.core.http import EndpointError, check_endpoint
from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.reward_models.genrm import genrm_messages, pin_thinking, rlhf_judge_reward
from rlbff_lib.reward_models.genrm_server import make_server, serve_subprocess
from fakes.tiny_models import spread_model

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=256)
MSGS = genrm_messages([{"role": "user", "content": "Write a haiku."}], "Leaves fall. Final Judgement: Yes",
                      "is a haiku")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    texts = ["Final Judgement: Yes", "Final Judgement: No", "Write a haiku about leaves falling."] * 30
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=400))
    pin_thinking(tok, False)
    path = tmp_path_factory.mktemp("genrm")
    model = spread_model(tok, TINY, seed=3)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(model_dir):
    srv = make_server(model_dir, "genrm")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", srv
    srv.shutdown()
    srv.server_close()


def post(url, body):
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_answers_with_the_models_own_log_probabilities(server, model_dir):
    url, srv = server
    from rlbff_lib.models.lm import load_causal_lm
    from rlbff_lib.models.tokenizer import load_tokenizer

    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir).eval()
    body = post(url, {"model": "genrm", "messages": MSGS, "max_tokens": 24, "temperature": 0.0, "logprobs": True,
                      "top_logprobs": 20})
    choice = body["choices"][0]
    entries = choice["logprobs"]["content"]
    prompt = tok(tok.apply_chat_template(MSGS, tokenize=False, add_generation_prompt=True),
                 add_special_tokens=False)["input_ids"]
    assert prompt[-4:] == tok("<think>\n\n</think>\n\n", add_special_tokens=False)["input_ids"][-4:]  # pinned: off
    # oracle: ONE forward pass over prompt + the greedy continuation, log-softmax at every position
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(len(entries)):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
        lp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    gen = ids[len(prompt):]
    assert [e["token"] for e in entries] == [tok.decode([t]) for t in gen]
    for k, (e, t) in enumerate(zip(entries, gen)):
        row = lp[len(prompt) - 1 + k]
        assert e["logprob"] == pytest.approx(row[t].item(), abs=1e-4)
        top_v, top_i = row.topk(20)
        assert [a["token"] for a in e["top_logprobs"]] == [tok.decode([i]) for i in top_i.tolist()]
        assert [a["logprob"] for a in e["top_logprobs"]] == pytest.approx(top_v.tolist(), abs=1e-4)
    if choice["finish_reason"] == "stop":
        assert gen[-1] == tok.eos_token_id and len(gen) <= 24  # EOS is the last entry, as vLLM's engine gives it
    else:
        assert choice["finish_reason"] == "length" and len(gen) == 24
    assert choice["message"]["content"] == tok.decode([t for t in gen if t != tok.eos_token_id],
                                                      skip_special_tokens=True)
    assert isinstance(rlhf_judge_reward(choice["message"]["content"], [
        {"token": e["token"], "logprob": e["logprob"], "top": [{"token": a["token"], "logprob": a["logprob"]}
                                                              for a in e["top_logprobs"]]} for e in entries],
        choice["finish_reason"]), float)


def test_refuses_bad_requests_like_vllm(server):
    url, _ = server
    with pytest.raises(urllib.error.HTTPError) as e:
        post(url, {"model": "gpt-4", "messages": MSGS})
    assert e.value.code == 404 and "does not exist" in json.loads(e.value.read())["message"]
    with pytest.raises(urllib.error.HTTPError) as e:
        post(url, {"model": "genrm", "messages": MSGS, "logprobs": True, "top_logprobs": 21})
    assert e.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as e:
        post(url, {"model": "genrm", "messages": MSGS, "max_tokens": 10_000})
    assert e.value.code == 400 and "maximum context length" in json.loads(e.value.read())["message"]


def test_the_preflight_accepts_it_and_names_a_wrong_model(server):
    url, _ = server
    assert check_endpoint(url, "genrm", need_logprobs=True) == ["genrm"]
    with pytest.raises(EndpointError, match="judge_model"):
        check_endpoint(url, "Qwen3-Nemotron-32B-GenRM-Principle", model_param="judge_model")


@pytest.mark.slow
def test_the_stage_starts_and_stops_it(model_dir):
    with serve_subprocess(model_dir, "genrm") as url:
        assert check_endpoint(url, "genrm") == ["genrm"]
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/models", timeout=2)
    with pytest.raises(FileNotFoundError, match="judge server"):
        with serve_subprocess(model_dir / "missing"):
            pass
