"""The ``alignment`` stage: policy warm start, GRPO with the principle reward and the BT baseline,
and the policy's evaluation (paper §6).

Steps (each run in a keyed folder under ``models/alignment_runs/``, a DVC ``persist: true``
output, so an interrupted stage resumes and a changed config or input gets a fresh folder):

1. **SFT warm start** of the tiny policy (:func:`rlbff_lib.alignment.policy.train_policy_sft`; skipped at
   paper scale, where Qwen3-32B is the policy as released).
2. **GRPO** (:func:`rlbff_lib.alignment.grpo.train_grpo`) once per reward backend in ``rewards``
   (smoke: the scalar principle RM, then the Bradley–Terry RM, the paper's baseline row) and per
   seed in ``seeds``. The training principles of each property are the strings the reward model
   was trained on (:func:`principle_texts`), so the reward is asked what it learned.
3. **Fulfilment** (:func:`rlbff_lib.alignment.policy.fulfilment`): the world's checkers on the policies'
   answers to held-out world prompts, for the trained principles and the held-out ones, plus
   response length (length hacking shows there). The SFT policy is sampled with the same seeds
   as the GRPO runs; ``gain`` = mean over seeds of (GRPO − SFT) on the trained principles
   (:func:`rlbff_lib.alignment.policy.fulfilment_gain`: Welch's t-test of GRPO seeds against SFT seeds, its 95%
   interval and p; above noise when the interval lies above 0).
4. **MT-Bench, Arena-Hard v2** (:mod:`rlbff_lib.evaluation.policy_bench`) **and WildBench v2**
   (:mod:`rlbff_lib.evaluation.wildbench`) for the SFT policy and every GRPO run; the smoke judge is
   the project's own principle RM, labelled as such everywhere. A reward's seeds are pooled (ours):
   MT-Bench is their mean, Arena-Hard one bootstrap per category over all their battles, WildBench
   one score over all their rows.

``outputs/details/alignment.json`` (see :func:`stage_metrics`) is what the ``report`` stage reads;
``metrics/alignment.json`` holds its headline numbers (:func:`headline_metrics`).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

from rlbff_lib.alignment.grpo import BACKENDS, AlignmentConfig, RewardConfig
from rlbff_lib.alignment.policy import PolicySFTConfig
from rlbff_lib.evaluation.policy_bench import PolicyEvalConfig
from rlbff_lib.evaluation.wildbench import WildBenchConfig
from rlbff_lib.core.progress import log

MODEL_BACKENDS = ("scalar", "genrm", "bt")  # rewards that load a model from ``reward_models_dir/<backend>``


@dataclass
class FulfilmentConfig:
    """Checker-measured fulfilment on held-out world prompts.

    n_prompts: prompts drawn from ``world.sample_policy_prompts`` with ``prompt_seed`` (a stream
    apart from the SFT data and the GRPO prompts), in the GRPO config's domains.
    temperature: sampling temperature (GRPO's own, 1.0, measures the trained distribution; 0: greedy).
    num_samples: answers per prompt. max_new_tokens, batch_size: generation (tokens, sequences).
    """

    n_prompts: int = 256
    prompt_seed: int = 2
    temperature: float = 1.0
    num_samples: int = 1
    max_new_tokens: int = 128
    batch_size: int = 32

    def __post_init__(self):
        for name in ("n_prompts", "num_samples", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature: must be >= 0, got {self.temperature}")


@dataclass
class AlignmentStageConfig:
    """The ``alignment`` stage.

    policy: the warm start (:class:`~rlbff_lib.alignment.policy.PolicySFTConfig`; ``sft_steps: 0`` at paper scale).
    grpo: the GRPO run (:class:`~rlbff_lib.alignment.grpo.AlignmentConfig`); its ``reward`` is the
        template of every reward in ``rewards`` (backend and model path replaced per run).
    rewards: reward backends, one GRPO run per backend and seed; the FIRST is the principle reward
        whose gain ``fulfilment.gain`` reports (smoke: ``[scalar, bt]``; paper: ``[genrm, bt]``).
    reward_models_dir: where the ``reward_models`` stage published ``scalar/``, ``bt/``, ``genrm/``.
    principles_file: the reward model's training items; each trained property is phrased by its
        ``principle_texts_per_property`` most frequent principle strings there, each holding at least
        ``principle_texts_min_share`` of the items of the property's most frequent string (merging by
        meaning leaves a few rare wordings: the reward model has barely seen them, so a reward asked
        with them is noise). None found: the world's phrasings. null: the world's phrasings.
    prompt_source: where the GRPO prompts come from: ``world`` (smoke: ``world.sample_policy_prompts``,
        principles of ``grpo.train_properties``), ``principles`` (the prompts of ``principles_file``,
        each with its consensus principles, at most ``grpo.principles_per_prompt``: the paper-scale
        default) or ``file`` (``prompts_file``: JSONL ``{"prompt": [messages], "principles": [...]}``).
        The world's checkers judge world prompts only: fulfilment is measured for ``world`` alone.
    seeds: GRPO seeds (>= 3 for the seed-to-seed standard deviation the gain is judged by).
    fulfilment: :class:`FulfilmentConfig`. evaluation: MT-Bench / Arena-Hard
        (:class:`~rlbff_lib.evaluation.policy_bench.PolicyEvalConfig`; its judge endpoint also serves
        WildBench). wildbench: WildBench v2 (:class:`~rlbff_lib.evaluation.wildbench.WildBenchConfig`).
        benchmarks_dir: folder with ``mt-bench/``, ``arena-hard-v2/`` and optionally ``wildbench/``
        (null: ``$RLBFF_BENCHMARKS_DIR``, then ``../shared/benchmarks``).
    accelerate_config, num_processes: as in the ``reward_models`` stage.
    parallel_runs: GRPO runs at once (CPU: each gets cores / parallel_runs threads; GPU: keep 1).
    """

    policy: PolicySFTConfig = field(default_factory=PolicySFTConfig)
    grpo: AlignmentConfig = field(default_factory=AlignmentConfig)
    rewards: list[str] = field(default_factory=lambda: ["scalar", "bt"])
    reward_models_dir: str = "models/reward_models"
    principles_file: str | None = "data/principles/train.jsonl"
    principle_texts_per_property: int = 3
    principle_texts_min_share: float = 0.1
    prompt_source: Literal["world", "principles", "file"] = "world"
    prompts_file: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    fulfilment: FulfilmentConfig = field(default_factory=FulfilmentConfig)
    evaluation: PolicyEvalConfig = field(default_factory=PolicyEvalConfig)
    wildbench: WildBenchConfig = field(default_factory=WildBenchConfig)
    benchmarks_dir: str | None = None
    accelerate_config: str = "cpu.yaml"
    num_processes: int | None = None
    parallel_runs: int = 2

    def __post_init__(self):
        bad = [r for r in self.rewards if r not in BACKENDS]
        if not self.rewards or bad or len(set(self.rewards)) != len(self.rewards):
            raise ValueError(f"rewards: must be distinct backends from {list(BACKENDS)}, got {self.rewards}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: must be a non-empty list of distinct seeds, got {self.seeds}")
        if self.principle_texts_per_property < 1:
            raise ValueError(f"principle_texts_per_property: must be >= 1, got {self.principle_texts_per_property}")
        if not 0 <= self.principle_texts_min_share <= 1:
            raise ValueError(f"principle_texts_min_share: must be in [0, 1], got {self.principle_texts_min_share}")
        if self.prompt_source not in ("world", "principles", "file"):
            raise ValueError(f"prompt_source: must be world, principles or file, got {self.prompt_source!r}")
        if self.prompt_source == "file" and not self.prompts_file:
            raise ValueError("prompts_file: prompt_source 'file' needs the path of a JSONL of training rows")
        if self.prompt_source == "principles" and not self.principles_file:
            raise ValueError("principles_file: prompt_source 'principles' reads the prompts from it")
        if self.parallel_runs < 1:
            raise ValueError(f"parallel_runs: must be >= 1, got {self.parallel_runs}")
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(f"num_processes: must be >= 1 or null, got {self.num_processes}")
        from rlbff_lib.training.launch import ACCELERATE_CONFIGS

        if not (Path(self.accelerate_config).is_file() or (ACCELERATE_CONFIGS / self.accelerate_config).is_file()):
            raise ValueError(f"accelerate_config: {self.accelerate_config} not found (nor under {ACCELERATE_CONFIGS})")

    def reward_config(self, backend: str) -> RewardConfig:
        """The reward of one run: the ``grpo.reward`` template with ``backend`` and its model folder."""
        path = str(Path(self.reward_models_dir) / backend) if backend in MODEL_BACKENDS else self.grpo.reward.model_path
        return replace(self.grpo.reward, backend=backend, model_path=path)


# ------------------------------------------------------------------ inputs


def principle_texts(items: Sequence[dict], properties: Sequence[str], per_property: int = 3,
                    min_share: float = 0.0) -> dict[str, list[str]]:
    """property -> its ``per_property`` most frequent principle strings among RM ``items``
    (``{"property", "principle"}``; ties by first appearance), leaving out strings with fewer than
    ``min_share`` × the items of the property's most frequent string. Properties absent from the items
    are left out."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for it in items:
        if it.get("property") in properties:
            counts[it["property"]][it["principle"]] += 1
    out = {}
    for p in properties:
        ranked = counts[p].most_common(per_property)
        if ranked:
            out[p] = [t for t, n in ranked if n >= min_share * ranked[0][1]]
    return out


