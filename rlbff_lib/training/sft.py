"""TRL's ``SFTTrainer`` with the LM head applied only where a label is: the same loss, less work.

TRL 1.16's fused LM head (``trl/kernels/chunked_logprob.py``) runs, on devices without Triton (CPU), over
every position of the batch and masks afterwards. The scalar RM has one label per sequence (its Yes/No
answer) and the GenRM's warm start one short completion after a long prompt, so most of that work is
thrown away (profiled on the smoke scalar RM: ~60% of a training step). :class:`LabelPositionsSFTTrainer`
asks the model for the logits of the labelled positions only (transformers' ``logits_to_keep`` as a boolean
``[batch, seq]`` mask: ``[n_labels, vocab]`` logits) and computes TRL's loss from them: the summed negative
log-likelihood of the label tokens divided by ``num_items_in_batch`` (the label tokens of the whole
optimizer step, every rank), times the process count when ``average_tokens_across_devices`` (TRL's rule).
Metrics as TRL logs them: ``entropy``, ``mean_token_accuracy``, ``num_tokens``.

Anything this path does not cover (another ``loss_type``, label smoothing, a ``compute_loss_func``, MoE
auxiliary losses, sequence parallelism, returned outputs, a model whose forward lacks ``logits_to_keep``)
goes to TRL's own ``compute_loss`` unchanged.
"""

from __future__ import annotations

import inspect

from trl import SFTTrainer


def accepts_logits_to_keep(model) -> bool:
    """Whether the causal LM under ``model`` (PEFT / DDP wrappers looked through) takes ``logits_to_keep``."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return "logits_to_keep" in inspect.signature(type(inner).forward).parameters


class LabelPositionsSFTTrainer(SFTTrainer):
    """``SFTTrainer`` computing its NLL loss from the logits of labelled positions only (module docstring)."""

    def _label_positions_path(self, model, inputs, return_outputs) -> bool:
        sp = getattr(getattr(self.accelerator, "parallelism_config", None), "sp_enabled", False)
        return (not return_outputs and self.args.loss_type == "nll" and self.label_smoother is None
                and self.compute_loss_func is None and not self.aux_loss_enabled and not sp
                and "labels" in inputs and "attention_mask" in inputs and accepts_logits_to_keep(model))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._label_positions_path(model, inputs, return_outputs):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        import torch

        mode = "train" if self.model.training else "eval"
        labels = inputs["labels"]                                   # [B, L], -100 where no loss
        targets = labels[:, 1:]                                     # position t predicts token t + 1
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets != -100                              # [B, L]
        forward = {k: v for k, v in inputs.items() if k != "labels"}
        logits = model(**forward, use_cache=False, logits_to_keep=keep).logits   # [N, V], N = labelled positions
        logits = logits.reshape(-1, logits.shape[-1]).float()
        gold = targets[targets != -100]                             # [N], row-major like the mask
        log_probs = torch.log_softmax(logits, dim=-1)
        nll = -log_probs.gather(-1, gold.unsqueeze(-1)).squeeze(-1)
        n = torch.as_tensor(gold.numel() if num_items_in_batch is None else num_items_in_batch, device=nll.device)
        loss = nll.sum() / n.clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        with torch.no_grad():
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            correct = logits.argmax(-1) == gold
            count = self.accelerator.gather_for_metrics(torch.as_tensor(gold.numel(), device=nll.device)).sum()
            ent = self.accelerator.gather_for_metrics(entropy.sum()).sum()
            hits = self.accelerator.gather_for_metrics(correct.sum()).sum()
            self._metrics[mode]["entropy"].append((ent / count).item() if count > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append((hits / count).item() if count > 0 else 0.0)
            if mode == "train":
                tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += tokens // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss
