"""The scoring service: a tiny scalar / BT RM served on a free localhost port, scored by concurrent clients, the
same scores as in process; requests batched together; bad requests named; the TRL adapter; GRPO steps against
the served reward."""
import asyncio
import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from fakes.tiny_models import save_base, spread_model
from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.reward_models.scorers import load_scorer
from rlbff_lib.reward_models.serve import LocalReplica, ScoreService, ServedScorer, serve, served_reward
from rlbff_lib.synthetic import world as W

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(list(W.corpus_texts(W.generate_world(W.WorldConfig(n_prompts=60, seed=1)))),
                           TokenizerConfig(vocab_size=600))


@pytest.fixture(scope="module")
def rm_dirs(tok, tmp_path_factory):
    """A scalar RM (causal LM with large random weights) and a BT RM (one-output classifier) saved as folders."""
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    scalar = tmp_path_factory.mktemp("scalar")
    lm = spread_model(tok, TINY, seed=2)
    lm.save_pretrained(scalar)
    tok.save_pretrained(scalar)
    bt = tmp_path_factory.mktemp("bt")
    torch.manual_seed(5)
    clf = Qwen3ForSequenceClassification(Qwen3Config(**{**lm.config.to_dict(), "num_labels": 1,
                                                        "pad_token_id": tok.pad_token_id}))
    with torch.no_grad():
        for p in clf.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
    clf.save_pretrained(bt)
    tok.save_pretrained(bt)
    return {"scalar": scalar, "bt": bt}


def start(kind: str, path, max_length: int = 256, max_wait_s: float = 0.05) -> tuple[str, ScoreService]:
    """The service on a free port in a daemon thread; returns its URL."""
    service = ScoreService([LocalReplica(load_scorer(kind, path, max_length=max_length, batch_size=4))], kind,
                           str(path), max_rows=64, max_wait_s=max_wait_s)
    ready, port = threading.Event(), []
    threading.Thread(target=lambda: asyncio.run(serve(service, "127.0.0.1", 0, lambda p: (port.append(p),
                                                                                          ready.set()))),
                     daemon=True).start()
    assert ready.wait(60)
    return f"http://127.0.0.1:{port[0]}", service


def inputs(n: int, seed: int = 3):
    world = W.generate_world(W.WorldConfig(n_prompts=n, seed=seed))
    convs = [r["context"] for r in world.records]
    resps = [r["response1"] for r in world.records]
    props = list(W.PROPERTIES)
    principles = [W.PROPERTIES[props[i % len(props)]].phrasings[0] for i in range(len(resps))]
    return convs, resps, principles


def test_concurrent_requests_get_the_in_process_scores(rm_dirs):
    url, service = start("scalar", rm_dirs["scalar"])
    convs, resps, prins = inputs(24)
    convs[0] = "a plain string prompt"                    # one user turn
    expected = load_scorer("scalar", rm_dirs["scalar"], max_length=256, batch_size=4)(convs, resps, prins)
    client = ServedScorer(url)
    chunks = [slice(k, k + 3) for k in range(0, 24, 3)]
    with ThreadPoolExecutor(8) as pool:                   # 8 requests at once, 3 rows each
        results = list(pool.map(lambda s: client(convs[s], resps[s], prins[s]), chunks))
    got = [x for r in results for x in r.scores]
    cut = [x for r in results for x in r.truncated]
    assert got == pytest.approx(expected.scores, abs=1e-5)
    assert cut == expected.truncated
    assert len(set(round(s, 3) for s in got)) > 12 and min(got) < 0 < max(got)   # a real spread, both signs
    health = client.health()
    assert health["status"] == "ok" and health["kind"] == "scalar" and health["requests"] == 8 and health["rows"] == 24
    assert health["batches"] < 8                          # concurrent requests were scored together
    assert client(convs[:2], resps[:2], "is concise").scores == pytest.approx(
        load_scorer("scalar", rm_dirs["scalar"], max_length=256)(convs[:2], resps[:2], "is concise").scores, abs=1e-5)


def test_bad_requests_are_named_and_score_nothing(rm_dirs):
    url, service = start("scalar", rm_dirs["scalar"])
    host, port = url.removeprefix("http://").split(":")

    def post(path, body, method="POST"):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())

    ok = {"conversations": ["hi"], "responses": ["hello"], "principles": ["is concise"]}
    assert post("/score", {**ok, "principles": None}) == (400, {"error": "principles: the scalar RM needs a principle "
                                                                         "per response (or one for all)"})
    assert post("/score", {**ok, "responses": "hello"})[1]["error"].startswith("responses:")
    assert post("/score", {**ok, "conversations": [[{"role": "user"}]]})[1]["error"].startswith("conversations[0]:")
    assert post("/score", {**ok, "principles": ["a", "b"]})[0] == 400
    assert post("/nope", ok)[0] == 404 and post("/score", None, "GET")[0] == 405
    assert post("/score", {**ok, "conversations": [], "responses": [], "principles": []}) == (
        200, {"scores": [], "truncated": []})
    assert service.stats["rows"] == 0 and service.stats["batches"] == 0
    with pytest.raises(ValueError, match="HTTP 400: .*responses"):
        ServedScorer(url)(["hi"], [3], ["p"])
    with pytest.raises(RuntimeError, match="failed after 2 attempts"):
        ServedScorer("http://127.0.0.1:9", max_retries=1, backoff_s=0.01)(["hi"], ["x"], ["p"])


def test_bt_service_ignores_principles_and_the_trl_adapter_averages_them(rm_dirs):
    url, _ = start("bt", rm_dirs["bt"])
    convs, resps, _ = inputs(6, seed=4)
    expected = load_scorer("bt", rm_dirs["bt"], max_length=256, batch_size=4)(convs, resps).scores
    assert ServedScorer(url)(convs, resps).scores == pytest.approx(expected, abs=1e-5)
    # TRL's reward-function call: prompts as chat messages, completions as assistant messages
    reward = served_reward(url)
    completions = [[{"role": "assistant", "content": r}] for r in resps]
    assert reward(prompts=convs, completions=completions) == pytest.approx(expected, abs=1e-5)
    assert reward.__name__ == "served_principle_reward"
    s_url, _ = start("scalar", rm_dirs["scalar"])
    two = [["is concise", "uses bullet points"]] * len(resps)
    scorer = load_scorer("scalar", rm_dirs["scalar"], max_length=256)
    mean = [(a + b) / 2 for a, b in zip(scorer(convs, resps, "is concise").scores,
                                        scorer(convs, resps, "uses bullet points").scores)]
    assert served_reward(s_url)(prompts=convs, completions=resps, principles=two) == pytest.approx(mean, abs=1e-5)


def test_grpo_steps_against_the_served_scalar_reward(rm_dirs, tok, tmp_path):
    from rlbff_lib.alignment.grpo import AlignmentConfig, PrincipleReward, RewardConfig, train_grpo

    url, service = start("scalar", rm_dirs["scalar"], max_length=512)
    policy = save_base(tok, ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                            num_key_value_heads=1, head_dim=16, intermediate_size=64,
                                            max_position_embeddings=512), tmp_path / "policy")
    cfg = AlignmentConfig(reward=RewardConfig(backend="scalar", model_path="unused", score_url=url),
                          domains=["general"], train_properties=["concise"], n_prompts=16, learning_rate=1e-3,
                          max_steps=2, num_generations=2, per_device_train_batch_size=4, max_completion_length=8,
                          logging_steps=1, save_steps=10, principles_per_prompt=1)
    reward = PrincipleReward(cfg.reward, policy_tokenizer=tok)
    rec = train_grpo(cfg, policy, tmp_path / "run", reward=reward)
    assert rec["global_step"] == 2 and all(p["principle_score"] is not None for p in rec["curves"])
    assert reward.model is None and type(reward.scorer).__name__ == "ServedScorer"   # no RM in this process
    assert service.stats["rows"] >= 2 * 4 and service.stats["errors"] == 0


def test_serve_subprocess_gives_a_url_for_score_url(rm_dirs):
    from rlbff_lib.reward_models.serve import serve_subprocess
    from rlbff_lib.training.slurm import wait_healthy

    convs, resps, prins = inputs(5, seed=6)
    expected = load_scorer("scalar", rm_dirs["scalar"], max_length=256)(convs, resps, prins).scores
    with serve_subprocess("scalar", rm_dirs["scalar"], max_length=256, batch_size=4) as url:
        assert url.startswith("http://127.0.0.1:")
        assert ServedScorer(url)(convs, resps, prins).scores == pytest.approx(expected, abs=1e-5)
    with pytest.raises(RuntimeError, match="no healthy answer"):   # stopped on exit
        wait_healthy(url + "/health", 0, 0.1)
    with pytest.raises(FileNotFoundError, match="scoring service: .* is not a model folder"):
        with serve_subprocess("bt", rm_dirs["scalar"].parent / "nope"):
            pass