def check_inputs(cfg: AlignmentStageConfig) -> None:
    """Fail before any training when an input is missing: the base policy, each reward's model
    folder (with safetensors weights), the principles file and the judge's model; or when a remote
    judge's endpoint is unreachable or does not serve its model (in seconds, naming the parameter)."""
    from rlbff_lib.core.io import DataError

    needed = [(cfg.policy.name_or_path, "policy.name_or_path")] if cfg.policy.sft_steps else []
    needed += [(cfg.reward_config(b).model_path, f"rewards: {b}") for b in cfg.rewards if b in MODEL_BACKENDS]
    if cfg.evaluation.judge == "principle_rm":
        needed.append((cfg.evaluation.judge_model_path, "evaluation.judge_model_path"))
    for path, key in needed:
        if Path(path).exists() and not list(Path(path).glob("*.safetensors")):
            raise DataError(path, f"{key}: no safetensors weights in the folder")
        if not Path(path).exists() and not _looks_like_hub_name(path):
            raise DataError(path, f"{key}: model folder not found (run the stage that makes it first)")
    if cfg.principles_file and not Path(cfg.principles_file).is_file():
        raise DataError(cfg.principles_file, "principles_file: not found (run the principles stage first)")
    if cfg.prompt_source == "file" and not Path(cfg.prompts_file).is_file():
        raise DataError(cfg.prompts_file, "prompts_file: not found")
    training_rows(cfg)  # validated now: a bad row names file, row and field
    if "judge" in cfg.rewards:
        cfg.reward_config("judge").preflight()
    cfg.evaluation.preflight()


