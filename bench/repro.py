"""How much of a smoke ``dvc repro`` is overhead rather than compute, and where a cold run's time goes.

    .venv/bin/python bench/repro.py                  # reruns every stage (dvc repro --force), minutes
    .venv/bin/python bench/repro.py --from-existing  # reads outputs/notebooks/*.ipynb, reruns nothing
    .venv/bin/python bench/repro.py --cold [--keep DIR]  # a fresh clone of HEAD, every stage from nothing, ~30 min

A full run executes ``dvc repro --force --single-item STAGE`` for each stage of ``dvc.yaml`` in
order and times each (the stage's wall: DVC, the Python start, validation of params.yaml, the
kernel start, papermill, the cells, DVC hashing of outputs). Either way, each executed notebook
gives ``metadata.papermill.duration`` (from before the kernel starts to after the last cell) and
each cell's ``metadata.papermill.duration``.

What counts as compute. A code cell is a compute cell unless it is the ``parameters`` or
papermill's ``injected-parameters`` cell. The modules a notebook imports are loaded inside its
cells, so their import time is taken out of compute: it is measured by importing the same
statements (every top-level ``import`` / ``from ... import`` of the notebook) in a fresh
interpreter of the same environment (median of ``--import-reps``), and subtracted from the
compute of the cells that hold them (never more than those cells took).

    compute(stage)  = Σ compute-cell durations − import time
    overhead(stage) = wall(stage) − compute(stage)
    repro.overhead_share = Σ overhead / Σ wall

With ``--from-existing`` the wall of a stage is its notebook's papermill duration (kernel start
+ cells), so DVC, the Python start and validation outside the notebook are NOT counted: the share
is then a lower bound, and says so (``wall_source``).

The first two modes run in the working tree, where ``reward_models`` and ``alignment`` reuse finished keyed
training runs (``rlbff_lib.training.runs``): they time a rerun, not a cold run. ``--cold`` clones the repository's
HEAD (the COMMITTED tree: uncommitted changes are not measured) into a temporary folder (``--keep DIR``: into DIR,
kept), runs ``make venv`` there (timed, not counted in the pipeline's time), then ``dvc repro --force --single-item
NAME`` for each stage in ``dvc.yaml`` order with the clone's ``.venv/bin`` first on PATH and ``RLBFF_PYTHON`` set to
its Python (``RLBFF_BENCHMARKS_DIR`` passed through). The clone holds no models, DVC cache or run cache, so
``--force`` reuses nothing: it only makes sure every stage executes. Key ``repro_cold`` (:func:`cold_tables`): per
stage the same breakdown as above, per training run (every ``training_log.json`` under the clone's
:data:`RUN_DIRS`; a GenRM run's ``sft`` and ``grpo`` parts apiece) its steps, wall clock
(``rlbff_lib.training.launch.train_timer``), seconds per step, torch threads and processes, the stages'
``parallel_runs`` and the critical path. A failed stage keeps the clone and names it.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import common
import yaml

NOTEBOOKS = common.REPO_ROOT / "outputs" / "notebooks"
PARAMETER_TAGS = {"parameters", "injected-parameters"}
RUN_DIRS = {"reward_models": "models/rm_runs", "alignment": "models/alignment_runs"}  # the notebooks' runs folders
GOAL_S = 15 * 60  # issue 15: a cold smoke `make repro` in at most 15 minutes on 2 cores


def stages(root: Path = common.REPO_ROOT) -> list[str]:
    """Stage names in ``root/dvc.yaml`` order (the pipeline's order in this project)."""
    return list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])


def import_lines(nb: dict) -> list[str]:
    """Every top-level import statement of the notebook's code cells, in order, deduplicated."""
    out: list[str] = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                line = ast.unparse(node)
                if line not in out:
                    out.append(line)
    return out


def has_import(cell: dict) -> bool:
    try:
        return any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.parse("".join(cell["source"])).body)
    except SyntaxError:
        return False


def measure_imports(lines: list[str], reps: int, python: str = sys.executable, cwd: Path = common.REPO_ROOT) -> float:
    """Seconds to run ``lines`` in a fresh interpreter ``python`` started in ``cwd`` (median of ``reps``)."""
    if not lines:
        return 0.0
    code = ("import time\nt = time.perf_counter()\n" + "\n".join(lines)
            + "\nprint(time.perf_counter() - t)\n")
    env = {**os.environ, "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    times = []
    for _ in range(reps):
        res = subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise SystemExit(f"import measurement failed:\n{res.stderr[-2000:]}")
        times.append(float(res.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def notebook_times(path: Path, import_reps: int, python: str = sys.executable, cwd: Path = common.REPO_ROOT) -> dict:
    """Durations of one executed notebook: total, parameter cells, compute cells, imports (measured by ``python``
    in ``cwd``: :func:`measure_imports`)."""
    nb = json.loads(path.read_text())
    total = nb["metadata"].get("papermill", {}).get("duration")
    if total is None:
        raise SystemExit(f"{path}: no papermill duration (not an executed notebook?)")
    params = compute = import_cells = 0.0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        d = cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0
        if PARAMETER_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            params += d
        else:
            compute += d
            if has_import(cell):
                import_cells += d
    imports = min(measure_imports(import_lines(nb), import_reps, python, cwd), import_cells)
    return {"notebook_s": total, "cells_s": params + compute, "parameter_cells_s": params,
            "compute_cells_s": compute, "imports_s": imports, "compute_s": compute - imports,
            "kernel_and_papermill_s": total - params - compute}


def stage_table(names: list[str], walls: dict[str, float], notebooks: Path, import_reps: int,
                python: str = sys.executable, cwd: Path = common.REPO_ROOT) -> tuple[dict, list[str]]:
    """({stage: :func:`notebook_times` + wall, outside-the-notebook and overhead seconds}, stages without an
    executed notebook). A stage's wall is ``walls[name]``, else its notebook's papermill duration."""
    per_stage, missing = {}, []
    for name in names:
        path = notebooks / f"{name}.ipynb"
        if not path.exists():
            missing.append(name)
            continue
        t = notebook_times(path, import_reps, python, cwd)
        t["wall_s"] = walls.get(name, t["notebook_s"])
        t["outside_notebook_s"] = t["wall_s"] - t["notebook_s"]
        t["overhead_s"] = t["wall_s"] - t["compute_s"]
        per_stage[name] = {k: round(v, 3) for k, v in t.items()}
    return per_stage, missing


def run_stage(name: str, root: Path = common.REPO_ROOT, python: str | None = None) -> float:
    """Wall seconds of ``dvc repro --force --single-item NAME`` in ``root`` with ``root/.venv/bin`` first on PATH
    (``python``: the stages' Python, as ``RLBFF_PYTHON``); raises on failure."""
    venv = root / ".venv" / "bin"
    env = {**os.environ, "PATH": f"{venv}{os.pathsep}{os.environ.get('PATH', '')}"}
    if python:
        env["RLBFF_PYTHON"] = python
    t0 = time.perf_counter()
    res = subprocess.run([str(venv / "dvc"), "repro", "--force", "--single-item", name], cwd=root, env=env)
    if res.returncode != 0:
        raise SystemExit(f"dvc repro of stage {name} failed (exit {res.returncode})")
    return time.perf_counter() - t0


# ------------------------------------------------------------------ cold run


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: unreadable training log ({type(e).__name__}: {e})") from None


def training_runs(root: Path) -> tuple[list[dict], list[str]]:
    """([one row per training run], [run folders without a log]) under ``root``'s :data:`RUN_DIRS`.

    A run folder's ``training_log.json`` is one row; a GenRM's (``{"stages": {...}}``) gives one row per part
    (``genrm-<key>/sft``, ``genrm-<key>/grpo``), from the parts' own logs, which exist as soon as the part is done.
    Row: stage, run, name, global_step, timed_steps (steps in ``wall_s``: a resumed run's resumed part), wall_s,
    s_per_step, torch_threads, world_size, started_at, resumed_from; ``None`` where the log lacks the field.
    """
    rows, unfinished = [], []
    for stage, rel in RUN_DIRS.items():
        base = root / rel
        for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
            logs = [(folder.name, folder / "training_log.json")]
            if not logs[0][1].exists() or "stages" in _read_json(logs[0][1]):
                logs = [(f"{folder.name}/{p.parent.name}", p) for p in sorted(folder.glob("*/training_log.json"))]
            if not logs:
                if (folder / "job.json").exists() or (folder / "checkpoints").exists():
                    unfinished.append(f"{rel}/{folder.name}")
                continue
            mine = []
            for run, path in logs:
                rec = _read_json(path)
                wall, steps = rec.get("wall_s"), rec.get("timed_steps", rec.get("global_step"))
                mine.append({"stage": stage, "run": run, "name": rec.get("name"),
                             "global_step": rec.get("global_step"), "timed_steps": steps, "wall_s": wall,
                             "s_per_step": round(wall / steps, 4) if wall is not None and steps else None,
                             "torch_threads": rec.get("torch_threads"), "world_size": rec.get("world_size"),
                             "started_at": rec.get("started_at"), "resumed_from": rec.get("resumed_from")})
            rows += sorted(mine, key=lambda x: (x["started_at"] or "", x["run"]))  # a GenRM's parts in time order
    return rows, unfinished


def critical_runs(rows: list[dict]) -> list[dict]:
    """The chain of runs that bounds one stage's training, in time order: the run that ended last, then the
    run that ended last before it started (what it waited for: a free slot of ``parallel_runs``, or its input,
    as GenRM GRPO waits for GenRM SFT), and so on. Rows without ``started_at`` / ``wall_s`` are left out."""
    def start(r):
        return datetime.fromisoformat(r["started_at"]).timestamp()

    def end(r):
        return start(r) + r["wall_s"]

    timed = [r for r in rows if r.get("started_at") and r.get("wall_s") is not None]
    if not timed:
        return []
    chain = [max(timed, key=end)]
    while True:
        before = [r for r in timed if end(r) <= start(chain[-1]) + 1e-3]
        if not before:
            return chain[::-1]
        chain.append(max(before, key=end))


def cold_tables(root: Path, stage_walls: dict[str, float], import_reps: int = 3, python: str | None = None) -> dict:
    """The tables of a finished cold run in the clone ``root`` (``stage_walls``: wall seconds per stage).

    stages: :func:`stage_table` of ``root/outputs/notebooks`` plus ``share`` (of the total wall) and
    ``training_span_s`` (first run start to last run end, stages with runs). runs / unfinished_runs:
    :func:`training_runs`. parallel_runs: ``reward_models`` and ``alignment``'s, from ``root/params.yaml``.
    critical_path: stages by wall (largest first; they run one after another, so each is on it) and per stage
    with runs its :func:`critical_runs` (largest wall first). python: measures the notebooks' imports (default
    ``root/.venv/bin/python`` when there, else this one).
    """
    root = Path(root)
    if python is None:
        venv_python = root / ".venv" / "bin" / "python"
        python = str(venv_python) if venv_python.exists() else sys.executable
    names = [n for n in stages(root) if n in stage_walls]
    per_stage, missing = stage_table(names, stage_walls, root / "outputs" / "notebooks", import_reps, python, root)
    total = sum(stage_walls[n] for n in names)
    runs, unfinished = training_runs(root)
    chains = {}
    for name in names:
        mine = [r for r in runs if r["stage"] == name]
        chain = critical_runs(mine)
        if name in per_stage:
            per_stage[name]["share"] = round(stage_walls[name] / total, 4) if total else None
            timed = [r for r in mine if r.get("started_at") and r.get("wall_s") is not None]
            if timed:
                starts = [datetime.fromisoformat(r["started_at"]).timestamp() for r in timed]
                per_stage[name]["training_span_s"] = round(max(t + r["wall_s"] for t, r in zip(starts, timed))
                                                           - min(starts), 3)
        if chain:
            chains[name] = [{"run": r["run"], "wall_s": r["wall_s"]}
                            for r in sorted(chain, key=lambda r: -r["wall_s"])]
    params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    compute = sum(s["compute_s"] for s in per_stage.values())
    counted = sum(s["wall_s"] for s in per_stage.values())
    return {
        "total_s": round(total, 2), "goal_s": GOAL_S,
        "compute_s": round(compute, 2), "overhead_s": round(counted - compute, 2),
        "overhead_share": round((counted - compute) / counted, 4) if counted else None,
        "stages": per_stage, "stages_without_notebook": missing,
        "runs": runs, "unfinished_runs": unfinished,
        "parallel_runs": {s: (params.get(s) or {}).get("parallel_runs") for s in RUN_DIRS},
        "critical_path": {"stages": [{"stage": n, "wall_s": round(stage_walls[n], 3)}
                                     for n in sorted(names, key=lambda n: -stage_walls[n])],
                          "runs": chains},
    }


def _git(*args: str, cwd: Path = common.REPO_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def run_cold(keep: Path | None, import_reps: int) -> dict:
    """Clone HEAD, ``make venv``, every stage timed (module docstring); returns :func:`cold_tables` plus the
    command, clone commit, venv seconds, walls, load average at the start and the machine."""
    dirty = [line for line in _git("status", "--porcelain").splitlines() if line]
    if dirty:
        print(f"note: {len(dirty)} uncommitted change(s) in the working tree are NOT measured: the clone is HEAD",
              flush=True)
    params = yaml.safe_load(_git("show", "HEAD:params.yaml")) or {}
    if not os.environ.get("RLBFF_BENCHMARKS_DIR") and any(
            not (params.get(s) or {}).get("benchmarks_dir") for s in ("rm_eval", "alignment")):
        raise SystemExit("RLBFF_BENCHMARKS_DIR: not set, and HEAD's params.yaml leaves rm_eval/alignment "
                         "benchmarks_dir null: a clone in a temporary folder cannot find ../shared/benchmarks")
    load_start = common.load_average()
    with common.work_folder(keep, "rlbff-cold-", "clone") as dest:
        if subprocess.run(["git", "clone", "--quiet", str(common.REPO_ROOT), str(dest)]).returncode != 0:
            raise SystemExit(f"git clone of {common.REPO_ROOT} into {dest} failed")
        commit = _git("rev-parse", "HEAD", cwd=dest)
        print(f"--- make venv in {dest} (commit {commit[:12]})", flush=True)
        venv_s, res = common.timed(lambda: subprocess.run(["make", "venv"], cwd=dest))
        if res.returncode != 0:
            raise SystemExit(f"make venv failed in {dest} (exit {res.returncode})")
        python = str(dest / ".venv" / "bin" / "python")
        walls: dict[str, float] = {}
        for name in stages(dest):
            print(f"--- dvc repro --force --single-item {name} (cold clone)", flush=True)
            walls[name] = run_stage(name, dest, python)
            print(f"--- {name}: {walls[name]:.1f} s", flush=True)
        result = {"command": "bench/repro.py --cold", "source": f"git clone of HEAD {commit[:12]} (committed tree)",
                  "commit": commit, "venv_s": round(venv_s, 2),
                  **cold_tables(dest, walls, import_reps, python),
                  "definition": "wall = dvc repro --force --single-item STAGE in a fresh clone (nothing to reuse); "
                                "compute = code cells other than parameters/injected-parameters, minus the "
                                "notebook's import time; overhead = wall - compute; a run's wall_s = its training "
                                "call and final save (model loading, data preparation and evaluation excluded)",
                  "load_average_start": load_start, "machine": common.machine()}
    return result


def show_cold(r: dict) -> None:
    for name, s in r["stages"].items():
        print(f"   {name:15s} wall {s['wall_s']:8.1f}s ({100 * s['share']:4.1f}%)  compute {s['compute_s']:8.1f}s"
              f"  overhead {s['overhead_s']:6.1f}s")
    for x in r["runs"]:
        print(f"   {x['stage']:14s} {x['run']:32s} steps {x['timed_steps']}  wall {x['wall_s']}s  "
              f"s/step {x['s_per_step']}  threads {x['torch_threads']}  processes {x['world_size']}")
    common.show("repro_cold", {"total_s": r["total_s"]}, {"goal": f"{r['goal_s']} s", "venv": f"{r['venv_s']} s",
                                                          "parallel_runs": r["parallel_runs"],
                                                          "unfinished runs": r["unfinished_runs"] or "none"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-existing", action="store_true", help="read the executed notebooks; rerun nothing")
    ap.add_argument("--cold", action="store_true", help="a fresh clone of HEAD, every stage from nothing")
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR", help="--cold: clone into DIR and keep it")
    ap.add_argument("--stages", nargs="*", default=None, help="default: every stage of dvc.yaml")
    ap.add_argument("--import-reps", type=int, default=3)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.cold and (args.from_existing or args.stages):
        ap.error("--cold runs every stage of a fresh clone: not with --from-existing or --stages")
    if args.keep is not None and not args.cold:
        ap.error("--keep: only with --cold")
    if args.cold:
        result = run_cold(args.keep, args.import_reps)
        show_cold(result)
        if not args.no_save:
            common.merge_results("repro_cold", result)
        return
    names = args.stages or stages()
    walls: dict[str, float] = {}
    if not args.from_existing:
        for name in names:
            print(f"--- dvc repro --force --single-item {name}", flush=True)
            walls[name] = run_stage(name)
    per_stage, missing = stage_table(names, walls, NOTEBOOKS, args.import_reps)
    if not per_stage:
        raise SystemExit(f"no executed notebooks in {NOTEBOOKS}")
    total = sum(s["wall_s"] for s in per_stage.values())
    overhead = sum(s["overhead_s"] for s in per_stage.values())
    share = overhead / total
    result = {
        "overhead_share": round(share, 4),
        "total_s": round(total, 2), "overhead_s": round(overhead, 2),
        "compute_s": round(sum(s["compute_s"] for s in per_stage.values()), 2),
        "wall_source": ("dvc repro --force --single-item per stage (full stage wall)" if not args.from_existing else
                        "papermill notebook duration (lower bound: DVC, Python start and params validation outside "
                        "the notebook not counted)"),
        "stages": per_stage, "stages_without_notebook": missing,
        "definition": "compute = code cells other than parameters/injected-parameters, minus the notebook's import "
                      "time measured in a fresh interpreter; overhead = wall - compute",
        "machine": common.machine(),
    }
    for name, s in per_stage.items():
        print(f"   {name:15s} wall {s['wall_s']:8.1f}s  compute {s['compute_s']:8.1f}s  imports {s['imports_s']:5.1f}s"
              f"  kernel+papermill {s['kernel_and_papermill_s']:5.1f}s  outside notebook {s['outside_notebook_s']:5.1f}s")
    common.show("repro", {"overhead_share": share}, {"total": f"{total:.1f}s", "overhead": f"{overhead:.1f}s",
                                                     "wall source": result["wall_source"],
                                                     "missing": missing or "none", "machine": result["machine"]})
    if not args.no_save:
        common.merge_results("repro", result)


if __name__ == "__main__":
    main()
