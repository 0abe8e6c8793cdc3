"""Offline assets made by the ``assets`` stage: tokenizer, base models, embedder check.

Smoke: a byte-level BPE tokenizer trained on the synthetic corpus, and tiny Qwen3
causal LMs built from ``Qwen3Config`` and briefly pretrained on the same corpus
(a stand-in for a pretrained base model). Paper scale: ``tokenizer.source`` and
``models.*.name_or_path`` name hub checkpoints (``Qwen/Qwen3-32B``), recorded here
and loaded by the training stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from rlbff_lib.models.embed import EmbedderConfig
from rlbff_lib.models.lm import ModelSizeConfig, PretrainConfig
from rlbff_lib.models.tokenizer import TokenizerConfig

MODEL_ROLES = ("policy", "reward")


def _default_models() -> dict:
    return {"policy": ModelSizeConfig(), "reward": ModelSizeConfig()}


@dataclass
class AssetsConfig:
    """The ``assets`` stage.

    tokenizer: how the tokenizer is made; models: one size per role (``policy``,
    ``reward``); pretrain: corpus pretraining of from-config models; embedder: the
    sentence-embedding model checked here and used by the consensus filter.
    """

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    models: dict[str, ModelSizeConfig] = field(default_factory=_default_models)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)

    def __post_init__(self):
        missing = [r for r in MODEL_ROLES if r not in self.models]
        if missing:
            raise ValueError(f"models: missing role {missing[0]!r} (need {list(MODEL_ROLES)})")
        unknown = [r for r in self.models if r not in MODEL_ROLES]
        if unknown:
            raise ValueError(f"models.{unknown[0]}: unknown role (allowed: {list(MODEL_ROLES)})")


def corpus_from_records(records: Iterable[dict], extra: Iterable[str] = ()) -> Iterator[str]:
    """Every text of the feedback records: chat turns, both responses, feedback texts."""
    for r in records:
        for m in r["context"]:
            yield m["content"]
        yield r["response1"]
        yield r["response2"]
        yield from r.get("feedback1", [])
        yield from r.get("feedback2", [])
    yield from extra


def chat_corpus(records: Iterable[dict], tokenizer) -> Iterator[str]:
    """Whole conversations rendered with the chat template (pretraining text)."""
    for r in records:
        for key in ("response1", "response2"):
            msgs = r["context"] + [{"role": "assistant", "content": r[key]}]
            yield tokenizer.apply_chat_template(msgs, tokenize=False)


def build_assets(cfg: AssetsConfig, records: list[dict], extra_texts: list[str], out_dir: str | Path) -> dict:
    """Make the tokenizer and base models under ``out_dir``; returns a summary with loss curves.

    Writes ``out_dir/tokenizer/`` and ``out_dir/base_<role>/`` (safetensors), each
    with a complete ``save_pretrained`` folder, so later stages load them by path.
    """
    from rlbff_lib.models.lm import build_qwen3, count_parameters, pack_corpus, pretrain
    from rlbff_lib.core.progress import log
    from rlbff_lib.models.tokenizer import check_tokenizer, load_tokenizer, train_tokenizer

    out_dir = Path(out_dir)
    summary: dict = {"models": {}}
    if cfg.tokenizer.source == "train":
        texts = list(corpus_from_records(records, extra_texts))
        log(f"training tokenizer on {len(texts)} texts")
        tok = train_tokenizer(texts, cfg.tokenizer)
    else:
        tok = load_tokenizer(cfg.tokenizer.source)
        check_tokenizer(tok)
    tok.save_pretrained(out_dir / "tokenizer")
    summary["tokenizer"] = {"source": cfg.tokenizer.source, "vocab_size": len(tok)}

    blocks = None
    trained: dict = {}  # roles of identical size share one pretraining run (same seed: same weights)
    for role, size in cfg.models.items():
        if size.name_or_path != "config":
            summary["models"][role] = {"name_or_path": size.name_or_path}
            continue
        if blocks is None:
            blocks = pack_corpus(tok, list(chat_corpus(records, tok)) + list(extra_texts), cfg.pretrain.seq_len)
            summary["pretrain_tokens"] = int(blocks.numel())
        key = repr(size)
        if key in trained:
            model, curve = trained[key]
            log(f"{role}: same size as an earlier role, reusing its pretrained weights")
        else:
            model = build_qwen3(tok, size, seed=cfg.pretrain.seed)
            log(f"{role}: {count_parameters(model) / 1e6:.2f}M parameters, pretraining {cfg.pretrain.steps} steps")
            curve = pretrain(model, blocks, cfg.pretrain)
            trained[key] = (model, curve)
        model.save_pretrained(out_dir / f"base_{role}", safe_serialization=True)
        tok.save_pretrained(out_dir / f"base_{role}")
        summary["models"][role] = {"name_or_path": str(out_dir / f"base_{role}"),
                                   "parameters": count_parameters(model), "pretrain_curve": curve}
    return summary
