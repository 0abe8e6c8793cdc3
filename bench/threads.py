"""Do the pipeline's claims hold when its trainings run on another number of torch threads?

    .venv/bin/python bench/threads.py --from CLONE [--threads 2] [--keep DIR]   # ~25 min on 2 cores

Why. The trainers are bit-deterministic for a fixed thread count, and the thread count is an input of the numbers
(CPU kernels reduce per thread). Each training process of ``reward_models`` and each GRPO run of ``alignment`` gets
``OMP_NUM_THREADS = cores // parallel_runs`` (``rlbff_lib/stages/reward_models.py``, ``rlbff_lib/stages/alignment.py``):
the smoke params (``parallel_runs: 2``) give one thread on a 2-core machine. A claim that holds only at one thread
count is a property of the bits, not of the method.

What it does. CLONE is a finished pipeline checkout (``bench/repro.py --cold --keep DIR`` leaves one; it is only
read). The script
  1. checks CLONE: its ``.venv``, no DVC command running in it, every claim readable (:func:`compare_claims`), and
     that its trainings did not already run on ``--threads`` threads (their ``training_log.json``);
  2. copies it (``cp -a``; ``--keep DIR``: into DIR, kept; else a temporary folder, removed after) without
     ``.dvc/tmp`` (DVC's locks and scratch), and deletes the copy's trained runs and published models
     (:data:`TRAINED`; ``data/``, ``models/assets/`` and the caches stay);
  3. sets in the copy's ``params.yaml`` ``reward_models.parallel_runs`` and ``alignment.parallel_runs`` to
     ``cores // threads`` (so each training gets ``--threads`` threads; :func:`parallel_runs_for`) and
     ``rm_eval.torch_threads`` to ``--threads``, through DVC's own ``modify_yaml`` (only those lines change);
  4. runs ``dvc repro --force --single-item`` for :data:`STAGES` in order (``bench/repro.py``'s ``run_stage``: the
     copy's ``.venv/bin`` first on PATH, ``RLBFF_PYTHON`` = CLONE's Python);
  5. reads the claims of CLONE and of the copy (:func:`compare_claims`), the torch threads of every training from
     both trees' logs, checks CLONE is unchanged, and merges key ``threads`` into ``bench/results.json``.

Which ``rlbff_lib`` runs. ``make venv`` installs the package editable, so the copied ``.venv`` still imports
CLONE's ``rlbff_lib`` through its finder. Every process of a stage starts in the copy's root: ``bin/stage`` runs
``python -m`` there and papermill starts the kernel there, and the current folder comes first on ``sys.path``, ahead
of the editable finder; the script also puts the copy on ``PYTHONPATH`` (as ``rlbff_lib.training.launch`` does for
its trainers). Before any work :func:`import_probe` starts the stage harness's Python and its Jupyter kernel in the
copy and stops unless both import the copy's ``rlbff_lib`` from the same environment.

Not changed by ``--threads``: the policy SFT warm start (launched without the stages' ``OMP_NUM_THREADS``: torch's
default in both runs, :data:`UNCONTROLLED`), the stage notebooks' own processes (generation, fulfilment, benchmarks)
apart from ``rm_eval``'s scoring, and the ``principles`` stage (no training; not rerun: its claim has the same numbers
in both trees by construction).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import common
import repro
import yaml

STAGES = ("reward_models", "rm_eval", "alignment", "report")   # rerun in the copy, in this order
TRAINED = ("models/rm_runs", "models/reward_models", "models/alignment_runs")   # deleted in the copy
UNCONTROLLED = {"policy_sft"}   # trainers launched without the stage's OMP_NUM_THREADS (rlbff_lib/stages/alignment.py)


# ------------------------------------------------------------------ the claims


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file (not a finished pipeline checkout?)") from None
    except ValueError as e:
        raise SystemExit(f"{path}: not JSON ({e})") from None


def _get(data: dict, keys: str, path: Path):
    """``data[k1][k2]...`` for ``keys`` = ``"k1.k2..."``; a missing or null value stops, naming file and key."""
    x = data
    for k in keys.split("."):
        if not isinstance(x, dict) or x.get(k) is None:
            raise SystemExit(f"{path}: no {keys}")
        x = x[k]
    return x


def _estimate(data: dict, key: str, path: Path, value: str = "accuracy") -> dict:
    """``{value, ci: [low, high]}`` (plus ``n`` when recorded) of a headline number written by ``with_ci``."""
    out = {"value": _get(data, f"{key}.{value}", path),
           "ci": [_get(data, f"{key}.ci_low", path), _get(data, f"{key}.ci_high", path)]}
    n = _get(data, key, path).get("n")
    return out | ({"n": n} if n is not None else {})


def _above(x: dict, y: dict, label: str) -> dict:
    """``x`` above ``y`` beyond both 95% intervals: holds when x's lower bound > y's upper bound."""
    verdict = ("holds" if x["ci"][0] > y["ci"][1] else "reversed" if y["ci"][0] > x["ci"][1] else "not separated")
    return {**x, "against": {"label": label, **y}, "holds": verdict == "holds", "verdict": verdict}


def scalar_vs_majority(root: Path) -> dict:
    m, d = root / "metrics" / "rm_eval.json", root / "outputs" / "details" / "rm_eval.json"
    s = _estimate(_load(m), "principlebench.scalar", m)
    majority = _get(_load(d), "models.scalar.principlebench.majority", d)
    margin = s["value"] - majority
    holds = margin >= 10 and s["ci"][0] > majority
    verdict = ("holds" if holds else f"margin {margin:.1f} < 10 points" if margin < 10 else
               "interval reaches the majority")
    return {**s, "against": {"label": "majority", "value": majority}, "margin": margin, "holds": holds,
            "verdict": verdict}


def scalar_vs_bt(metrics: str, key: str):
    def measure(root: Path) -> dict:
        path = root / "metrics" / metrics
        data = _load(path)
        return _above(_estimate(data, f"{key}.scalar", path), _estimate(data, f"{key}.bt", path), "BT")
    return measure


def fulfilment_gain(root: Path) -> dict:
    path = root / "metrics" / "alignment.json"
    data = _load(path)
    g = _get(data, "fulfilment_gain.scalar.trained", path)
    out = {"value": _get(data, "fulfilment_gain.scalar.trained.gain", path), "seeds": _get(data, "seeds", path),
           "against": {"label": "no gain", "value": 0.0}, "p_value": g.get("p_value")}
    if g.get("ci_low") is None or g.get("ci_high") is None:
        return out | {"ci": None, "holds": False, "verdict": "no interval (fewer than two seeds)"}
    lo, hi = g["ci_low"], g["ci_high"]
    details = root / "outputs" / "details" / "alignment.json"
    if details.exists():   # the per-seed gains behind the interval (the primary reward's, when it is the scalar RM)
        ful = _load(details).get("fulfilment") or {}
        if (ful.get("gain") or {}).get("reward") == "scalar" and isinstance(ful.get("seeds"), list):
            out["per_seed"] = [{"seed": s.get("seed"), "gain": s.get("gain")} for s in ful["seeds"]]
    verdict = "holds" if lo > 0 else "a loss beyond noise" if hi < 0 else "within noise"
    return out | {"ci": [lo, hi], "holds": verdict == "holds", "verdict": verdict}


def consensus_accuracy(root: Path) -> dict:
    path = root / "metrics" / "principles.json"
    data = _load(path)
    return _above(_estimate(data, "accuracy_vs_truth.after_consensus", path),
                  _estimate(data, "accuracy_vs_truth.before_consensus", path), "before consensus")


WILSON = "95% Wilson interval over the items (one trained model each)"
CLAIMS = [
    {"id": "scalar_over_majority", "stage": "rm_eval", "unit": "percent", "interval": WILSON,
     "claim": "scalar RM at least 10 points over the majority baseline on PrincipleBench",
     "rule": "point estimate >= majority + 10 AND interval's lower bound > majority (majority-label baseline of "
             "the same items, outputs/details/rm_eval.json)", "measure": scalar_vs_majority},
    {"id": "scalar_above_bt_principlebench", "stage": "rm_eval", "unit": "percent", "interval": WILSON,
     "claim": "scalar RM above BT on PrincipleBench",
     "rule": "scalar's lower bound > BT's upper bound; overlapping intervals: not separated",
     "measure": scalar_vs_bt("rm_eval.json", "principlebench")},
    {"id": "scalar_above_bt_validation", "stage": "reward_models", "unit": "percent", "interval": WILSON,
     "claim": "scalar RM above BT on validation",
     "rule": "scalar's lower bound > BT's upper bound; overlapping intervals: not separated",
     "measure": scalar_vs_bt("reward_models.json", "validation")},
    {"id": "fulfilment_gain_scalar", "stage": "alignment", "unit": "share",
     "interval": "Welch 95% interval over the GRPO seeds against the SFT seeds",
     "claim": "fulfilment gain of the trained principles with the scalar reward above noise",
     "rule": "Welch interval's lower bound > 0", "measure": fulfilment_gain},
    {"id": "consensus_raises_accuracy", "stage": "principles", "unit": "share",
     "interval": "95% Wilson interval over the items",
     "claim": "consensus raises label accuracy against the world's truth",
     "rule": "after's lower bound > before's upper bound; no training: the stage ran once and is not rerun, so it "
             "does not depend on the training threads", "measure": consensus_accuracy},
]


def compare_claims(a_root: str | Path, b_root: str | Path) -> dict:
    """Each claim of :data:`CLAIMS` measured in two finished pipeline trees (reads only their ``metrics/`` and
    ``outputs/details/``).

    Returns ``claims``: one row per claim, its ``id``, ``claim``, ``rule``, ``stage``, ``unit`` (``percent`` or
    ``share``: the unit the metrics file uses), ``interval`` (what the interval is over), and per tree ``a`` / ``b``
    ``{value, ci: [low, high] | None, against: {label, value, ci?}, holds, verdict, ...}``; ``holds_in_both``;
    ``identical`` (the same value and interval in both trees). ``hold_in_both``: the ids that hold in both;
    ``all_hold_in_both``. A missing file or key stops, naming it.
    """
    a_root, b_root = Path(a_root), Path(b_root)
    rows = []
    for spec in CLAIMS:
        a, b = spec["measure"](a_root), spec["measure"](b_root)
        rows.append({k: v for k, v in spec.items() if k != "measure"}
                    | {"a": a, "b": b, "holds_in_both": a["holds"] and b["holds"],
                       "identical": (a["value"], a["ci"]) == (b["value"], b["ci"])})
    both = [r["id"] for r in rows if r["holds_in_both"]]
    return {"claims": rows, "hold_in_both": both, "all_hold_in_both": len(both) == len(rows)}


# ------------------------------------------------------------------ threads


def parallel_runs_for(threads: int, cores: int) -> int:
    """``parallel_runs`` that gives each training ``threads`` threads (the stages give ``cores // parallel_runs``)."""
    parallel = cores // threads if threads >= 1 else 0
    if parallel < 1 or cores // parallel != threads:
        reachable = sorted({cores // p for p in range(1, cores + 1)})
        raise SystemExit(f"--threads {threads}: not reachable on {cores} cores (each training gets cores // "
                         f"parallel_runs threads: {', '.join(map(str, reachable))})")
    return parallel


def training_threads(root: Path) -> dict[str, dict[str, list]]:
    """``{stage: {trainer: [distinct torch_threads]}}`` from the training logs under ``root``
    (``bench/repro.py``'s ``training_runs``; ``None`` where a log predates the field)."""
    rows, _ = repro.training_runs(Path(root))
    out: dict[str, dict[str, set]] = {}
    for r in rows:
        out.setdefault(r["stage"], {}).setdefault(r["name"] or r["run"], set()).add(r["torch_threads"])
    return {s: {n: sorted(v, key=lambda x: (x is None, x or 0)) for n, v in d.items()} for s, d in out.items()}


def run_threads_rows(root: Path) -> list[dict]:
    """``[{stage, run, name, torch_threads}]``: every training run under ``root`` (``training_runs``)."""
    return [{k: r[k] for k in ("stage", "run", "name", "torch_threads")} for r in repro.training_runs(Path(root))[0]]


def controlled_threads(by_stage: dict[str, dict[str, list]]) -> list:
    """Distinct thread counts of the trainings that ``parallel_runs`` sets (all but :data:`UNCONTROLLED`)."""
    seen = {t for d in by_stage.values() for name, ts in d.items() if name not in UNCONTROLLED for t in ts}
    return sorted(seen, key=lambda x: (x is None, x or 0))


def thread_settings(root: Path) -> dict:
    """The params that set threads: both stages' ``parallel_runs`` and ``rm_eval.torch_threads``."""
    p = yaml.safe_load((Path(root) / "params.yaml").read_text()) or {}
    return {"reward_models.parallel_runs": (p.get("reward_models") or {}).get("parallel_runs"),
            "alignment.parallel_runs": (p.get("alignment") or {}).get("parallel_runs"),
            "rm_eval.torch_threads": (p.get("rm_eval") or {}).get("torch_threads")}


def set_threads(params: Path, threads: int, parallel: int) -> None:
    """Write the thread settings into ``params`` with DVC's ``modify_yaml`` (the other lines stay as they are)."""
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(params) as data:
        for section in ("reward_models", "alignment", "rm_eval"):
            if not isinstance(data.get(section), dict):
                raise SystemExit(f"{params}: no section {section}")
        data["reward_models"]["parallel_runs"] = parallel
        data["alignment"]["parallel_runs"] = parallel
        data["rm_eval"]["torch_threads"] = threads


# ------------------------------------------------------------------ the run

PROBE = r"""
import json, sys
import rlbff_lib
from jupyter_client.manager import start_new_kernel
from rlbff_lib.core.stage import ensure_kernel

harness = {"prefix": sys.prefix, "rlbff_lib": rlbff_lib.__file__}
km, kc = start_new_kernel(kernel_name=ensure_kernel(), cwd=sys.argv[1])
out = []
try:
    kc.execute_interactive("import json, sys, rlbff_lib; print(json.dumps({'prefix': sys.prefix, "
                           "'rlbff_lib': rlbff_lib.__file__}))", timeout=120,
                           output_hook=lambda m: out.append(m["content"]["text"]) if m["msg_type"] == "stream" else 0)
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
print(json.dumps({"harness": harness, "kernel": json.loads("".join(out).strip().splitlines()[-1])}))
"""


def import_probe(root: Path, python: str) -> dict:
    """Where the stage harness (``python`` started in ``root``) and its Jupyter kernel (started there, as papermill
    does) import ``rlbff_lib`` from, and their environments; stops unless both use ``root``'s package and the same
    environment."""
    res = subprocess.run([python, "-c", PROBE, str(root)], cwd=root, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise SystemExit(f"import probe in {root} failed:\n{res.stderr[-2000:]}")
    probe = json.loads(res.stdout.strip().splitlines()[-1])
    for who, seen in probe.items():
        if not Path(seen["rlbff_lib"]).resolve().is_relative_to(Path(root).resolve()):
            raise SystemExit(f"import probe: the {who} imports {seen['rlbff_lib']}, not the copy's rlbff_lib in {root}")
    if Path(probe["harness"]["prefix"]).resolve() != Path(probe["kernel"]["prefix"]).resolve():
        raise SystemExit(f"import probe: the kernel runs in {probe['kernel']['prefix']}, the harness in "
                         f"{probe['harness']['prefix']}")
    return probe


def running_dvc(root: Path) -> list[int]:
    """Process ids of live DVC commands holding ``root``'s locks (``.dvc/tmp/rwlock``)."""

    path = Path(root) / ".dvc" / "tmp" / "rwlock"
    try:
        lock = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    infos = [i for v in (lock.get("read") or {}).values() for i in v] + list((lock.get("write") or {}).values())
    return sorted({i["pid"] for i in infos if isinstance(i, dict) and _alive(i.get("pid", -1))})


def _alive(pid) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return isinstance(pid, int) and pid > 0
    return int(pid) > 0


def fingerprint(root: Path) -> str:
    """sha256 over ``root``'s metrics, details and training logs (to check a tree was not written to)."""
    h = hashlib.sha256()
    files = [*(root / "metrics").glob("*.json"), *(root / "outputs" / "details").glob("*.json"),
             *(p for rel in repro.RUN_DIRS.values() for p in (root / rel).glob("**/training_log.json"))]
    for path in sorted(files):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def run_threads(clone: Path, threads: int, keep: Path | None) -> dict:
    """Steps 1-5 of the module docstring; returns the ``threads`` result."""
    clone = clone.resolve()
    for rel in ("dvc.yaml", "params.yaml", ".venv/bin/python", ".venv/bin/dvc"):
        if not (clone / rel).exists():
            raise SystemExit(f"--from {clone}: no {rel} (not a finished pipeline checkout with its .venv)")
    missing = [s for s in STAGES if s not in repro.stages(clone)]
    if missing:
        raise SystemExit(f"--from {clone}: dvc.yaml has no stage {', '.join(missing)}")
    if busy := running_dvc(clone):
        raise SystemExit(f"--from {clone}: a DVC command is running in it (pid {', '.join(map(str, busy))})")
    compare_claims(clone, clone)   # every claim readable before the long part
    params = yaml.safe_load((clone / "params.yaml").read_text()) or {}
    if not os.environ.get("RLBFF_BENCHMARKS_DIR") and any(
            not (params.get(s) or {}).get("benchmarks_dir") for s in ("rm_eval", "alignment")):
        raise SystemExit("RLBFF_BENCHMARKS_DIR: not set, and CLONE's params.yaml leaves rm_eval/alignment "
                         "benchmarks_dir null: a copy in a temporary folder cannot find ../shared/benchmarks")
    cores = os.cpu_count() or 1
    parallel = parallel_runs_for(threads, cores)
    a_threads = controlled_threads(training_threads(clone))
    if not a_threads:
        raise SystemExit(f"--from {clone}: no training logs under {', '.join(repro.RUN_DIRS.values())}")
    if a_threads == [threads]:
        raise SystemExit(f"--from {clone}: its trainings already ran on {threads} thread(s); choose another --threads")
    before = fingerprint(clone)
    with common.work_folder(keep, "rlbff-threads-", "copy") as dest:
        print(f"--- cp -a {clone} {dest}", flush=True)
        if subprocess.run(["cp", "-a", str(clone), str(dest)]).returncode != 0:
            raise SystemExit(f"cp -a {clone} {dest} failed")
        shutil.rmtree(dest / ".dvc" / "tmp", ignore_errors=True)
        for rel in TRAINED:
            shutil.rmtree(dest / rel, ignore_errors=True)
        set_threads(dest / "params.yaml", threads, parallel)
        python = str(clone / ".venv" / "bin" / "python")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dest), os.environ.get("PYTHONPATH")]))
        probe = import_probe(dest, python)
        print(f"--- rlbff_lib: harness {probe['harness']['rlbff_lib']}, kernel {probe['kernel']['rlbff_lib']}",
              flush=True)
        walls = {}
        for name in STAGES:
            print(f"--- dvc repro --force --single-item {name} ({threads} thread(s) per training)", flush=True)
            walls[name] = round(repro.run_stage(name, dest, python), 2)
        if fingerprint(clone) != before:
            raise SystemExit(f"{clone} changed during the run: its metrics, details or training logs were written")
        by_thread = {"a": training_threads(clone), "b": training_threads(dest)}
        b_threads = controlled_threads(by_thread["b"])
        if b_threads != [threads]:
            print(f"WARNING: the copy's trainings ran on {b_threads} threads, not [{threads}]", flush=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
        result = {"command": f"bench/threads.py --from CLONE --threads {threads}",
                  "source": f"{clone} (commit {commit[:12] or 'unknown'})", "commit": commit or None,
                  "copy": str(dest) if keep is not None else None, "cores": cores,
                  "threads": {"a": a_threads, "b": b_threads},
                  "settings": {"a": thread_settings(clone), "b": thread_settings(dest)},
                  "training_threads": by_thread, "runs": {"a": run_threads_rows(clone), "b": run_threads_rows(dest)},
                  "stages_rerun": list(STAGES), "stage_walls_s": walls,
                  "imports": probe, "clone_unchanged": True,
                  **compare_claims(clone, dest), "machine": common.machine()}
    return result


def show(r: dict) -> None:
    for c in r["claims"]:
        print(f"   {c['id']:32s} {r['threads']['a']} threads: {c['a']['verdict']:22s} "
              f"{r['threads']['b']} threads: {c['b']['verdict']:22s} in both: {'yes' if c['holds_in_both'] else 'no'}")
    common.show("threads", {"claims_holding_in_both": f"{len(r['hold_in_both'])} of {len(r['claims'])}"},
                {"training threads": r["training_threads"], "stage walls": r["stage_walls_s"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="clone", type=Path, required=True, metavar="CLONE",
                    help="a finished pipeline checkout (bench/repro.py --cold --keep DIR)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per training in the copy (default 2)")
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR", help="copy into DIR and keep it")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    result = run_threads(args.clone, args.threads, args.keep)
    show(result)
    if not args.no_save:
        common.merge_results("threads", result)


if __name__ == "__main__":
    main()
