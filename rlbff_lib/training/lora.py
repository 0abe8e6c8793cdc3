"""LoRA (PEFT) as an option of every trainer: its settings, the ``peft.LoraConfig`` the TRL trainer gets, and the
merge of the trained adapter into the base weights when the final model is saved.

Off by default: the paper trains full weights. On, the published model is still plain safetensors weights.

- :class:`LoraSettings`: the ``lora`` block of each trainer config (``reward_models.scalar``, ``.bt``,
  ``.genrm.sft``, ``.genrm.grpo``, ``alignment.policy``, ``alignment.grpo``).
- :meth:`LoraSettings.peft_config`: the ``peft_config=`` of TRL 1.16's ``SFTTrainer`` / ``RewardTrainer`` /
  ``GRPOTrainer``, which wrap the model they load with ``peft.get_peft_model``. The Bradley–Terry trainer asks for
  ``task_type`` ``SEQ_CLS``: peft then trains its fresh ``score`` head whole. A causal LM's output head gets no
  adapter (TRL 1.16's SFT and GRPO trainers read ``lm_head.weight`` directly and reject one).
- :func:`merge_saved_adapter`: ``trainer.save_model`` of a peft model writes only the adapter; this reloads the base
  weights on the CPU, applies the adapter, merges it (``merge_and_unload``) and saves the result in its place, so the
  scorer, GRPO's reward and serving load the folder exactly like a full-weight model
  (:func:`rlbff_lib.training.launch.save_final` calls it). The trainer's own model is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASK_TYPES = ("CAUSAL_LM", "SEQ_CLS")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json")


@dataclass
class LoraSettings:
    """Low-rank adapters (Hu et al. 2021, arXiv 2106.09685) instead of full-weight training; peft's ``LoraConfig``.

    enabled: train adapters (false: every weight, the paper's setting). r: the rank of each adapter.
    alpha: peft's ``lora_alpha``; the update added to a weight W [out, in] is (alpha / r) · B A, B [out, r], A [r, in].
    dropout: dropout probability on each adapter's input. target_modules: ``all-linear`` (peft: every linear layer
    but the output head) or a list of module names (suffixes, e.g. ``[q_proj, v_proj]``).
    """

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"r: must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"alpha: must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        names = [self.target_modules] if isinstance(self.target_modules, str) else self.target_modules
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"target_modules: must be 'all-linear' or a non-empty list of module names, "
                             f"got {self.target_modules!r}")

    def peft_config(self, task_type: str = "CAUSAL_LM"):
        """The ``peft.LoraConfig`` of these settings, or None when off (full-weight training).

        task_type: ``CAUSAL_LM`` or ``SEQ_CLS`` (peft then also trains the classification head, ``score``, whole).
        """
        if not self.enabled:
            return None
        if task_type not in TASK_TYPES:
            raise ValueError(f"task_type: must be one of {list(TASK_TYPES)}, got {task_type!r}")
        from peft import LoraConfig

        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(task_type=task_type, r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=targets)


def lora_settings(value: Any) -> LoraSettings:
    """``value`` as :class:`LoraSettings` (a config built from plain data holds a dict)."""
    if isinstance(value, LoraSettings):
        return value
    if isinstance(value, dict):
        return LoraSettings(**value)
    raise ValueError(f"lora: expected a mapping of LoRA settings, got {value!r}")


def merge_saved_adapter(model, folder: str | Path) -> None:
    """Replace the adapter ``trainer.save_model`` wrote in ``folder`` by merged full weights (safetensors).

    model: the trainer's (unwrapped) ``PeftModel``; its base model's class, config and dtype are those of the saved
    model, and its adapter config names the base weights (``base_model_name_or_path``). The base is loaded again on
    the CPU (so ZeRO-3 shards and the trainer's model are not touched), the saved adapter is applied and merged.
    Call on the main process only. The tokenizer files in ``folder`` stay.
    """
    import copy

    from peft import PeftModel

    folder = Path(folder)
    base = model.get_base_model()
    source = model.peft_config[model.active_adapter].base_model_name_or_path
    dtype = next(base.parameters()).dtype
    fresh = type(base).from_pretrained(source, config=copy.deepcopy(base.config), dtype=dtype,
                                       use_safetensors=True, trust_remote_code=False)
    merged = PeftModel.from_pretrained(fresh, str(folder)).merge_and_unload()
    for name in (*ADAPTER_FILES, "README.md"):  # README.md: peft's template card (the stage writes the real one)
        (folder / name).unlink(missing_ok=True)
    merged.save_pretrained(str(folder))
