"""A byte-level BPE tokenizer trained on the corpus, dressed as a real model family's tokenizer.

The smoke and rehearsal profiles never download a tokenizer: this module trains one locally
(``tokenizers``), wraps it as a ``transformers`` fast tokenizer and saves it like any hub
tokenizer, so every later stage loads it with ``AutoTokenizer``. :func:`family_tokenizer` gives
it a family's special tokens and chat template (:data:`FAMILIES`):

- ``chatml``: the project's own minimal ChatML template (the smoke profile);
- ``qwen3``: Qwen3's added tokens (``<think>``/``</think>``/tool tokens not special, as
  published) and its chat template ``templates/qwen3.jinja`` (hybrid thinking, ``enable_thinking``;
  drops unknown roles such as ``principle``, which the GenRM patches);
- ``llama3``: Llama-3.3-Instruct's special tokens (BOS added by the tokenizer, EOS ``<|eot_id|>``)
  and its template ``templates/llama3.jinja`` (fixed system header with the knowledge-cutoff date).

The two template files reproduce the ``chat_template`` of ``Qwen/Qwen3-32B`` and
``meta-llama/Llama-3.3-70B-Instruct`` ``tokenizer_config.json`` as published on the Hugging Face
hub (the hub is unreachable here: copied from public copies of those files, not byte-checked
against the hub). At paper scale the same loaders take a hub name (``Qwen/Qwen3-32B``) instead.

Guarantees checked by :func:`check_tokenizer`: ``Yes``, ``No``, `` Yes`` and `` No`` are single
tokens (the rewards read their logits), EOS is one token, and the chat template renders a
user turn, an assistant turn and the generation prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
ANSWER_WORDS = ["Yes", "No", " Yes", " No"]
TEMPLATES = Path(__file__).parent / "templates"

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


# Added tokens of each family, in the published order, as (content, special). qwen3: Qwen3's
# tokenizer_config.json ids 151643-151668; llama3: Llama-3.3's 128000-128010 that templates use.
_QWEN3_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
                ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
                ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True),
                ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
                ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
                ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
                ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False)]
_LLAMA3_ADDED = [("<|begin_of_text|>", True), ("<|end_of_text|>", True), ("<|finetune_right_pad_id|>", True),
                 ("<|start_header_id|>", True), ("<|end_header_id|>", True), ("<|eom_id|>", True),
                 ("<|eot_id|>", True), ("<|python_tag|>", True)]
FAMILIES = {
    "chatml": {"added": [], "bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "template": None},
    "qwen3": {"added": _QWEN3_ADDED, "bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>",
              "template": "qwen3.jinja"},
    "llama3": {"added": _LLAMA3_ADDED, "bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
               "pad": "<|finetune_right_pad_id|>", "template": "llama3.jinja"},
}


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


def family_tokenizer(tok, family: str):
    """A copy of the trained tokenizer ``tok`` with ``family``'s added tokens (special or not, as
    published), BOS/EOS/pad and chat template (:data:`FAMILIES`). Tokens the trained vocabulary
    already holds keep their ids; the others are appended. ``llama3`` also prepends BOS on
    ``tok(text)`` as Llama's tokenizer does (``add_special_tokens=False`` leaves it out)."""
    import json

    from tokenizers import AddedToken, Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    if family not in FAMILIES:
        raise ValueError(f"family: must be one of {sorted(FAMILIES)}, got {family!r}")
    spec = FAMILIES[family]
    if not spec["added"]:
        import copy

        return copy.deepcopy(tok)
    state = json.loads(tok.backend_tokenizer.to_str())
    special = dict(spec["added"])
    for entry in state["added_tokens"]:  # the trained specials take the family's flag (Qwen3: <think> is plain)
        entry["special"] = special.get(entry["content"], entry["special"])
    backend = Tokenizer.from_str(json.dumps(state))
    have = {e["content"] for e in state["added_tokens"]}
    backend.add_tokens([AddedToken(t, special=sp, normalized=False) for t, sp in spec["added"] if t not in have])
    if spec["bos"]:
        bos_id = backend.token_to_id(spec["bos"])
        backend.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A {spec['bos']} $B", special_tokens=[(spec["bos"], bos_id)])
    out = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=spec["bos"], eos_token=spec["eos"],
                                  pad_token=spec["pad"], unk_token=None, clean_up_tokenization_spaces=False)
    out.chat_template = (TEMPLATES / spec["template"]).read_text()
    out.padding_side = "left"
    check_tokenizer(out)
    return out


def load_tokenizer(name_or_path: str | Path):
    """Load a tokenizer (local folder or hub name); never runs remote code."""
    from transformers import AutoTokenizer

    from rlbff_lib.models.lm import check_model_dir

    check_model_dir(name_or_path, need=None)
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
    """Raise ``ValueError`` unless the answer words and EOS are single tokens and the chat template
    renders a user turn, an assistant turn and a generation prompt.

    Roles beyond these are not required: Qwen3's published template drops unknown roles, and the
    GenRM patches its own copy to render ``principle`` (:func:`rlbff_lib.reward_models.genrm.ensure_principle_role`).
    """
    answer_token_ids(tok)
    answer_token_ids(tok, leading_space=True)
    if tok.eos_token is None or len(tok.encode(tok.eos_token, add_special_tokens=False)) != 1:
        raise ValueError(f"eos token {tok.eos_token!r} is not a single token")
    user, reply = "PROBE-USER-TURN", "PROBE-ASSISTANT-TURN"
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    full = tok.apply_chat_template(msgs, tokenize=False)
    prompt = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    bare = tok.apply_chat_template(msgs[:1], tokenize=False)
    if user not in full or reply not in full or full.index(user) > full.index(reply):
        raise ValueError(f"chat template does not render a user and an assistant turn in order: {full!r}")
    if not prompt.startswith(bare) or len(prompt) == len(bare):
        raise ValueError(f"chat template adds no generation prompt: {prompt!r}")
