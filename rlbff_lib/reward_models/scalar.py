"""The scalar (single-token) principle reward model of RLBFF, trained with TRL's ``SFTTrainer``.

Input (the exact RLBFF prompt, reference §4): the conversation, the assistant response, then
ONE extra user turn::

    Evaluate the response to the previous prompt in terms of whether it satisfies this
    principle: {principle}. Only answer Yes or No.

rendered with the tokenizer's chat template and the generation prompt (``enable_thinking=False``,
which Qwen3 templates turn into an empty think block and other templates ignore).

Reward: one forward pass, ``logit("Yes") − logit("No")`` at the first generated position
(= log P(Yes) − log P(No)); see :mod:`rlbff_lib.reward_models.scorers`.

Training: cross-entropy on the single answer token ("Yes"/"No"), no EOS. TRL 1.16's
prompt–completion path would append EOS to a string completion (and the template's
``<|im_end|>\\n`` to a conversational one) and put them in the completion mask, and it
truncates with ``keep_start``, which would cut the answer off a long prompt. So the rows
given to ``SFTTrainer`` are already tokenized prompt–completion rows:
``input_ids = prompt + [answer]``, ``labels = [-100] * len(prompt) + [answer]``; TRL keeps
a provided ``labels`` column as is. Over-long conversations are cut from the LEFT with
:func:`fit_conversation` (the same code the scorer uses), so the response and the principle
turn stay whole.

LoRA (``lora.enabled``, :mod:`rlbff_lib.training.lora`): adapters on the decoder's linear layers; the output head
stays as it is (TRL 1.16's ``SFTTrainer`` computes the loss from ``lm_head.weight`` directly and rejects adapters on
it), so the adapters move the last hidden state h, and the reward (w_Yes − w_No) · h with it.

Command line (one process, or several through :func:`rlbff_lib.training.launch.launch`)::

    python -m rlbff_lib.reward_models.scalar train --config JOB.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rlbff_lib.reward_models.prompt import ANSWERS, encode_rm_prompt
from rlbff_lib.training.launch import TrainConfig, TrainJob, job_cli, quiet_libraries, run_trainer

# ------------------------------------------------------------------ training


@dataclass
class ScalarRMConfig(TrainConfig):
    """Training of the scalar principle RM (fields of :class:`rlbff_lib.training.launch.TrainConfig`).

    Smoke defaults (a tiny Qwen3 pretrained on the corpus): the model first learns only the label
    prior, then the principle-conditional answer, which needs several principle items per response
    with mixed labels (with ~1 item per response it memorises response -> label instead; README,
    "Status"). Two epochs are the default. The paper-scale profile sets e.g.
    ``learning_rate: 2e-6``, ``max_length: 4096``, ``gradient_checkpointing: true``.
    ``max_length`` counts the prompt plus the one answer token.
    """

    learning_rate: float = 1e-3
    num_train_epochs: float = 2.0
    per_device_train_batch_size: int = 16
    logging_steps: int = 20


def build_sft_rows(items: Sequence[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """RM items → tokenized prompt–completion rows for ``SFTTrainer``, and the number cut.

    Row: ``input_ids`` [L] = prompt ids + answer id; ``labels`` [L] = -100 everywhere but the
    last position, which holds the answer id (loss on the answer token only).
    """
    from rlbff_lib.models.tokenizer import answer_token_ids

    yes, no = answer_token_ids(tokenizer)
    rows, cut = [], 0
    for it in items:
        if it["label"] not in ANSWERS:
            raise ValueError(f"item {it.get('item_id')}: label must be Yes or No, got {it['label']!r}")
        prompt, truncated = encode_rm_prompt(tokenizer, it["context"], it["response"], it["principle"], max_length - 1)
        cut += truncated
        answer = yes if it["label"] == "Yes" else no
        rows.append({"input_ids": prompt + [answer], "labels": [-100] * len(prompt) + [answer]})
    return rows, cut


def answer_accuracy(scores: Sequence[float], labels: Sequence[str]) -> float:
    """Share of items where ``score > 0`` agrees with the label (Yes)."""
    if not scores:
        return float("nan")
    return sum((s > 0) == (lab == "Yes") for s, lab in zip(scores, labels)) / len(scores)


def train_scalar_rm(cfg: ScalarRMConfig, model: str | Path, train_items: Sequence[dict], output_dir: str | Path,
                    eval_items: Sequence[dict] | None = None, callbacks: list | None = None) -> dict:
    """Fine-tune the causal LM at ``model`` into a scalar principle RM; returns the training log.

    Writes ``output_dir/model`` (safetensors + tokenizer, atomically), checkpoints under
    ``output_dir/checkpoints`` (resumed from after an interruption) and
    ``output_dir/training_log.json``. With ``eval_items``, the log's ``extra`` holds the
    final eval accuracy (sign of the reward vs the label) and the majority-label baseline.
    Call on every process of a distributed run.
    """
    from datasets import Dataset
    from rlbff_lib.training.sft import LabelPositionsSFTTrainer

    from rlbff_lib.models.tokenizer import load_tokenizer
    from rlbff_lib.training.trl_config import trl_config

    quiet_libraries()
    output_dir = Path(output_dir)
    tokenizer = load_tokenizer(model)
    train_rows, train_cut = build_sft_rows(train_items, tokenizer, cfg.max_length)
    eval_rows, eval_cut = build_sft_rows(eval_items, tokenizer, cfg.max_length) if eval_items else ([], 0)
    args = trl_config(cfg, output_dir / "checkpoints", has_eval=bool(eval_rows))
    trainer = LabelPositionsSFTTrainer(
        model=str(model),
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows and cfg.eval_steps > 0 else None,
        processing_class=tokenizer,
        callbacks=callbacks,
        peft_config=cfg.lora.peft_config(),
    )
    extra = {"n_train": len(train_rows), "train_truncated": train_cut, "n_eval": len(eval_rows),
             "eval_truncated": eval_cut}
    record = run_trainer(trainer, output_dir, "scalar_rm", extra)
    # Final accuracy on the main process (ZeRO-3 shards the weights: evaluate the saved model instead)
    if eval_items and trainer.accelerator.is_main_process and not trainer.is_deepspeed_enabled:
        from rlbff_lib.core.io import write_json
        from rlbff_lib.reward_models.scorers import Scorer

        scorer = Scorer("scalar", trainer.accelerator.unwrap_model(trainer.model), tokenizer,
                        max_length=cfg.max_length, batch_size=cfg.eval_batch_size)  # the training window
        result = scorer([it["context"] for it in eval_items], [it["response"] for it in eval_items],
                        [it["principle"] for it in eval_items])
        labels = [it["label"] for it in eval_items]
        yes_share = labels.count("Yes") / len(labels)
        record["extra"].update(eval_accuracy=answer_accuracy(result.scores, labels),
                               eval_majority=max(yes_share, 1 - yes_share))
        write_json(output_dir / "training_log.json", record)
    return record


def validate_item(rec: dict, line: int) -> None:
    """An RM item (JSONL line): ``context`` (chat messages), ``response``, ``principle``, ``label``
    Yes|No. A missing field raises ``KeyError`` (the reader names it), a bad one ``ValueError``."""
    context = rec["context"]
    if not isinstance(context, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                and isinstance(m.get("content"), str) for m in context):
        raise ValueError("context: must be a list of chat messages with string role and content")
    for name in ("response", "principle"):
        if not isinstance(rec[name], str):
            raise ValueError(f"{name}: must be a string")
    if not rec["principle"].strip():
        raise ValueError("principle: must be a non-empty string")
    if rec["label"] not in ANSWERS:
        raise ValueError(f"label: must be Yes or No, got {rec['label']!r}")


def run_job(job: TrainJob) -> dict:
    """Run a :class:`~rlbff_lib.training.launch.TrainJob` whose files hold RM items (validated first: a bad
    line stops the job naming file, line and field, before any model is loaded)."""
    from rlbff_lib.core.io import read_jsonl
    from rlbff_lib.core.params import build

    cfg = build(ScalarRMConfig, job.config, "scalar_rm")
    train_items = read_jsonl(job.train_file, validate_item)
    eval_items = read_jsonl(job.eval_file, validate_item) if job.eval_file else None
    return train_scalar_rm(cfg, job.model, train_items, job.output_dir, eval_items)


def main(argv: list[str] | None = None) -> int:
    return job_cli(argv, "rlbff_lib.reward_models.scalar", run_job)


if __name__ == "__main__":
    raise SystemExit(main())
