"""Write ``bench/RESULTS.md`` from ``bench/results.json``: every number in it is read from there.

    .venv/bin/python bench/report.py

Each benchmark script merges its own key into ``results.json``; run this after any of them.
"""

from __future__ import annotations

import json

import common

OUT = common.BENCH_DIR / "RESULTS.md"


def machine_line(m: dict) -> str:
    load = m.get("load_average")
    gpu = m.get("gpu") or "no GPU"
    return (f"{m.get('date')}, {m.get('cpu')}, {m.get('cores')} logical cores, torch {m.get('torch')} with "
            f"{m.get('torch_threads')} thread(s), {gpu}; load average (1/5/15 min) at the end: "
            f"{'/'.join(str(x) for x in load) if load else 'n/a'}; commit {m.get('git_commit')}")


def verdict(value: float, goal: float, higher_is_better: bool = True) -> str:
    ok = value >= goal if higher_is_better else value <= goal
    return f"**{value:.3f}** (goal {'≥' if higher_is_better else '≤'} {goal}: {'met' if ok else 'NOT met'})"


def rm_scoring(r: dict) -> list[str]:
    t = r["throughput"]
    return [
        "## `rm_scoring`: the scalar-RM scorer against a bare forward pass",
        "",
        f"Command: `.venv/bin/python bench/rm_scoring.py` ({r['reps']} interleaved repetitions, medians). "
        f"Machine: {machine_line(r['machine'])}.",
        "",
        f"- Model: {r['model']}. Inputs: {r['sequences']} {r['inputs']}; principle \"{r['principle']}\"; "
        f"{r['real_tokens']:,} real tokens (mean {r['mean_tokens']}, min {r['min_tokens']}, max {r['max_tokens']}; "
        f"{r['truncated_inputs']} cut to `max_length` {r['max_length']}); batches of {r['batch_size']}.",
        f"- `rm_scoring.ratio_to_bare_forward` = bare-forward seconds / library seconds = "
        f"{verdict(r['ratio_to_bare_forward'], r['goal_ratio_to_bare_forward'])}. The library path "
        f"(the scalar `rlbff_lib.reward_models.scorers.Scorer` from raw text) ran at {t['library']['sequences_per_s']} sequences/s, "
        f"{t['library']['tokens_per_s']:,} tokens/s; the bare forward on the same padded batches at "
        f"{t['bare']['sequences_per_s']} sequences/s, {t['bare']['tokens_per_s']:,} tokens/s. Of the library's time, "
        f"{100 * r['library_tokenize_share']:.1f}% is chat-template rendering and tokenization (with the left "
        "truncation of over-long conversations), which the bare pass is handed ready-made; the rest of the "
        "difference is timing noise of a shared machine (the per-repetition timings are in `results.json`).",
        f"- Both paths give the same scores: largest |library − bare| = "
        f"{r['max_abs_score_difference_library_vs_bare']:.2e} nats.",
        f"- `rm_scoring.bucketed_speedup` = naive seconds / bucketed seconds = **{r['bucketed_speedup']:.3f}**: "
        f"length-sorted batches (the library's) against the same batch size in random order, both bare "
        f"forwards. Padding efficiency (real / padded tokens): bucketed {r['padding_efficiency']['bucketed']}, "
        f"naive {r['padding_efficiency']['naive']}; naive throughput {t['naive']['sequences_per_s']} sequences/s.",
        "",
    ]


