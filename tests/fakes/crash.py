"""A simulated crash for resume tests: a Trainer callback that raises right after a given checkpoint is saved."""

from __future__ import annotations


class Crash(RuntimeError):
    pass


def crash_after_checkpoint(step: int):
    """A ``TrainerCallback`` raising :class:`Crash` once the checkpoint of ``step`` is on disk."""
    from transformers import TrainerCallback

    class _CB(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == step:
                raise Crash(f"simulated crash after checkpoint {step}")

    return _CB()
