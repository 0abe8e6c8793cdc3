"""The wall clock in every training run's ``training_log.json`` (rlbff_lib.training.launch.train_timer): when training
began, how long it and the final save took and over how many steps; a resumed run's clock covers the resumed part
only. (Run keys and reuse read the config, never the log: the timing cannot change a run's folder.)"""
import json
import random
import time
from datetime import datetime, timezone

import pytest

from rlbff_lib.alignment.grpo import AlignmentConfig, RewardConfig, train_grpo
from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.reward_models.scalar import ScalarRMConfig, train_scalar_rm
from rlbff_lib.synthetic import world as W
from fakes.crash import Crash, crash_after_checkpoint
from fakes.tiny_models import save_base

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)


@pytest.fixture(scope="module")
def world():
    return W.generate_world(W.WorldConfig(n_prompts=40, seed=0))


@pytest.fixture(scope="module")
def base_dir(world, tmp_path_factory):
    tok = train_tokenizer(list(W.corpus_texts(world)), TokenizerConfig(vocab_size=500))
    return save_base(tok, TINY, tmp_path_factory.mktemp("base"))


def rm_items(world):
    rng = random.Random(0)
    truth = {(t["id"], t["response"]): t["properties"] for t in world.truth}
    return [{"item_id": f"{r['id']}-{j}", "context": r["context"], "response": r[f"response{j}"],
             "principle": rng.choice(W.PROPERTIES["followup_question"].phrasings),
             "label": "Yes" if truth[(r["id"], j)]["followup_question"] else "No"}
            for r in world.records for j in (1, 2)]


def timed(fn):
    """(record, UTC time before, UTC time after, seconds) of one call: the outside clock the record must fit in."""
    before, t0 = datetime.now(timezone.utc), time.perf_counter()
    out = fn()
    return out, before, datetime.now(timezone.utc), time.perf_counter() - t0


def check_clock(record, before, after, outside_s, steps):
    started = datetime.fromisoformat(record["started_at"])
    assert started.utcoffset().total_seconds() == 0
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= started <= after
    assert 0 < record["wall_s"] <= outside_s          # the training call and final save, inside the whole call
    assert record["timed_steps"] == steps


def test_scalar_rm_log_times_the_run_and_a_resumed_run_only_its_resumed_part(world, base_dir, tmp_path):
    items = rm_items(world)[:32]
    cfg = ScalarRMConfig(learning_rate=1e-3, max_steps=4, per_device_train_batch_size=8, max_length=128,
                         logging_steps=1, save_steps=2)
    record, before, after, outside = timed(lambda: train_scalar_rm(cfg, base_dir, items, tmp_path / "whole"))
    check_clock(record, before, after, outside, steps=4)
    on_disk = json.loads((tmp_path / "whole" / "training_log.json").read_text())
    assert {k: on_disk[k] for k in ("started_at", "wall_s", "timed_steps")} == \
        {k: record[k] for k in ("started_at", "wall_s", "timed_steps")}

    with pytest.raises(Crash):
        train_scalar_rm(cfg, base_dir, items, tmp_path / "cut", callbacks=[crash_after_checkpoint(2)])
    resumed, before, after, outside = timed(lambda: train_scalar_rm(cfg, base_dir, items, tmp_path / "cut"))
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 4
    check_clock(resumed, before, after, outside, steps=2)  # steps 3-4 only: the clock started at the resume


def test_grpo_log_times_the_run(base_dir, tmp_path):
    import torch

    cfg = AlignmentConfig(reward=RewardConfig(backend="checker", model_path=""), domains=["general"],
                          train_properties=["followup_question"], n_prompts=8, learning_rate=1e-3, max_steps=1,
                          num_generations=2, per_device_train_batch_size=4, max_completion_length=8,
                          logging_steps=1, save_steps=100)
    record, before, after, outside = timed(lambda: train_grpo(cfg, base_dir, tmp_path / "grpo"))
    check_clock(record, before, after, outside, steps=1)
    assert record["wall_s"] < record["seconds"] and record["torch_threads"] == torch.get_num_threads()