def rows_from_items(items: Sequence[dict], max_principles: int) -> list[dict]:
    """GRPO rows from principle items: one per prompt (``prompt_id``), its conversation
    (``context``) and the first ``max_principles`` distinct principles of its items, in file order."""
    rows: dict[str, dict] = {}
    for it in items:
        row = rows.setdefault(it["prompt_id"], {"id": it["prompt_id"], "prompt": it["context"], "principles": [],
                                                "domain": it.get("domain", "")})
        if it["principle"] not in row["principles"] and len(row["principles"]) < max_principles:
            row["principles"].append(it["principle"])
    return list(rows.values())


def training_rows(cfg: AlignmentStageConfig) -> list[dict] | None:
    """The GRPO rows of ``prompt_source`` (validated), or ``None`` for world prompts."""
    from rlbff_lib.alignment.grpo import validate_rows
    from rlbff_lib.core.io import read_jsonl

    if cfg.prompt_source == "file":
        return validate_rows(read_jsonl(cfg.prompts_file), cfg.prompts_file)
    if cfg.prompt_source == "principles":
        return validate_rows(rows_from_items(read_jsonl(cfg.principles_file), cfg.grpo.principles_per_prompt),
                             cfg.principles_file)
    return None


def _looks_like_hub_name(path: str) -> bool:
    from rlbff_lib.core.preflight import looks_like_hub_name

    return looks_like_hub_name(path)


def load_benchmarks(cfg: AlignmentStageConfig):
    """(MT-Bench, Arena-Hard v2, WildBench v2, note): validated now (a broken file raises naming
    file, line and field). Without a benchmarks folder MT-Bench and Arena-Hard are ``None``;
    WildBench is ``None`` when disabled or not available (no local copy, hub off or unreachable);
    ``note`` says what was loaded and why anything is missing."""
    from rlbff_lib.evaluation import benchmarks as bm

    root = bm.benchmarks_dir(cfg.benchmarks_dir)
    wildbench, wb_note = None, "WildBench: not run (wildbench.enabled: false)"
    if cfg.wildbench.enabled:
        try:
            wildbench = bm.load_wildbench(root, cfg.wildbench.reference_models, cfg.wildbench.use_hub)
            wb_note = f"WildBench from {wildbench.source}" + "".join(
                f"; WB-Reward against {m}: not available ({why})" for m, why in wildbench.missing.items())
        except bm.HubUnavailable as e:
            wb_note = f"WildBench: not available: {e}"
    if root is None:
        return None, None, wildbench, (f"MT-Bench / Arena-Hard: not available: no benchmarks folder (set "
                                       f"benchmarks_dir or ${bm.ENV_VAR}, or place ../shared/benchmarks beside "
                                       f"the repository). {wb_note}")
    arena = bm.load_arena_hard(root)
    skipped = "".join(f"; Arena-Hard {c}: {why}" for c, why in arena.skipped.items())
    return bm.load_mtbench(root), arena, wildbench, f"benchmarks from {root}{skipped}. {wb_note}"

# ------------------------------------------------------------------ runs


