"""The rehearsal: every stage of the paper-scale path, under ``profile: rehearsal``, in a scratch tree, in minutes.

Not a stage of its own (no notebook): it prepares a scratch tree and runs the seven stage notebooks there
with the stage runner (:func:`rlbff_lib.core.stage.run_stage`), so the smoke outputs are never touched.

    python -m rlbff_lib.stages.rehearsal [--root outputs/rehearsal] [--stages data,assets,...]     # make rehearsal

What it does, in order:

1. ``ROOT/params.yaml``: the repository's ``params.yaml`` with ``profile: rehearsal`` (the full profile with
   the documented substitutions of ``profiles/rehearsal.yaml``); ``ROOT/profiles`` links the repository's.
2. ``ROOT/<data.helpsteer3.hub_name>``: a local copy of nvidia/HelpSteer3 in the hub's exact schema (the
   ``feedback`` and ``preference`` configs, train/validation as the records are split), written from the
   synthetic world of ``data.world`` (:func:`rlbff_lib.data.sources.write_hub_dataset`). The ``data`` stage
   reads it with the same ``load_dataset`` call as the hub; no ground truth is written anywhere.
3. The services the full profile expects, started here on free local ports (their URLs passed to the stage as
   parameter overrides) and stopped after their stage: the simulated extraction LLM
   (:mod:`rlbff_lib.synthetic.extraction_server`) for ``principles``; the project's GenRM server
   (:mod:`rlbff_lib.reward_models.genrm_server`, serving the trained GenRM) for ``rm_eval``'s GenRM
   generation server and ``alignment``'s judge reward, and the Bradley-Terry scoring service
   (:mod:`rlbff_lib.reward_models.serve`) for ``alignment``'s BT reward. Each stage's own preflight checks them
   before any work.
4. Each stage in order; ``ROOT/rehearsal.json`` records wall and CPU seconds per stage (CPU: this process and
   its finished children, a measure that does not depend on what else the machine runs), and the GenRM's GRPO facts:
   ``frac_reward_zero_std`` over its first 10 logged steps and its first / last mean reward.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

from rlbff_lib.core.params import REPO_ROOT, load_params, read_raw

STAGES = ("data", "assets", "principles", "reward_models", "rm_eval", "alignment", "report")
DEFAULT_ROOT = REPO_ROOT / "outputs" / "rehearsal"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def prepare_tree(root: Path) -> Path:
    """Write ``root/params.yaml`` (profile: rehearsal) and link ``root/profiles``; returns the params file."""
    root.mkdir(parents=True, exist_ok=True)
    text = (REPO_ROOT / "params.yaml").read_text()
    text, n = re.subn(r"(?m)^profile:\s*\S+", "profile: rehearsal", text)
    if n != 1:
        raise ValueError(f"{REPO_ROOT / 'params.yaml'}: expected one top-level `profile:` line, found {n}")
    params = root / "params.yaml"
    params.write_text(text)
    link = root / "profiles"
    if not link.exists():
        link.symlink_to(REPO_ROOT / "profiles", target_is_directory=True)
    return params


def write_hub_copy(params_path: Path, root: Path) -> dict:
    """The local HelpSteer3 copy at ``data.helpsteer3.hub_name`` (relative to ``root``), from ``data.world``."""
    from rlbff_lib.data.sources import write_hub_dataset
    from rlbff_lib.synthetic.world import generate_world

    cfg = load_params(params_path, sections=["data"])["data"]
    records = generate_world(cfg.world).records
    return write_hub_dataset(records, root / cfg.helpsteer3.hub_name, tuple(cfg.helpsteer3.splits))


@contextlib.contextmanager
def services(stage: str, params_path: Path, root: Path):
    """Start what ``stage`` needs under the rehearsal profile; yields the stage's parameter overrides."""
    raw = read_raw(params_path)
    if stage == "principles":
        from rlbff_lib.synthetic.extraction_server import ServeConfig, serve_subprocess

        serve = ServeConfig()
        with serve_subprocess(serve) as url:
            yield {"extraction": {"base_url": url, "model": serve.served_model(), "api_key_env": ""}}
    elif stage == "rm_eval" and (raw.get("rm_eval", {}).get("models", {}).get("genrm") or {}).get("generation_server"):
        from rlbff_lib.reward_models.genrm_server import serve_subprocess

        models = raw["rm_eval"]["models"]  # a free-key mapping: papermill overrides replace it whole
        server = models["genrm"]["generation_server"]
        with serve_subprocess(root / models["genrm"]["path"], server.get("model") or "genrm",
                              param="rm_eval GenRM generation server") as url:
            yield {"models": {**models, "genrm": {**models["genrm"], "generation_server": {**server, "base_url": url}}}}
    elif stage == "alignment":
        rewards, reward = raw.get("alignment", {}).get("rewards") or [], raw["alignment"]["grpo"]["reward"]
        published = root / "models" / "reward_models"
        served: dict = {}
        with contextlib.ExitStack() as stack:
            if "judge" in rewards:  # the trained GenRM as an OpenAI-compatible judge with logprobs
                from rlbff_lib.reward_models.genrm_server import serve_subprocess as serve_genrm

                served["judge_base_url"] = stack.enter_context(serve_genrm(
                    published / "genrm", reward.get("judge_model") or "genrm", param="alignment judge server"))
            if "bt" in rewards and reward.get("score_url"):  # the BT reward served once, not loaded by every rank
                from rlbff_lib.reward_models.serve import serve_subprocess as serve_scorer

                served["score_url"] = stack.enter_context(serve_scorer(
                    "bt", published / "bt", reward.get("max_length"), param="alignment.grpo.reward.score_url"))
            yield {"grpo": {"reward": served}} if served else {}
    else:
        yield {}


