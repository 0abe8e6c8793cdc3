"""Source notebooks: no outputs, one parameters cell listing the section's keys (defaults live in params.yaml
and the config classes only), opened with ``open_stage``, writing only through ``out(...)``; and two of the
three ways in, run as a user would: a notebook opened from ``notebooks/`` (Jupyter's folder) and the README's
papermill sweep, literally."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlbff_lib.core.params import REPO_ROOT, SECTIONS
from rlbff_lib.core.stage import parameters_cell, parameters_source

ROOT = REPO_ROOT
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# The README's sweep example, run literally by test_readme_papermill_sweep (from the repository root).
SWEEP_COMMAND = """for n in 200 400; do
  mkdir -p outputs/sweeps/n$n
  papermill notebooks/data.ipynb outputs/sweeps/n$n/data.ipynb -p output_root outputs/sweeps/n$n -y "world: {n_prompts: $n}"
done"""


def test_readme_shows_the_sweep_that_the_sweep_test_runs():
    readme = (ROOT / "README.md").read_text()
    indented = "\n".join("   " + line for line in SWEEP_COMMAND.splitlines())
    assert indented in readme, "README.md: the papermill sweep example differs from SWEEP_COMMAND"


def _code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_every_section_has_a_notebook_and_a_stage():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in SECTIONS:
        assert (ROOT / "notebooks" / f"{name}.ipynb").exists(), name
        assert stages[name]["cmd"] == f"sh bin/stage run {name}"
        assert f"notebooks/{name}.ipynb" in stages[name]["deps"] and "bin/stage" in stages[name]["deps"]
        assert name in stages[name]["params"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebook_has_no_outputs(path):
    for cell in _code_cells(path):
        assert cell.get("outputs") == [], f"{path.name}: a code cell holds outputs"
        assert cell.get("execution_count") is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_lists_the_section_keys_set_to_none(path):
    """The parameters cell is the key list of the section (each None: take params.yaml) plus output_root;
    no default is written a third time. `make sync` rewrites it when a config gains or loses a key."""
    cell = parameters_cell(json.loads(path.read_text()))
    source = "".join(cell["source"])
    assert source == parameters_source(path.stem), f"{path.name}: parameters cell is out of date; run `make sync`"
    assigned = re.findall(r"^(\w+) = (.+)$", source, re.M)
    assert {v for _, v in assigned} == {"None"}
    import dataclasses

    from rlbff_lib.core.params import section_class
    keys = [f.name for f in dataclasses.fields(section_class(path.stem)) if f.init]
    assert [k for k, _ in assigned] == keys + ["output_root"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_its_stage_and_writes_only_through_out(path):
    """The first code cell after the parameters opens the stage (root, config, output root); no cell writes to
    a literal path (a sweep's output_root would not apply) or calls plots.save (figures are shown and saved)."""
    cells = _code_cells(path)
    first = "".join(cells[1]["source"])
    assert f'cfg, out = open_stage("{path.stem}", globals())' in first, path.name
    for cell in cells:
        src = "".join(cell["source"])
        assert not re.search(r"\b(write_json|write_jsonl|atomic_write_text|atomic_write_bytes)\(\s*[\"'fP]", src), (
            f"{path.name}: writes to a literal path; write to out('...')")
        assert "plots.save(" not in src, f"{path.name}: plots.save hides the figure; use plots.show(fig, out(...))"
        assert "stage_config(" not in src, f"{path.name}: use open_stage"


def test_dvc_outputs_are_owned_and_metrics_declared():
    """Each stage: its executed notebook (cached), its headline metrics/NAME.json under `metrics:` (what `dvc metrics
    show` lists) and its details outputs/details/NAME.json a git-tracked out, not a metric."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        assert f"outputs/notebooks/{name}.ipynb" in st["outs"], name
        metrics = [next(iter(m)) if isinstance(m, dict) else m for m in st.get("metrics", [])]
        assert metrics == [f"metrics/{name}.json"], name
        details = [o for o in st["outs"] if isinstance(o, dict) and f"outputs/details/{name}.json" in o]
        assert details == [{f"outputs/details/{name}.json": {"cache": False, "persist": True}}], name
        for plot in st.get("plots", []):
            path = next(iter(plot)) if isinstance(plot, dict) else plot
            assert path.startswith(f"figures/{name}_"), path


def test_git_tracked_outputs_persist_through_a_failed_run():
    """DVC deletes a stage's outputs before running it; an out that is not in DVC's cache (metrics, figures,
    reports: tracked by git) could then only come back from git. `persist: true` keeps them in place."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        for kind in ("outs", "metrics", "plots"):
            for entry in st.get(kind, []):
                if isinstance(entry, dict):
                    path, opts = next(iter(entry.items()))
                    if opts.get("cache") is False:
                        assert opts.get("persist") is True, f"stages.{name}.{kind}: {path} is cache: false without persist"


# ------------------------------------------------------------------ the ways in, executed


def _tree(tmp_path, n_prompts=40):
    """A minimal repository tree: params.yaml (a small world), dvc.yaml, notebooks/data.ipynb."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["world"]["n_prompts"] = n_prompts
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "data.ipynb", tmp_path / "notebooks" / "data.ipynb")
    return tmp_path


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


@pytest.mark.slow
def test_notebook_run_from_its_folder_writes_where_the_pipeline_does(tmp_path, monkeypatch):
    """As Jupyter runs it: the kernel starts in notebooks/. Paths resolve against the repository root; nothing
    is written beside the notebook; the figures are shown inline (embedded PNG) and saved."""
    import nbformat
    from nbclient import NotebookClient

    from rlbff_lib.core.stage import ensure_kernel

    for var in ("RLBFF_ROOT", "RLBFF_PARAMS", "RLBFF_PAPERMILL", "MPLBACKEND"):
        monkeypatch.delenv(var, raising=False)
    tree = _tree(tmp_path)
    nb = nbformat.read(str(tree / "notebooks" / "data.ipynb"), as_version=4)
    NotebookClient(nb, kernel_name=ensure_kernel(), timeout=300,
                   resources={"metadata": {"path": str(tree / "notebooks")}}).execute()
    assert _files(tree / "notebooks") == ["data.ipynb"]
    assert json.loads((tree / "metrics" / "data.json").read_text())["records"] == 40
    assert (tree / "data" / "source" / "feedback.jsonl").exists()
    assert (tree / "figures" / "data_properties.png").stat().st_size > 1000
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert [o["metadata"]["rlbff"]["figure"] for o in images] == ["figures/data_properties.png",
                                                                  "figures/data_preferences.png"]


def _venv_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLBFF_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@pytest.mark.slow
def test_readme_papermill_sweep(tmp_path):
    """The README's sweep, literally: each run writes into its own folder, the pipeline's outputs are not
    touched, and the world size of each run is the one it was given."""
    from rlbff_lib.core.stage import ensure_kernel

    ensure_kernel()
    tree = _tree(tmp_path)
    res = subprocess.run(["bash", "-c", "set -e\n" + SWEEP_COMMAND], cwd=tree, env=_venv_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for n in (200, 400):
        run = tree / "outputs" / "sweeps" / f"n{n}"
        assert json.loads((run / "metrics" / "data.json").read_text())["records"] == n
        assert (run / "data" / "source" / "feedback.jsonl").exists() and (run / "figures" / "data_properties.png").exists()
    assert not any((tree / d).exists() for d in ("data", "metrics", "figures"))  # the pipeline's: untouched
    assert _files(tree / "notebooks") == ["data.ipynb"]


@pytest.mark.slow
def test_papermill_rejects_unknown_parameter_names(tmp_path):
    """A misspelt parameter fails the run, naming it, before anything is written."""
    tree = _tree(tmp_path)
    (tree / "outputs").mkdir()
    res = subprocess.run(["papermill", "notebooks/data.ipynb", "outputs/bad.ipynb", "-p", "n_prompts", "200"],
                         cwd=tree, env=_venv_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "unknown parameter 'n_prompts'" in res.stdout + res.stderr
    assert not any((tree / d).exists() for d in ("data", "metrics", "figures"))
