"""Generation through a server gives what HF generate gives: the same tiny model served by the project's
OpenAI-compatible GenRM server (real log-probabilities) and run in-process, greedy decoding, compared
record by record (policy answers) and score by score (GenRM judgement); a missing server fails in
seconds naming the parameter."""
import socket
import threading
import time

import pytest
import torch

from rlbff_lib.core.http import EndpointError
from rlbff_lib.evaluation.policy_bench import PolicyEvalConfig, generate_answers
from rlbff_lib.models.generation import fit_messages, judgement_score, served_chat, server_endpoint
from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, answer_token_ids, train_tokenizer
from rlbff_lib.reward_models.genrm import ensure_principle_role, genrm_messages, genrm_score, pin_thinking
from rlbff_lib.reward_models.genrm_server import make_server
from rlbff_lib.reward_models.scorers import load_scorer
from rlbff_lib.stages.rm_eval import ModelEvalConfig, RMEvalConfig, load_model
from fakes.tiny_models import spread_model

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=256)
CONVS = [[{"role": "user", "content": f"Write a haiku {i} about leaves falling {'x' * (i % 5)}."}] for i in range(24)]
RESPONSES = [f"Leaves {i} fall." for i in range(24)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random tiny Qwen3 whose EOS, " Yes" and " No" rows point along its mean hidden state, so that
    greedy decoding stops on some inputs (not all) and ranks both answers high at some stops."""
    torch.set_num_threads(1)
    texts = ["Final Judgement: Yes", "Final Judgement: No", "Write a haiku about leaves falling."] * 30
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=400))
    ensure_principle_role(tok)
    pin_thinking(tok, False)
    model = spread_model(tok, TINY, seed=3)
    model.generation_config.eos_token_id = tok.eos_token_id
    yes, no = answer_token_ids(tok, leading_space=True)
    ids = tok(texts[:3] * 3, return_tensors="pt", padding=True)["input_ids"]
    with torch.no_grad():
        h = model.model(input_ids=ids).last_hidden_state.reshape(-1, TINY.hidden_size)
        w = model.lm_head.weight.detach().clone()
        top = (h @ w.T).max(1).values.mean()
        mean, gen = h.mean(0), torch.Generator().manual_seed(0)
        for t, scale in ((tok.eos_token_id, 1.0), (yes, 1.2), (no, 1.2)):
            w[t] = scale * mean / mean.norm() * (top / mean.norm()) + torch.randn(TINY.hidden_size, generator=gen) * w.std()
    model.lm_head.weight = torch.nn.Parameter(w)
    model.config.tie_word_embeddings = False
    path = tmp_path_factory.mktemp("genrm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def served(model_dir):
    srv = make_server(model_dir, "genrm")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"base_url": f"http://127.0.0.1:{srv.server_address[1]}/v1", "model": "genrm", "concurrency": 2}
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def local(model_dir):
    from rlbff_lib.models.lm import load_causal_lm
    from rlbff_lib.models.tokenizer import load_tokenizer

    return load_causal_lm(model_dir).eval(), load_tokenizer(model_dir)


def test_policy_answers_are_the_same_through_the_server(served, local):
    model, tok = local
    cfg_hf = PolicyEvalConfig(max_new_tokens=12, batch_size=4, max_prompt_tokens=200)
    cfg_srv = PolicyEvalConfig(max_new_tokens=12, batch_size=4, max_prompt_tokens=200, generation_server=served)
    convs = [genrm_messages(c, r, "is a haiku") for c, r in zip(CONVS, RESPONSES)]  # where this model stops
    temps = [0.0] * len(convs)
    hf = generate_answers(model, tok, convs, temps, cfg_hf, seed=0)
    srv = generate_answers(None, tok, convs, temps, cfg_srv, seed=0)
    assert [g.__dict__ for g in srv] == [g.__dict__ for g in hf]
    stopped = sum(g.terminated for g in hf)
    assert 0 < stopped < len(hf)  # both kinds of record compared: stopped at EOS, cut at max_new_tokens
    assert {g.n_tokens for g in hf if not g.terminated} == {12}


def test_genrm_scores_are_the_same_through_the_server(served, local, model_dir):
    model, tok = local
    hf = genrm_score(CONVS, RESPONSES, "is a haiku", model, tok, max_new_tokens=12, batch_size=4,
                     max_prompt_length=200)
    mcfg = RMEvalConfig(sweep={"model": None}, models={"genrm": {"kind": "genrm", "path": str(model_dir), "max_length": 212,
                                          "max_new_tokens": 12, "generation_server": served}}).models["genrm"]
    scorer = load_model(mcfg)
    assert scorer.model is None and scorer.prompt_budget == 200
    res = scorer(CONVS, RESPONSES, "is a haiku")
    assert res.texts == hf.texts and res.judged == hf.judged and res.truncated == hf.truncated
    assert 0 < sum(hf.judged) < len(CONVS)  # scores read and scores missing (−50) both compared
    assert res.scores == pytest.approx(hf.scores, abs=1e-4)
    assert scorer.info()["server"].endswith("(genrm)")


def test_judgement_score_reads_the_token_before_eos():
    top = [{"token": " Yes", "logprob": -0.5}, {"token": " No", "logprob": -2.0}]
    ans = {"finish_reason": "stop", "tokens": [{"token": "x", "top": []}, {"token": " Yes", "top": top},
                                               {"token": "<eos>", "top": []}]}
    assert judgement_score(ans, 20) == pytest.approx(1.5)
    assert judgement_score({**ans, "finish_reason": "length"}, 20) is None      # no EOS
    assert judgement_score(ans, 1) is None                                     # " No" outside the top 1
    assert judgement_score({"finish_reason": "stop", "tokens": ans["tokens"][-1:]}, 20) is None  # EOS first
    assert judgement_score(None, 20) is None                                   # the request failed


def test_over_long_prompts_lose_their_oldest_turns(local):
    _, tok = local
    conv = [{"role": "system", "content": "Be brief."}]
    for i in range(6):
        conv += [{"role": "user", "content": f"Write a haiku {i} about leaves falling."},
                 {"role": "assistant", "content": f"Leaves {i} fall."}]
    conv.append({"role": "user", "content": "Once more."})
    kept, cut = fit_messages(tok, conv, 10_000)
    assert kept == conv and not cut
    kept, cut = fit_messages(tok, conv, 80)
    assert cut and kept[0] == conv[0] and kept[-1] == conv[-1] and kept[1]["role"] == "user"
    assert kept[1:] == conv[len(conv) - len(kept) + 1:]  # a suffix of whole turns


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_missing_server_fails_in_seconds_naming_the_parameter(model_dir):
    gone = {"base_url": f"http://127.0.0.1:{_closed_port()}/v1", "model": "genrm"}
    mcfg = RMEvalConfig(sweep={"model": None}, models={"genrm": {"kind": "genrm", "path": str(model_dir), "max_length": 212,
                                          "generation_server": gone}}).models["genrm"]
    start = time.monotonic()
    with pytest.raises(EndpointError, match=r"rm_eval\.models\.genrm\.generation_server\.base_url"):
        load_model(mcfg)
    with pytest.raises(EndpointError, match=r"alignment\.evaluation\.generation_server\.base_url"):
        PolicyEvalConfig(generation_server=gone).preflight()
    assert time.monotonic() - start < 10


def test_bad_generation_server_params_fail_at_once(model_dir):
    with pytest.raises(ValueError, match=r"alignment\.evaluation\.generation_server: unknown keys \['url'\]"):
        PolicyEvalConfig(generation_server={"url": "http://x/v1", "model": "m"})
    with pytest.raises(ValueError, match=r"generation_server\.model: must be a non-empty string"):
        server_endpoint({"base_url": "http://x/v1"}, "generation_server", "s")
    with pytest.raises(ValueError, match="only a genrm model generates"):
        ModelEvalConfig(kind="scalar", generation_server={"base_url": "http://x/v1", "model": "m"})
    with pytest.raises(ValueError, match="only the genrm kind generates"):
        load_scorer("bt", model_dir, server=server_endpoint({"base_url": "http://x/v1", "model": "m"}, "p", "s"))


def test_served_answers_count_tokens_and_flag_cut_prompts(served, local):
    _, tok = local
    server = server_endpoint(served, "p", "s")
    long = [{"role": "user", "content": "leaves " * 60}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "Write a haiku."}]
    a, b = served_chat([CONVS[0], long], server, tok, max_new_tokens=5, max_prompt_tokens=40)
    assert not a["prompt_truncated"] and b["prompt_truncated"]
    assert a["n_tokens"] == len(a["tokens"]) <= 5 and a["terminated"] == (a["finish_reason"] == "stop")