def genrm_grpo_facts(root: Path) -> dict | None:
    """``frac_reward_zero_std`` (mean and max over the first 10 logged steps) and the first / last mean reward
    of the GenRM's GRPO, from its training log in the rehearsal tree."""
    logs = sorted((root / "models" / "rm_runs").glob("genrm-*/grpo/training_log.json"))
    if not logs:
        return None
    curve = [p for p in json.loads(logs[-1].read_text()).get("train", []) if "reward" in p]
    if not curve:
        return None
    first = curve[:10]
    zero = [p.get("frac_reward_zero_std", float("nan")) for p in first]
    return {"log": str(logs[-1].relative_to(root)), "steps": len(curve),
            "frac_reward_zero_std_first10": {"mean": sum(zero) / len(zero), "max": max(zero)},
            "reward_first": curve[0]["reward"], "reward_last": curve[-1]["reward"],
            "reward_first3_mean": sum(p["reward"] for p in curve[:3]) / len(curve[:3]),
            "reward_last3_mean": sum(p["reward"] for p in curve[-3:]) / len(curve[-3:]),
            "reward_std": [p.get("reward_std") for p in curve], "reward": [p["reward"] for p in curve]}


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children (kernels, trainers, servers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(root: Path, stages=STAGES) -> dict:
    """Run ``stages`` in the rehearsal tree ``root``; returns (and writes ``root/rehearsal.json``) the timings."""
    from rlbff_lib.core.io import write_json
    from rlbff_lib.core.stage import run_stage

    root = root.resolve()
    params = prepare_tree(root)
    os.environ.update(OFFLINE)
    os.environ["HF_DATASETS_CACHE"] = str(root / "cache" / "datasets")  # private: a rerun never reads a stale copy
    report: dict = {"root": str(root), "stages": {}}
    total = time.monotonic()
    report["cpu_s"] = {}
    for stage in stages:
        start, cpu = time.monotonic(), _cpu_seconds()
        if stage == "data":
            report["hub_copy"] = write_hub_copy(params, root)
        with services(stage, params, root) as overrides:
            run_stage(stage, params, overrides=overrides, workdir=root)
        report["stages"][stage] = round(time.monotonic() - start, 1)
        report["cpu_s"][stage] = round(_cpu_seconds() - cpu, 1)
        print(f"[rehearsal] {stage}: {report['stages'][stage]:.0f} s wall, {report['cpu_s'][stage]:.0f} s CPU", flush=True)
        write_json(root / "rehearsal.json", report)
    report["total_s"] = round(time.monotonic() - total, 1)
    report["genrm_grpo"] = genrm_grpo_facts(root)
    write_json(root / "rehearsal.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlbff_lib.stages.rehearsal", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(DEFAULT_ROOT), help="the scratch tree (default: outputs/rehearsal)")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in pipeline order")
    args = ap.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        print(f"error: --stages: unknown stage {bad[0]!r} (known: {', '.join(STAGES)})", file=sys.stderr)
        return 2
    report = run(Path(args.root), stages)
    print(json.dumps({k: v for k, v in report.items() if k != "genrm_grpo"}, indent=1))
    if report.get("genrm_grpo"):
        g = report["genrm_grpo"]
        print(f"GenRM GRPO: frac_reward_zero_std over the first 10 steps {g['frac_reward_zero_std_first10']}, "
              f"mean reward {g['reward_first3_mean']:.2f} (first 3) -> {g['reward_last3_mean']:.2f} (last 3)")
        # the GenRM must learn from the untrained stand-in (issue 12): reward variance in its groups, a rising reward
        if g["frac_reward_zero_std_first10"]["mean"] >= 0.5 or g["reward_last3_mean"] <= g["reward_first3_mean"]:
            print("error: the rehearsal's GenRM GRPO did not learn (frac_reward_zero_std >= 0.5 over its first 10 "
                  "steps, or its mean reward did not rise)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