def extraction(r: dict) -> list[str]:
    rps = r["requests_per_s"]
    costs = r.get("per_request_costs_removed_from_the_event_loop", {})
    return [
        "## `extraction`: the extraction client against the concurrency bound",
        "",
        f"Command: `.venv/bin/python bench/extraction.py` ({r['reps']} repetitions per variant, interleaved, "
        f"medians). Machine: {machine_line(r['machine'])}.",
        "",
        f"- Server: {r['server']}, {r['latency_s']} s added to every answer. Client: "
        f"`rlbff_lib.principles.extraction.run_extraction`, `openai` backend, concurrency {r['concurrency']}, "
        f"{r['requests']} distinct feedback texts, empty cache file each time (every answer appended and fsync'ed).",
        f"- Bound: ceil({r['requests']} / {r['concurrency']}) × {r['latency_s']} s = {r['bound_s']:.2f} s "
        f"({r['bound_requests_per_s']} requests/s).",
        f"- `extraction.ratio_to_concurrency_bound` = bound / measured = "
        f"{verdict(r['ratio_to_concurrency_bound'], r['goal_ratio_to_concurrency_bound'])} "
        f"({rps['with_cache']} requests/s). Without a cache file: {r['ratio_to_concurrency_bound_without_cache']:.3f} "
        f"({rps['no_cache']} requests/s): the durable cache costs "
        f"{100 * (1 - r['ratio_to_concurrency_bound'] / r['ratio_to_concurrency_bound_without_cache']):.1f}% "
        "of throughput.",
        f"- Floor of this machine: a minimal raw-asyncio HTTP/1.1 client sending the same requests to the same "
        f"server reaches {r['bare_client_ratio_to_concurrency_bound']:.3f} of the bound ({rps['bare_client']} "
        f"requests/s); the library reaches `ratio_to_bare_client` = **{r['ratio_to_bare_client']:.3f}** of it. "
        "What the bare client loses to the bound is the server's and the operating system's share of the 2 cores.",
        *_threaded_line(r),
        "- Library changes made after profiling this benchmark (`rlbff_lib/extraction.py`): (1) cache answers are "
        "written by a worker thread, all pending answers in one append and one fsync (group commit), instead of "
        "an fsync per answer inside the event loop, which stalled every in-flight request for the length of the "
        "fsync; an item still counts as done only once its answer is on disk. (2) httpcore runs `import sniffio` "
        "several times per request (each lock set-up) and `sniffio` is not installed, so each attempt was a failed "
        "import that rescans `sys.path`; the client now records the module's absence once. Measured in the same "
        f"run: an fsync'ed append of one cache line {costs.get('fsync_append_ms', 'n/a')} ms (at "
        f"{r['bound_requests_per_s']} answers/s, formerly paid inside the loop), one failed import "
        f"{costs.get('failed_import_ms', 'n/a')} ms.",
        "",
    ]


def _threaded_line(r: dict) -> list[str]:
    t = r.get("threaded_server")
    if not t:
        return []
    return [f"- Same run against {t['server']}: library {t['ratio_to_concurrency_bound']:.3f} of the bound, bare client "
            f"{t['bare_client_ratio_to_concurrency_bound']:.3f}, library / bare client {t['ratio_to_bare_client']:.3f}. "
            "That server's own work per request (a thread per connection, several thread wake-ups per request on 2 "
            "cores) is a gap to the bound no client can close, which is why the headline uses the asyncio server."]


