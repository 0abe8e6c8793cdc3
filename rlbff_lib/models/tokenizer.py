"""A byte-level BPE tokenizer trained on the synthetic corpus, with a Qwen-style chat template.

The smoke world never downloads a tokenizer: this module trains one locally
(``tokenizers``), wraps it as a ``transformers`` fast tokenizer and saves it
like any hub tokenizer, so every later stage loads it with ``AutoTokenizer``.
At paper scale the same loaders take a hub name (``Qwen/Qwen3-32B``) instead.

Guarantees checked by :func:`check_tokenizer`: ``Yes``, ``No``, `` Yes`` and
`` No`` are single tokens (the scalar reward reads their logits), and the chat
template renders the roles ``system``, ``user``, ``assistant`` and
``principle`` between ``<|im_start|>``/``<|im_end|>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
ANSWER_WORDS = ["Yes", "No", " Yes", " No"]

# Qwen-style ChatML. Any role renders the same way, so the GenRM's `principle` role works as is.
# `enable_thinking=False` appends an empty think block to the generation prompt, as Qwen3 does.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

# Text every tokenizer corpus gets besides the data: the RLBFF prompt wording and judgement lines,
# so these frequent strings are cheap in tokens.
EXTRA_CORPUS = [
    "Evaluate the response to the previous prompt in terms of whether it satisfies this principle: ",
    "Only answer Yes or No.",
    "Final Judgement: Yes",
    "Final Judgement: No",
    "Yes No Yes No",
]


@dataclass
class TokenizerConfig:
    """How the tokenizer is made.

    source: ``"train"`` trains byte-level BPE on the corpus; anything else is a hub
        name or local path loaded with ``AutoTokenizer`` (paper scale: the base model's).
    vocab_size: BPE vocabulary size, special tokens included.
    min_frequency: minimum pair count for a merge.
    """

    source: str = "train"
    vocab_size: int = 4096
    min_frequency: int = 2

    def __post_init__(self):
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size: must be >= 300 (256 bytes + specials), got {self.vocab_size}")
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency: must be >= 1, got {self.min_frequency}")


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig):
    """Train byte-level BPE on ``texts`` and return a ``transformers`` fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def corpus():
        yield from EXTRA_CORPUS * 50
        yield from texts

    bpe.train_from_iterator(corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    check_tokenizer(tok)
    return tok


def load_tokenizer(name_or_path: str | Path):
    """Load a tokenizer (local folder or hub name); never runs remote code."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def answer_token_ids(tok, leading_space: bool = False) -> tuple[int, int]:
    """Token ids of (``Yes``, ``No``), or of (`` Yes``, `` No``) with ``leading_space``."""
    words = (" Yes", " No") if leading_space else ("Yes", "No")
    ids = []
    for w in words:
        enc = tok.encode(w, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(f"tokenizer splits {w!r} into {len(enc)} tokens {enc}; the reward needs one token")
        ids.append(enc[0])
    return ids[0], ids[1]


def check_tokenizer(tok) -> None:
    """Raise ``ValueError`` unless the answer words are single tokens and the template works."""
    answer_token_ids(tok)
    answer_token_ids(tok, leading_space=True)
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "principle", "content": "is concise"},
    ]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    for needle in ("<|im_start|>principle\nis concise<|im_end|>", "<|im_start|>assistant\n"):
        if needle not in text:
            raise ValueError(f"chat template output lacks {needle!r}: {text!r}")
    for special in ("<|im_start|>", "<|im_end|>"):
        if len(tok.encode(special, add_special_tokens=False)) != 1:
            raise ValueError(f"{special} is not a single token")