def sft_policy(cfg: AlignmentStageConfig, runs_dir: str | Path) -> dict:
    """The warm-started policy (an ``accelerate launch`` subprocess in a keyed run folder);
    returns its training log, whose ``model_dir`` is the policy GRPO starts from."""
    from rlbff_lib.alignment.policy import train_policy_sft
    from rlbff_lib.training.launch import TrainJob
    from rlbff_lib.training.runs import launch_or_reuse, run_dir

    if cfg.policy.sft_steps == 0:
        return train_policy_sft(cfg.policy, Path(runs_dir) / "policy_sft-unused")
    config = asdict(cfg.policy)
    folder = run_dir(runs_dir, "policy_sft", config, cfg.policy.name_or_path)
    job = TrainJob(model=cfg.policy.name_or_path, train_file="", output_dir=str(folder), config=config)
    return launch_or_reuse("rlbff_lib.alignment.policy", job, accelerate_config=cfg.accelerate_config,
                           num_processes=cfg.num_processes, name="policy_sft")


def run_configs(cfg: AlignmentStageConfig, train_properties: Sequence[str],
                texts: dict[str, list[str]]) -> list[tuple[str, int, AlignmentConfig]]:
    """(backend, seed, GRPO config) of every run, rewards in order, then seeds."""
    base = replace(cfg.grpo, train_properties=list(train_properties), principle_texts=dict(texts))
    return [(b, s, replace(base, seed=s, reward=cfg.reward_config(b))) for b in cfg.rewards for s in cfg.seeds]