def repro(r: dict) -> list[str]:
    lines = [
        "## `repro`: the share of a smoke `dvc repro` spent outside model compute",
        "",
        f"Command: `.venv/bin/python bench/repro.py{' --from-existing' if 'lower bound' in r['wall_source'] else ''}`. "
        f"Machine: {machine_line(r['machine'])}.",
        "",
        f"- `repro.overhead_share` = Σ overhead / Σ wall = **{r['overhead_share']:.3f}** "
        f"({r['overhead_s']:.1f} s of {r['total_s']:.1f} s; compute {r['compute_s']:.1f} s).",
        f"- Wall of a stage: {r['wall_source']}.",
        *(["- With `--from-existing` each stage counts its LATEST executed notebook: a stage last rerun while its "
           "keyed training runs were already complete (`reward_models`, `alignment` reuse finished runs) counts its "
           "measurement time only, so the share is an upper bound of the whole-pipeline share."]
          if "lower bound" in r["wall_source"] else []),
        f"- Definition: {r['definition']}.",
        "",
        "| stage | wall (s) | compute (s) | imports (s) | kernel start + papermill (s) | outside the notebook (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in r["stages"].items():
        lines.append(f"| {name} | {s['wall_s']:.1f} | {s['compute_s']:.1f} | {s['imports_s']:.1f} | "
                     f"{s['kernel_and_papermill_s']:.1f} | {s['outside_notebook_s']:.1f} |")
    if r.get("stages_without_notebook"):
        lines += ["", f"Stages of `dvc.yaml` without an executed notebook at the time: "
                      f"{', '.join(r['stages_without_notebook'])} (not counted)."]
    import yaml

    now = list(yaml.safe_load((common.REPO_ROOT / "dvc.yaml").read_text())["stages"])
    unmeasured = [n for n in now if n not in r["stages"] and n not in r.get("stages_without_notebook", [])]
    if unmeasured:
        lines += ["", f"Stages added to `dvc.yaml` since this measurement, not in it: {', '.join(unmeasured)}."]
    return lines + [""]


def repro_cold(r: dict) -> list[str]:
    """The cold run of ``bench/repro.py --cold``: per stage, per training run, the total against the goal and the
    critical path."""
    total, goal = r["total_s"], r["goal_s"]
    load = r.get("load_average_start")
    runs_by_stage = r["critical_path"]["runs"]
    held = []
    for x in r["critical_path"]["stages"]:
        name, wall = x["stage"], x["wall_s"]
        part = f"{name} {wall:,.0f} s ({100 * wall / total:.0f}%)" if total else f"{name} {wall:,.0f} s"
        chain = runs_by_stage.get(name)
        if chain:
            part += " [training runs on its critical path: " + ", ".join(
                f"{c['run']} {c['wall_s']:,.0f} s" for c in chain) + "]"
        held.append(part)
    parallel = ", ".join(f"{k} {v}" for k, v in r["parallel_runs"].items())
    lines = [
        "## `repro_cold`: a cold smoke `dvc repro`, stage by stage and training run by training run",
        "",
        f"Command: `.venv/bin/python bench/repro.py --cold`: {r['source']}, `make venv` there "
        f"({r['venv_s']:,.0f} s, not counted below), then `dvc repro --force --single-item STAGE` for each stage in "
        "`dvc.yaml` order (the clone holds no models, DVC cache or run cache: nothing is reused). "
        f"Machine: {machine_line(r['machine'])}; load average at the start: "
        f"{'/'.join(str(v) for v in load) if load else 'n/a'}.",
        "",
        f"- Total wall of the stages: **{total:,.0f} s ({total / 60:.1f} min)** against the goal of "
        f"{goal / 60:.0f} min ({goal} s): {'met' if total <= goal else 'NOT met'} "
        f"({total / goal:.2f}× the goal).",
        "- What holds it up (stages run one after another, so each is on the critical path; largest first): "
        + "; ".join(held) + ".",
        f"- Trainings at once (`parallel_runs`): {parallel}.",
        f"- Definition: {r['definition']}.",
        "",
        "| stage | wall (s) | share of total | compute (s) | overhead (s) | training runs, first start to last end (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in r["stages"].items():
        span = s.get("training_span_s")
        lines.append(f"| {name} | {s['wall_s']:,.1f} | {100 * s['share']:.1f}% | {s['compute_s']:,.1f} | "
                     f"{s['overhead_s']:,.1f} | {f'{span:,.1f}' if span is not None else ''} |")
    lines.append(f"| **total** | **{total:,.1f}** | 100% | {r['compute_s']:,.1f} | {r['overhead_s']:,.1f} | |")
    if r.get("stages_without_notebook"):
        lines += ["", f"Stages without an executed notebook (compute not counted): "
                      f"{', '.join(r['stages_without_notebook'])}."]
    lines += ["", "| stage | run | steps | wall (s) | s/step | torch threads | processes |",
              "|---|---|---:|---:|---:|---:|---:|"]

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    for x in r["runs"]:
        steps = num(x["timed_steps"], "d")
        if x.get("resumed_from") and x["timed_steps"] != x["global_step"]:
            steps += f" of {x['global_step']} (resumed)"
        lines.append(f"| {x['stage']} | {x['run']} | {steps} | {num(x['wall_s'], ',.1f')} | "
                     f"{num(x['s_per_step'], '.3f')} | {num(x['torch_threads'], 'd')} | {num(x['world_size'], 'd')} |")
    if r.get("unfinished_runs"):
        lines += ["", f"Run folders without a training log (not finished): {', '.join(r['unfinished_runs'])}."]
    return lines + ["", "A run's wall is its training call and final save only (`training_log.json`'s `wall_s`): "
                        "model loading, data preparation and evaluation are in the stage's wall, not the run's.", ""]


def _threads_label(counts: list) -> str:
    shown = "/".join("?" if t is None else str(t) for t in counts) or "?"
    return f"{shown} thread{'' if counts == [1] else 's'}"


def _claim_cell(side: dict, unit: str) -> str:
    """One claim in one tree: value [interval] vs what it is compared with, and the verdict."""
    f = ".1f" if unit == "percent" else ".3f"

    def est(x: dict) -> str:
        ci = x.get("ci")
        return format(x["value"], f) + (f" [{format(ci[0], f)}, {format(ci[1], f)}]" if ci else "")

    seeds = f" over {side['seeds']} seeds" if side.get("seeds") is not None else ""
    return f"{est(side)}{seeds} vs {side['against']['label']} {est(side['against'])}: {side['verdict']}"


def threads(r: dict) -> list[str]:
    """bench/threads.py: each claim of the pipeline at the source run's training threads and at another count."""
    a, b = _threads_label(r["threads"]["a"]), _threads_label(r["threads"]["b"])

    def trainers(by_stage: dict) -> str:
        return "; ".join(f"{stage}: " + ", ".join(f"{name} {'/'.join(map(str, ts))}" for name, ts in d.items())
                         for stage, d in by_stage.items())

    def settings(s: dict) -> str:
        return ", ".join(f"`{k}` {v}" for k, v in s.items())

    lines = [
        "## `threads`: the claims at another thread count",
        "",
        f"Command: `.venv/bin/python {r['command']}`: a copy of the finished pipeline checkout {r['source']}, its "
        f"trained runs and published models deleted, then `dvc repro --force --single-item` of "
        f"{', '.join(f'`{s}`' for s in r['stages_rerun'])} with every training on {b} instead of {a} "
        f"({r['cores']} cores; `principles` not rerun). Machine: {machine_line(r['machine'])}.",
        "",
        f"- Settings: source {settings(r['settings']['a'])}; copy {settings(r['settings']['b'])}.",
        f"- Torch threads per trainer, from the training logs (`torch_threads`): source "
        f"{trainers(r['training_threads']['a'])}; copy {trainers(r['training_threads']['b'])}. The policy SFT "
        "warm start is launched without the stages' `OMP_NUM_THREADS` (torch's default in both).",
        "- Stage walls in the copy: " + ", ".join(f"{k} {v:,.0f} s" for k, v in r["stage_walls_s"].items()) + ".",
        f"- Claims that hold at both thread counts: **{len(r['hold_in_both'])} of {len(r['claims'])}**.",
        "",
        f"| claim | {a} | {b} | holds in both |",
        "|---|---|---|---|",
    ]
    for c in r["claims"]:
        same = " (same numbers)" if c["identical"] else ""
        lines.append(f"| {c['claim']} | {_claim_cell(c['a'], c['unit'])} | {_claim_cell(c['b'], c['unit'])} | "
                     f"{'yes' if c['holds_in_both'] else '**no**'}{same} |")
    lines += ["", "Rules (values in the unit of `metrics/<stage>.json`: percent, or a share in [0, 1]):", ""]
    lines += [f"- {c['claim']} (`{c['stage']}`): {c['rule']}; interval: {c['interval']}." for c in r["claims"]]
    return lines + [""]


def gpu(r: dict | None) -> list[str]:
    head = ["## `gpu`: bf16 training, the project's trainers under ZeRO-3, and rollout throughput on one GPU", ""]
    if not r:
        return head + [
            "**Not run: no GPU was available in this session.** The device machine was not lent to this task, and "
            "this machine has none (`torch.cuda.is_available()` is False; torch is the CPU build), so `bench/gpu.py` "
            "has never run on a GPU and no number of this section exists yet. Every code path of it runs on CPU in "
            "the tests (`bench/gpu.py --cpu-check`: tiny models, numbers meaningless, not saved). On an NVIDIA "
            "machine (meant to take under 8 minutes on one H200): `.venv/bin/python bench/gpu.py` (a CUDA build of torch; TRL, "
            "accelerate and DeepSpeed at the project's pins, from wheels if missing: see the script's docstring; "
            "vLLM optional), then `.venv/bin/python bench/report.py`.", ""]
    lines = head + [f"Machine: {r.get('gpu_name')} ({r.get('gpu_memory_gib')} GiB), {machine_line(r['machine'])}.", "",
                    f"- bf16 matmul peak measured: **{r['matmul_peak_tflops']:.1f} TFLOP/s** (sizes: "
                    f"{r['per_size_tflops']}); datasheet {r['h200_spec_bf16_dense_tflops']} TFLOP/s.", "",
                    "| model | params | bare training tokens/s | MFU | HFU | peak memory (GiB) | HF generate tokens/s | "
                    "vLLM tokens/s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in r["models"].items():
        t, hf, vl = m["train"], m["generate_hf"], m["generate_vllm"]
        lines.append(f"| {name} | {t['parameters'] / 1e9:.2f}B | {t['tokens_per_s']:,} | {t['mfu']:.3f} | "
                     f"{t['hfu']:.3f} | {t.get('peak_memory_gib', 'n/a')} | {hf['tokens_per_s']:,} | "
                     f"{vl.get('tokens_per_s', vl.get('skipped') or vl.get('error', 'n/a'))} |")
    tr = r.get("trainers") or {}
    if "skipped" in tr:
        lines += ["", f"The project's trainers were not run: {tr['skipped']}."]
    for key, label in (("scalar_rm", "scalar-RM trainer (TRL SFTTrainer)"), ("grpo", "GRPO trainer (TRL GRPOTrainer)")):
        x = tr.get(key)
        if not x:
            continue
        if "error" in x:
            lines += ["", f"- {label}, {x['model']}: failed: `{x['error'][-300:]}`"]
        elif key == "scalar_rm":
            lines += ["", f"- {label}, {x['model']}, `{x['accelerate_config']}`, {x['seq_len']} tokens: "
                          f"{x['seconds_per_step']} s/step, {x['tokens_per_s']:,} tokens/s, MFU {x['mfu']:.3f}, "
                          f"peak {x['peak_memory_gib']} GiB"]
        else:
            lines += [f"- {label}, {x['model']}, `{x['accelerate_config']}`, {x['completions_per_step']} completions "
                      f"of up to {x['max_completion_length']} tokens per step: {x['seconds_per_step']} s/step, "
                      f"{x['generated_tokens_per_s']:,} generated tokens/s, peak {x['peak_memory_gib']} GiB"]
    return lines + [""]


def budget(r: dict | None) -> list[str]:
    if not r or "by_gpu" not in r:
        return ["## `budget`", "", "Not computed yet: run `.venv/bin/python bench/budget.py`.", ""]
    a = r["assumptions"]

    def hours(x: float) -> str:
        return f"{x:,.1f}" if x >= 0.1 else f"{x:.2f}"

    lines = ["## `budget`: the full profile on paper (no GPU measurement behind it)", "",
             f"Command: `.venv/bin/python bench/budget.py`. It reads the merged parameters (`profile: {r['profile']}`), "
             "the accelerate and DeepSpeed configs they name and `configs/slurm/cluster.yaml`; memory per GPU in "
             "GiB per phase (ZeRO-3 states at 16 bytes/parameter, gathered parameters, checkpointed activations, "
             "logits, vLLM weights + KV cache at its `gpu_memory_utilization`, a runtime reserve), hours at the "
             "ASSUMED MFU, bounded by ZeRO-3's communication (the implied MFU is shown). Model sizes from the "
             "published configs: " + "; ".join(f"{k} {v['params'] / 1e9:.2f}B" for k, v in r["models"].items()) + ".",
             ""]
    for kind, rep in r["by_gpu"].items():
        lines += [f"### {rep['gpu']} nodes ({rep['gpus_per_node']} x {rep['gpu_memory_gib']} GiB): "
                  f"{'every stage fits' if rep['all_fit'] else 'not every stage fits as profiled'}, at most "
                  f"{rep['nodes_needed']} nodes at once, {rep['gpu_hours']:,} GPU-hours", "",
                  "| stage | part | GPUs (nodes) | peak GiB per GPU | fits | hours | notes |",
                  "|---|---|---:|---:|---|---:|---|"]
        for x in rep["rows"]:
            notes = []
            if x.get("vllm", {}).get("mode", "off") != "off":
                v = x["vllm"]
                notes.append(f"vLLM {v['mode']} TP {v['tensor_parallel_size']}, utilization "
                             f"{v['gpu_memory_utilization']:g}{', sleep mode' if v.get('sleep_mode') else ''}")
            if len(x.get("phases", {})) > 1:
                notes.append("phases " + ", ".join(f"{k} {p['total_gib']:g}" for k, p in x["phases"].items()))
            if "mfu_implied" in x:
                notes.append(f"implied MFU {x['mfu_implied']:.2f}")
            if x.get("note"):
                notes.append(x["note"])
            lines.append(f"| {x['stage']} | {x['part']} | {x['gpus']} ({x['nodes']}) | {x['memory']['total_gib']:g} | "
                         f"{'yes' if x['fits'] else '**no**'} | {hours(x['hours'])} | {'; '.join(notes)} |")
        if rep.get("alternatives"):
            lines += ["", "Where the profile does not fit these nodes:", ""] + [f"- {t}" for t in rep["alternatives"]]
        u = rep.get("colocate_max_utilization") or {}
        if u:
            lines += ["", "Largest colocated `vllm_gpu_memory_utilization` that fits: "
                      + "; ".join(f"{k} {v}" for k, v in u.items()) + "."]
        lines.append("")
    lines += ["Assumptions (none of these is in the paper or measured here):", ""]
    lines += [f"- `{k}` = {v}" for k, v in a.items()]
    lines += ["", "Paper and benchmark facts used: " + "; ".join(
        f"{k} = {v:,}" if isinstance(v, int) else f"{k} = {v}" for k, v in r["data"].items()) + ".", ""]
    if r.get("measured_mfu"):
        lines += [f"Measured MFU from `bench/gpu.py`: {r['measured_mfu']}.", ""]
    return lines


def main() -> None:
    results = json.loads(common.RESULTS.read_text()) if common.RESULTS.exists() else {}
    ratios = []
    for key, name, goal in (("rm_scoring", "ratio_to_bare_forward", "≥ 0.9"),
                            ("extraction", "ratio_to_concurrency_bound", "≥ 0.9"),
                            ("repro", "overhead_share", "lower is better")):
        value = results.get(key, {}).get(name)
        ratios.append(f"| `{key}.{name}` | {f'{value:.3f}' if value is not None else 'not measured'} | {goal} |")
    cold = results.get("repro_cold", {}).get("total_s")
    ratios.append(f"| `repro_cold.total_s` | {f'{cold:,.0f} s' if cold is not None else 'not measured'} | "
                  "≤ 900 s (15 min) |")
    lines = ["# Benchmark results", "",
             "Generated by `bench/report.py` from `bench/results.json` (each script merges its own key there); "
             "every number below is read from that file. Each ratio comes from ONE run of its script, on the machine "
             "and at the load average stated with it. The CPU machine is shared (2 cores, other jobs running), so "
             "timings carry noise: the scripts interleave their measurements and report medians.", "",
             "| ratio | value | goal |", "|---|---:|---|", *ratios, ""]
    for key, fn in (("rm_scoring", rm_scoring), ("extraction", extraction), ("repro", repro),
                    ("repro_cold", repro_cold), ("threads", threads)):
        lines += fn(results[key]) if key in results else [f"## `{key}`", "", "Not measured yet.", ""]
    lines += gpu(results.get("gpu"))
    lines += budget(results.get("budget"))
    from rlbff_lib.core.io import atomic_write_text

    atomic_write_text(OUT, "\n".join(lines).rstrip() + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
