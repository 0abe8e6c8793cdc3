"""Causal LMs: tiny Qwen3 / Llama models built from a config (smoke, rehearsal) or real checkpoints (paper scale).

Every model loads from safetensors with ``trust_remote_code=False``. On CPU the
dtype is fp32; on CUDA bf16 with SDPA attention (FlashAttention 2 when installed).
The ``assets`` stage records each role's base model in ``models/assets/base_models.json``
(:func:`base_model` reads it): a local folder for built stand-ins, a hub name otherwise.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from rlbff_lib.core.progress import log


@dataclass
class ModelSizeConfig:
    """Size of a Qwen3 / Llama architecture built from scratch, or a checkpoint to load.

    name_or_path: ``"config"`` builds a random-initialised model from the sizes below;
        anything else is a hub name or folder (e.g. ``Qwen/Qwen3-32B``).
    family: of a built model: ``chatml`` (Qwen3 architecture, the project's minimal template;
        smoke), ``qwen3`` (Qwen3 architecture, Qwen3's tokens and template), ``llama3``
        (Llama architecture, Llama-3.3-Instruct's tokens and template); see
        :data:`rlbff_lib.models.tokenizer.FAMILIES`.
    hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
    intermediate_size: as in ``transformers.Qwen3Config`` / ``LlamaConfig``.
    max_position_embeddings: longest sequence in tokens.
    """

    name_or_path: str = "config"
    family: Literal["chatml", "qwen3", "llama3"] = "chatml"
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 384
    max_position_embeddings: int = 2048

    def __post_init__(self):
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                     "head_dim", "intermediate_size", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads: must divide num_attention_heads ({self.num_attention_heads}), "
                f"got {self.num_key_value_heads}")


@dataclass
class PretrainConfig:
    """Causal-LM pretraining of a from-config model on the synthetic corpus.

    steps: optimizer steps (0 keeps the random init); batch_size: sequences per step;
    seq_len: tokens per packed sequence; lr: peak AdamW learning rate (cosine decay,
    5% warm-up); seed: torch and data-order seed.
    """

    steps: int = 200
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"steps: must be >= 0, got {self.steps}")
        if self.batch_size < 1 or self.seq_len < 8:
            raise ValueError(f"batch_size/seq_len: must be >= 1 / >= 8, got {self.batch_size}/{self.seq_len}")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr: must be in (0, 1), got {self.lr}")


def device_and_dtype():
    """(device, dtype): CUDA with bf16 when available, else CPU with fp32."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def attn_implementation() -> str:
    """FlashAttention 2 when installed on CUDA, else PyTorch SDPA."""
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def build_qwen3(tokenizer, size: ModelSizeConfig, seed: int = 0):
    """A random-initialised ``Qwen3ForCausalLM`` whose vocabulary matches ``tokenizer``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        head_dim=size.head_dim,
        intermediate_size=size.intermediate_size,
        max_position_embeddings=size.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_llama(tokenizer, size: ModelSizeConfig, seed: int = 0):
    """A random-initialised ``LlamaForCausalLM`` whose vocabulary matches ``tokenizer`` (untied
    embeddings, and generation stopping at end of text / end of message / end of turn, as Llama-3.3)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads, num_key_value_heads=size.num_key_value_heads,
        head_dim=size.head_dim, intermediate_size=size.intermediate_size,
        max_position_embeddings=size.max_position_embeddings, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=stops,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = stops
    return model


def build_model(tokenizer, size: ModelSizeConfig, seed: int = 0):
    """A random-initialised model of ``size.family``'s architecture (Llama for ``llama3``, else Qwen3)."""
    return (build_llama if size.family == "llama3" else build_qwen3)(tokenizer, size, seed)


BASE_MODELS_FILE = "base_models.json"


def base_model(role: str, assets_dir: str | Path = "models/assets") -> str:
    """The base model the ``assets`` stage recorded for ``role`` (``policy``: policy and GenRM;
    ``reward``: scalar and Bradley-Terry RMs): a local folder or a hub name. A recorded folder that is gone
    raises ``FileNotFoundError`` naming this file and the role, before any training."""
    path = Path(assets_dir) / BASE_MODELS_FILE
    try:
        roles = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; run the assets stage first") from None
    if role not in roles:
        raise KeyError(f"{path}: no base model for role {role!r} (has {sorted(roles)})")
    check_model_dir(roles[role], f"{path}: {role}")
    return roles[role]


def check_model_dir(path: str | Path, param: str | None = None, need: str | None = "config.json") -> None:
    """One line instead of a hub lookup's long traceback: raise ``FileNotFoundError`` naming ``param`` (the
    parameter or option that gave it) and ``path`` when ``path`` is a local path that does not exist, or a
    folder without ``need``. A hub name (:func:`rlbff_lib.core.preflight.looks_like_hub_name`) is left to the hub."""
    from rlbff_lib.core.preflight import looks_like_hub_name

    where = f"{param}: " if param else ""
    p = Path(path).expanduser()
    if p.exists():
        if need and p.is_dir() and not (p / need).exists():
            raise FileNotFoundError(f"{where}{path}: not a model folder (no {need})")
        return
    if not looks_like_hub_name(str(path)):
        raise FileNotFoundError(f"{where}{path}: no such model folder")


def load_causal_lm(name_or_path: str | Path, dtype=None, device=None):
    """Load a causal LM from safetensors (no remote code), on ``device`` in ``dtype``."""
    from transformers import AutoModelForCausalLM

    check_model_dir(name_or_path)
    dev, dt = device_and_dtype()
    model = AutoModelForCausalLM.from_pretrained(
        str(name_or_path),
        dtype=dtype or dt,
        use_safetensors=True,
        trust_remote_code=False,
        attn_implementation=attn_implementation(),
    )
    return model.to(device or dev)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def pack_corpus(tokenizer, texts: Iterable[str], seq_len: int):
    """Tokenize ``texts`` (each ended by EOS) and cut the stream into rows: LongTensor [n, seq_len]."""
    import torch

    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer.encode(t, add_special_tokens=False))
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"corpus has {len(ids)} tokens, fewer than one sequence of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def pretrain(model, blocks, cfg: PretrainConfig) -> list[dict]:
    """Next-token pretraining on packed ``blocks`` [n, seq_len]; returns the loss curve.

    Returns a list of ``{"step", "loss"}`` (loss in nats/token, mean over the logging window).
    """
    import torch

    if cfg.steps == 0:
        return []
    device, _ = device_and_dtype()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, cfg.steps // 20)

    def lr_at(step):
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))

    curve, window = [], []
    log_every = max(1, cfg.steps // 10)
    order: list[int] = []
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(blocks)), len(blocks))
        idx, order = order[: cfg.batch_size], order[cfg.batch_size:]
        batch = blocks[idx].to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            curve.append({"step": step + 1, "loss": sum(window) / len(window)})
            log(f"pretrain step {step + 1}/{cfg.steps} loss {curve[-1]['loss']:.3f}")
            window = []
    model.eval()
    return curve
