"""Offline assets made by the ``assets`` stage: tokenizer, base models, embedder check.

Smoke: a byte-level BPE tokenizer trained on the corpus, and tiny Qwen3 causal LMs built from
``Qwen3Config`` and briefly pretrained on the same corpus (a stand-in for a pretrained base
model). Rehearsal: the same, with each role's stand-in dressed as its real model family
(``models.<role>.family``: Qwen3's tokens and chat template with thinking for the policy and
GenRM, a Llama architecture with Llama-3.3's tokens and template for the scalar and BT RMs).
Paper scale: ``tokenizer.source`` and ``models.*.name_or_path`` name hub checkpoints
(``Qwen/Qwen3-32B``). Either way ``out_dir/base_models.json`` records each role's base model
(:func:`rlbff_lib.models.lm.base_model` reads it), which the training stages load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

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


def tokenizer_corpus(source_dir: str | Path) -> tuple[list[dict], list[str]]:
    """The ``data`` stage's feedback records and the extra texts the tokenizer and pretraining see: the
    released principle records' principles and responses, and, for the synthetic world (its
    ``truth.jsonl`` is not empty; its rows are not read), every phrasing of its principles."""
    from rlbff_lib.core.io import read_jsonl

    source_dir = Path(source_dir)
    records = read_jsonl(source_dir / "feedback.jsonl")
    principle_records = read_jsonl(source_dir / "principle.jsonl")
    extra = [r["principle"] for r in principle_records] + [r["response"] for r in principle_records]
    truth = source_dir / "truth.jsonl"
    if truth.exists() and truth.stat().st_size > 0:
        from rlbff_lib.synthetic.world import all_phrasings

        extra += [phrasing for _, phrasing in all_phrasings()]
    return records, extra


def embedder_check(cfg: EmbedderConfig, probe: Sequence[str] = ("contains inline comments", "has comments in the code",
                                                                 "is concise")) -> dict:
    """Load the sentence embedder (offline for a local or packaged model) and embed ``probe``: its name,
    dimension and the cosine of each pair (two paraphrases should score well above the unrelated one)."""
    from rlbff_lib.models.embed import embed_unique, load_embedder

    strings, emb = embed_unique(list(probe), load_embedder(cfg))
    sims = emb @ emb.T
    return {"name_or_path": cfg.name_or_path, "dim": int(emb.shape[1]),
            "probe_cosine": {f"{a} | {b}": round(float(sims[i, j]), 4)
                             for i, a in enumerate(strings) for j, b in enumerate(strings) if i < j}}


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
    from rlbff_lib.core.io import write_json
    from rlbff_lib.core.progress import log
    from rlbff_lib.models.lm import BASE_MODELS_FILE, build_model, count_parameters, pack_corpus, pretrain
    from rlbff_lib.models.tokenizer import check_tokenizer, family_tokenizer, load_tokenizer, train_tokenizer

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

    blocks: dict = {}  # per family: the corpus rendered with that family's chat template
    trained: dict = {}  # roles of identical size share one pretraining run (same seed: same weights)
    for role, size in cfg.models.items():
        if size.name_or_path != "config":
            summary["models"][role] = {"name_or_path": size.name_or_path}
            continue
        role_tok = family_tokenizer(tok, size.family)
        if size.family not in blocks:
            blocks[size.family] = pack_corpus(role_tok, list(chat_corpus(records, role_tok)) + list(extra_texts),
                                              cfg.pretrain.seq_len)
            summary.setdefault("pretrain_tokens", int(blocks[size.family].numel()))
        key = repr(size)
        if key in trained:
            model, curve = trained[key]
            log(f"{role}: same size as an earlier role, reusing its pretrained weights")
        else:
            model = build_model(role_tok, size, seed=cfg.pretrain.seed)
            log(f"{role}: {size.family} stand-in, {count_parameters(model) / 1e6:.2f}M parameters, "
                f"pretraining {cfg.pretrain.steps} steps")
            curve = pretrain(model, blocks[size.family], cfg.pretrain)
            trained[key] = (model, curve)
        model.save_pretrained(out_dir / f"base_{role}", safe_serialization=True)
        role_tok.save_pretrained(out_dir / f"base_{role}")
        summary["models"][role] = {"name_or_path": str(out_dir / f"base_{role}"), "family": size.family,
                                   "architecture": type(model).__name__,
                                   "parameters": count_parameters(model), "pretrain_curve": curve}
    write_json(out_dir / BASE_MODELS_FILE, {role: m["name_or_path"] for role, m in summary["models"].items()})
    return summary


def headline_metrics(summary: dict) -> dict:
    """``metrics/assets.json`` from :func:`build_assets`'s summary (all of it in ``outputs/details/assets.json``):
    per role the pretraining loss of the last logged window (nats per token) and the parameter count; the tokenizer's
    vocabulary size and the pretraining tokens."""
    models = summary.get("models") or {}
    return {"pretrain_final_loss": {role: (m.get("pretrain_curve") or [{}])[-1].get("loss") for role, m in models.items()},
            "parameters": {role: m.get("parameters") for role, m in models.items()},
            "vocab_size": (summary.get("tokenizer") or {}).get("vocab_size"),
            "pretrain_tokens": summary.get("pretrain_tokens")}