def grpo_runs(cfg: AlignmentStageConfig, policy_dir: str | Path, runs_dir: str | Path,
              train_properties: Sequence[str], texts: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Every GRPO run (``parallel_runs`` at once, each an ``accelerate launch`` subprocess);
    returns backend -> training records in seed order.

    A run's folder key hashes its config, the policy weights and the reward model weights, so a
    retrained RM or policy never resumes a stale run; a finished run is returned as is.
    """
    from rlbff_lib.alignment.grpo import launch_grpo
    from rlbff_lib.training.runs import run_dir

    rows = training_rows(cfg)
    jobs = []
    for backend, seed, run_cfg in run_configs(cfg, train_properties, texts):
        weights = [str(w) for w in sorted(Path(run_cfg.reward.model_path).glob("*.safetensors"))] \
            if backend in MODEL_BACKENDS else []
        if cfg.prompt_source != "world":
            weights.append(cfg.prompts_file if cfg.prompt_source == "file" else cfg.principles_file)
        jobs.append((backend, seed, run_cfg, run_dir(runs_dir, f"grpo-{backend}-s{seed}", asdict(run_cfg),
                                                      str(policy_dir), weights)))
    threads = max(1, (os.cpu_count() or 1) // cfg.parallel_runs)

    def one(job):
        backend, seed, run_cfg, out = job
        log(f"[grpo {backend} seed {seed}] {out}")
        return launch_grpo(run_cfg, policy_dir, out, rows, accelerate_config=cfg.accelerate_config,
                           num_processes=cfg.num_processes, env={"OMP_NUM_THREADS": str(threads)},
                           prefix=f"[{backend} s{seed}] ")

    with ThreadPoolExecutor(cfg.parallel_runs) as pool:
        records = list(pool.map(one, jobs))
    out: dict[str, list[dict]] = defaultdict(list)
    for (backend, _, _, _), rec in zip(jobs, records):
        out[backend].append(rec)
    return dict(out)


# ------------------------------------------------------------------ measurement


def measure_fulfilment(model_dir: str | Path, cfg: AlignmentStageConfig, prompts: Sequence[dict],
                       properties: Sequence[str], trained: Sequence[str], seed: int) -> dict:
    """:func:`rlbff_lib.alignment.policy.fulfilment` of the policy at ``model_dir`` (sampling ``seed``)."""
    from rlbff_lib.alignment.policy import fulfilment
    from rlbff_lib.models.lm import load_causal_lm
    from rlbff_lib.models.tokenizer import load_tokenizer

    model, tok = load_causal_lm(model_dir).eval(), load_tokenizer(model_dir)
    f = cfg.fulfilment
    return fulfilment(model, tok, prompts, properties, trained=trained, temperature=f.temperature,
                      num_samples=f.num_samples, max_new_tokens=f.max_new_tokens, batch_size=f.batch_size, seed=seed,
                      chat_template_kwargs=cfg.grpo.chat_template_kwargs or None)


def evaluate_benchmarks(model_dir: str | Path, cfg: AlignmentStageConfig, judges, mtbench, arena,
                        wildbench=None, wildbench_judges=None) -> dict:
    """MT-Bench, Arena-Hard v2 and WildBench v2 results of one policy (``None`` for a benchmark not
    loaded). judges: (MT-Bench, Arena-Hard) judges; wildbench_judges: (WB-Score, WB-Reward) judges
    (:func:`~rlbff_lib.evaluation.wildbench.make_wildbench_judges`)."""
    from rlbff_lib.evaluation.policy_bench import run_arena_hard, run_mtbench
    from rlbff_lib.evaluation.wildbench import run_wildbench
    from rlbff_lib.models.lm import load_causal_lm
    from rlbff_lib.models.tokenizer import load_tokenizer

    model, tok = load_causal_lm(model_dir).eval(), load_tokenizer(model_dir)
    return {"mt_bench": run_mtbench(model, tok, judges[0], mtbench, cfg.evaluation) if mtbench else None,
            "arena_hard": run_arena_hard(model, tok, judges[1], arena, cfg.evaluation) if arena else None,
            "wildbench": run_wildbench(model, tok, wildbench_judges, wildbench, cfg.evaluation, cfg.wildbench)
            if wildbench else None}


def fulfilment_runs(cfg: AlignmentStageConfig, policy_dir: str | Path, runs: dict[str, list[dict]],
                    train_properties: Sequence[str], held_out: Sequence[str]) -> tuple[list[dict], dict[str, list[dict]]]:
    """:func:`measure_fulfilment` on held-out world prompts: the SFT policy once per seed of ``cfg.seeds``, then
    each GRPO run of ``runs`` with its own seed. Returns ``(sft, {reward: [per run]})``; both empty unless
    ``prompt_source`` is ``world`` (the checkers judge world prompts only)."""
    from rlbff_lib.synthetic import world as W

    if cfg.prompt_source != "world" or not cfg.seeds:
        return [], {}
    f = cfg.fulfilment
    prompts = W.sample_policy_prompts(f.n_prompts, f.prompt_seed, cfg.grpo.domains, cfg.grpo.max_turns,
                                      cfg.grpo.word_limit)
    properties = list(train_properties) + list(held_out)
    sft = []
    for seed in cfg.seeds:
        sft.append(measure_fulfilment(policy_dir, cfg, prompts, properties, train_properties, seed))
        log(f"SFT seed {seed}: trained {sft[-1]['trained']:.3f}, held out {sft[-1]['held_out']:.3f}")
    after: dict[str, list[dict]] = {}
    for backend, records in runs.items():
        after[backend] = []
        for r in records:
            after[backend].append(measure_fulfilment(r["model_dir"], cfg, prompts, properties, train_properties,
                                                     r["seed"]))
            res = after[backend][-1]
            log(f"GRPO {backend} seed {r['seed']}: trained {res['trained']:.3f}, held out {res['held_out']:.3f}")
    return sft, after


def benchmark_runs(cfg: AlignmentStageConfig, policy_dir: str | Path, runs: dict[str, list[dict]],
                   judge_cache: str | Path, mtbench, arena, wildbench=None) -> dict[str, list[dict]]:
    """:func:`evaluate_benchmarks` of the SFT policy and of every GRPO run, with one set of judges whose
    answers are cached in ``judge_cache`` (a rerun asks remote judges only new requests); ``{}`` when no
    benchmark is loaded. Returns ``{"sft": [result], reward: [per run]}``."""
    from rlbff_lib.evaluation.policy_bench import make_judges
    from rlbff_lib.evaluation.wildbench import make_wildbench_judges

    if mtbench is None and wildbench is None:
        return {}
    judges = make_judges(cfg.evaluation, cache_path=judge_cache)
    cache = judges[0].endpoint.cache if cfg.evaluation.judge == "openai" else None  # one file for every judge
    wb_judges = make_wildbench_judges(cfg.evaluation, cfg.wildbench, judges[0], cache) if wildbench else None
    bench = {"sft": [evaluate_benchmarks(policy_dir, cfg, judges, mtbench, arena, wildbench, wb_judges)]}
    for backend, records in runs.items():
        bench[backend] = [evaluate_benchmarks(r["model_dir"], cfg, judges, mtbench, arena, wildbench, wb_judges)
                          for r in records]
    log(f"judge: {judges[0].label}")
    return bench


def pooled_arena(results: Sequence[dict], cfg: PolicyEvalConfig) -> dict:
    """Arena-Hard v2 over the battles of several policies (a reward's seeds), per category as
    :func:`~rlbff_lib.evaluation.policy_bench.score_arena_categories` (pooling seeds is ours)."""
    from rlbff_lib.evaluation.policy_bench import score_arena_categories

    records = [r for res in results for r in res["records"]]
    return {"judge": results[0]["judge"], "n_policies": len(results), "skipped": results[0].get("skipped", {}),
            **score_arena_categories(records, results[0]["baselines"], cfg.weight, cfg.n_bootstrap, cfg.seed)}


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def _brief(f: dict) -> dict:
    """A fulfilment result without its bulk (what the metrics file keeps per run)."""
    keys = ("rates", "trained", "held_out", "mean_words", "mean_prose_words", "mean_tokens", "terminated",
            "language_ok", "n_responses")
    return {k: f[k] for k in keys} | _rate_intervals(f["rates"], f.get("counts"))


def _rate_intervals(rates: dict, counts: dict | None) -> dict:
    """``{counts, rates_ci}``: each property's 95% Wilson interval over its answers (``rates``: shares; ``counts``:
    answers judged per property, None for results without counts, then no intervals)."""
    from rlbff_lib.core.stats import share_interval

    if counts is None:
        return {"counts": None, "rates_ci": None}
    return {"counts": dict(counts), "rates_ci": {p: share_interval(r, counts[p]) if counts.get(p) else None
                                                 for p, r in rates.items()}}


def _mean_rates(results: Sequence[dict]) -> dict:
    props = list(results[0]["rates"])
    out = {"rates": {p: _mean([r["rates"][p] for r in results]) for p in props}}
    for k in ("trained", "held_out", "mean_words", "mean_tokens", "terminated", "language_ok"):
        out[k] = _mean([r[k] for r in results])
    # intervals over the answers of all seeds pooled (the seeds judge the same prompts, equally many answers each):
    # sampling noise only; the spread between training seeds is the gain's test
    counts = None if any(r.get("counts") is None for r in results) else \
        {p: sum(r["counts"][p] for r in results) for p in props}
    return out | _rate_intervals(out["rates"], counts)


def stage_metrics(cfg: AlignmentStageConfig, sft_log: dict, runs: dict[str, list[dict]],
                  sft_fulfilment: Sequence[dict], run_fulfilment: dict[str, list[dict]],
                  benchmarks: dict[str, list[dict]], train_properties: Sequence[str],
                  held_out: Sequence[str], texts: dict[str, list[str]]) -> dict:
    """``outputs/details/alignment.json``.

    ``fulfilment``: ``before`` (SFT, mean over sampling seeds) and ``after`` (the first reward,
    mean over GRPO seeds), each ``{rates, trained, held_out, mean_tokens, ...}``; ``gain``
    ``{mean, std, ci, p_value, test, significant (= above_noise: ci above 0), baseline_mean, ...}`` on the trained
    principles (:func:`rlbff_lib.alignment.policy.fulfilment_gain`); ``rates_ci``/``counts`` beside each ``rates``
    (95% Wilson over the answers, seeds pooled); ``seeds``
    ``[{seed, before, after, gain}]``; ``by_reward[backend]`` the same gains for every reward, on
    ``trained``, ``held_out``, ``mean_tokens`` and ``mean_words``. ``policies``: the alignment table
    rows (``label``, ``mt_bench``, ``arena_hard``, ``wildbench``). ``curves``: per run ``[{step, reward, kl,
    completion_length}]``. ``runs``: per run facts. Judge labels say which judge scored.
    """
    primary = cfg.rewards[0]
    labels = {b: cfg.reward_config(b).label for b in cfg.rewards}
    policies = {"sft": {"label": "SFT policy (before GRPO)", **_bench_row(benchmarks.get("sft"), cfg)}}
    for backend in cfg.rewards:
        policies[backend] = {"label": f"GRPO, reward: {labels[backend]} ({len(cfg.seeds)} seeds pooled)",
                             **_bench_row(benchmarks.get(backend), cfg)}
    judge = next((r["mt_bench"]["judge"] for rs in benchmarks.values() for r in rs if r.get("mt_bench")), None)
    return {
        "reward_labels": labels,
        "primary_reward": primary,
        "train_properties": list(train_properties),
        "held_out_properties": list(held_out),
        "principle_texts": texts,
        "fulfilment": fulfilment_metrics(cfg, sft_fulfilment, run_fulfilment) if run_fulfilment else None,
        "judge": judge,
        "mt_bench": {n: p["mt_bench"] for n, p in policies.items()},
        "arena_hard": {n: p["arena_hard"] for n, p in policies.items()},
        "wildbench": {n: p["wildbench"] for n, p in policies.items()},
        "policies": policies,
        "curves": {f"{b} s{r['seed']}": r["curves"] for b, rs in runs.items() for r in rs},
        "runs": {f"{b} s{r['seed']}": {k: r.get(k) for k in ("global_step", "n_rows", "n_dropped_too_long",
                                                                 "seconds", "resumed_from", "model_dir")}
                 | {"reward": r["reward"]["label"]} for b, rs in runs.items() for r in rs},
        "policy_sft": {k: sft_log.get(k) for k in ("global_step", "train_loss", "model_dir", "skipped")}
                      | {"final_loss": (sft_log.get("train") or [{}])[-1].get("loss")},
    }


def headline_metrics(metrics: dict) -> dict:
    """``metrics/alignment.json`` from :func:`stage_metrics`: per reward, the fulfilment gain over seeds (GRPO − SFT,
    a share) on the trained and on the held-out principles with Welch's 95% interval and p; the number of seeds;
    per policy MT-Bench overall (1-10), Arena-Hard v2 win rate (percent, bootstrap interval) and WildBench
    (task macro WB-Score) where run."""
    from rlbff_lib.core.stage import with_ci

    def gain(g: dict) -> dict:
        return with_ci(g.get("gain"), g.get("ci"), "gain") | {"p_value": g.get("p_value")}

    ful = metrics.get("fulfilment") or {}
    gains = {reward: {key: gain(r.get(key) or {}) for key in ("trained", "held_out")}
             for reward, r in (ful.get("by_reward") or {}).items()}
    policies = metrics.get("policies") or {}
    arena = {name: p.get("arena_hard") or {} for name, p in policies.items()}
    return {"fulfilment_gain": gains, "seeds": (ful.get("gain") or {}).get("n_seeds"),
            "mt_bench": {name: (p.get("mt_bench") or {}).get("overall") for name, p in policies.items()},
            "arena_hard": {name: with_ci(a.get("win_rate"), a.get("ci"), "win_rate") for name, a in arena.items()},
            "wildbench": {name: ((p.get("wildbench") or {}).get("wb_score") or {}).get("task_macro")
                          for name, p in policies.items()}}


def fulfilment_metrics(cfg: AlignmentStageConfig, sft_fulfilment: Sequence[dict],
                       run_fulfilment: dict[str, list[dict]]) -> dict:
    """The ``fulfilment`` block of the metrics (see :func:`stage_metrics`)."""
    from rlbff_lib.alignment.policy import fulfilment_gain

    primary = cfg.rewards[0]
    by_reward = {b: {key: fulfilment_gain(sft_fulfilment, results, key)
                     for key in ("trained", "held_out", "mean_tokens", "mean_words")}
                 for b, results in run_fulfilment.items()}
    g = by_reward[primary]["trained"]
    before = _mean_rates(sft_fulfilment)
    return {
        "before": before,
        "after": _mean_rates(run_fulfilment[primary]),
        "gain": {"mean": g["gain"], "std": g["seed_std"], "significant": g["significant"],
                 "ci": g["ci"], "p_value": g["p_value"], "df": g["df"], "test": g["test"],
                 "above_noise": g["significant"], "n_seeds": g["n_seeds"],
                 "baseline_mean": g["baseline_mean"], "baseline_std": g["baseline_std"], "key": "trained",
                 "reward": primary},
        "seeds": [{"seed": s, "before": before["trained"], "after": r["trained"], "gain": r["trained"] - before["trained"]}
                  for s, r in zip(cfg.seeds, run_fulfilment[primary])],
        "by_reward": by_reward,
        "after_by_reward": {b: _mean_rates(rs) for b, rs in run_fulfilment.items()},
        "per_run": {f"{b} s{s}": _brief(r) for b, rs in run_fulfilment.items() for s, r in zip(cfg.seeds, rs)},
        "sft_per_seed": [_brief(r) for r in sft_fulfilment],
        "settings": asdict(cfg.fulfilment),
    }


def _bench_row(results: Sequence[dict] | None, cfg: AlignmentStageConfig) -> dict:
    """MT-Bench (mean over the policies' overall scores), Arena-Hard and WildBench (the policies'
    battles / rows pooled) of one row; the metrics keep no answers, judgments or rows."""
    from rlbff_lib.evaluation.wildbench import pooled_wildbench

    results = list(results or [])
    mt = [r["mt_bench"] for r in results if r.get("mt_bench")]
    ar = [r["arena_hard"] for r in results if r.get("arena_hard")]
    wb = [r["wildbench"] for r in results if r.get("wildbench")]
    row = {"mt_bench": None, "arena_hard": None, "wildbench": None}
    if mt:
        row["mt_bench"] = {"overall": _mean([m["scores"]["overall"] for m in mt]), "judge": mt[0]["judge"],
                           "per_policy": [m["scores"]["overall"] for m in mt], "n_questions": mt[0]["n_questions"]}
    if ar:
        row["arena_hard"] = pooled_arena(ar, cfg.evaluation) if len(ar) > 1 else \
            {k: v for k, v in ar[0].items() if k not in ("records", "answers")}
    if wb:
        row["wildbench"] = pooled_wildbench(wb, cfg.wildbench) if len(wb) > 1 else \
            {k: v for k, v in wb[0].items() if k not in ("rows", "answers")}
    return row


# ------------------------------------------------------------------ model cards


def _policy_accuracy(row: dict | None, fulfilment: dict | None, fulfilment_note: str, bench_note: str) -> list[dict]:
    """Model-card accuracy rows of one policy: checker-measured fulfilment (``fulfilment``: a
    :func:`rlbff_lib.alignment.policy.fulfilment_gain` or the SFT ``before`` block) and its table row's MT-Bench and
    Arena-Hard (``row``: a ``policies`` entry of :func:`stage_metrics`)."""
    import math

    out = []
    if fulfilment and "gain" in fulfilment:  # a reward's GRPO policies against SFT, over training seeds
        std = fulfilment.get("seed_std")
        spread = f"seed std {100 * std:.1f} pts" if std is not None and not math.isnan(std) else "one seed: no spread"
        ci, p = fulfilment.get("ci"), fulfilment.get("p_value")
        if p is not None:
            spread += f"; Welch p = {p:.3g}, {'above noise' if fulfilment.get('significant') else 'not above noise'}"
        out.append({"set": "fulfilment of the trained principles, gain over SFT", "value": 100 * fulfilment["gain"],
                    "ci": [100 * x for x in ci] if ci else None, "n": fulfilment.get("n_seeds"), "unit": " pts",
                    "note": f"{fulfilment_note}; {spread}; items: seeds"})
    elif fulfilment:
        out.append({"set": "fulfilment of the trained principles (share of answers, the world's checkers)",
                    "value": 100 * fulfilment["trained"], "unit": "%", "note": fulfilment_note})
        out.append({"set": "fulfilment of the held-out principles", "value": 100 * fulfilment["held_out"],
                    "unit": "%", "note": fulfilment_note})
    row = row or {}
    if row.get("mt_bench"):
        out.append({"set": f"MT-Bench overall (judge {row['mt_bench']['judge']})", "value": row["mt_bench"]["overall"],
                    "n": row["mt_bench"].get("n_questions"), "note": f"{bench_note}; score 1-10; items: questions"})
    arena = row.get("arena_hard") or {}
    if arena.get("win_rate") is not None:
        out.append({"set": "Arena-Hard v2 win rate", "value": arena["win_rate"], "ci": arena.get("ci"), "unit": "%",
                    "note": f"{bench_note}; {arena.get('interval', 'interval')}"})
    return out


def write_model_cards(cfg: AlignmentStageConfig, sft: dict, runs: dict[str, list[dict]], metrics: dict,
                      profile: str | None = None) -> list[Path]:
    """A README.md model card (:mod:`rlbff_lib.training.model_card`) in the SFT policy's folder and in each GRPO
    policy's (the ``model_dir`` of their runs; never in the base model's folder when SFT is skipped). ``metrics``:
    :func:`stage_metrics`; ``profile`` defaults to the params file's."""
    from rlbff_lib.core.params import params_file, read_raw
    from rlbff_lib.training.model_card import run_facts, write_model_card

    profile = profile or read_raw(params_file()).get("profile", "smoke")
    stage = "the `alignment` stage (`notebooks/alignment.ipynb`, `rlbff_lib/stages/alignment.py`)"
    ful = metrics.get("fulfilment") or {}
    policies = metrics.get("policies") or {}
    seeds = f"mean over {len(cfg.seeds)} sampling seeds"
    paths = []
    if not sft.get("skipped"):
        facts = {"kind": "policy", "name": "SFT policy (warm start before GRPO)", "profile": profile, "stage": stage,
                 "base_model": run_facts(sft["model_dir"]).get("base_model") or cfg.policy.name_or_path,
                 "data": [{"file": None, "items": cfg.policy.n_examples,
                           "role": "SFT examples written from the synthetic world (alignment.policy.n_examples)"}],
                 "parameters": asdict(cfg.policy),
                 "training": {k: sft.get(k) for k in ("global_step", "train_loss") if k in sft},
                 "accuracy": _policy_accuracy(policies.get("sft"), ful.get("before"), seeds, "this policy")}
        paths.append(write_model_card(sft["model_dir"], facts))
    for backend, records in runs.items():
        gain = ((ful.get("by_reward") or {}).get(backend) or {}).get("trained")
        for r in records:
            run = run_facts(r["model_dir"])
            label = (r.get("reward") or {}).get("label", backend)
            data = run.get("data") or [{"file": None, "items": cfg.grpo.n_prompts,
                                        "role": "prompts generated from the synthetic world (alignment.grpo.n_prompts)"}]
            facts = {"kind": "policy", "name": f"GRPO policy, reward: {label}, seed {r.get('seed')}", "profile": profile,
                     "stage": stage, "base_model": run.get("base_model"), "data": data,
                     "parameters": run.get("parameters") or {},
                     "training": {"reward": label, **{k: r.get(k) for k in ("global_step", "n_rows", "n_dropped_too_long")
                                                      if k in r}},
                     "accuracy": _policy_accuracy(policies.get(backend), gain,
                                                  f"mean over this reward's {len(records)} training seed(s)",
                                                  f"pooled over this reward's {len(records)} polic(ies)")}
            paths.append(write_model_card(r["model_dir"], facts))
    return paths
