"""The stage harness without a kernel: open_stage (root, config, output root), run_stage's checks before any
work, the Markdown export's figure links, and the bin/stage launcher's choice of Python."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from rlbff_lib.core.params import REPO_ROOT, ParamError, section_class
from rlbff_lib.core.stage import Outputs, export_markdown, open_stage, parameters_source, run_stage

ROOT = REPO_ROOT


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A repository tree (params.yaml, dvc.yaml) with the kernel's view of it: cwd in notebooks/."""
    for var in ("RLBFF_ROOT", "RLBFF_PARAMS"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM", "TRANSFORMERS_VERBOSITY",
                "HF_HUB_DISABLE_PROGRESS_BARS", "PYTHONUNBUFFERED", "RLBFF_PAPERMILL"):
        monkeypatch.delenv(var, raising=False)  # open_stage sets them; restored after the test
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    return tmp_path.resolve()


def _ns(name, **over):
    return {**{f.name: None for f in dataclasses.fields(section_class(name)) if f.init}, "output_root": None, **over}


def test_open_stage_resolves_against_the_repository_not_the_notebook_folder(tree):
    cfg, out = open_stage("data", _ns("data", world={"n_prompts": 9}))
    assert Path.cwd() == tree and cfg.world.n_prompts == 9
    assert out("metrics/data.json") == Path("metrics/data.json") and (tree / "metrics").is_dir()
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the smoke profile runs offline however the notebook is started
    assert "RLBFF_PAPERMILL" not in os.environ  # set by the harness only
    assert not any((tree / "notebooks").iterdir())


def test_a_sweep_writes_under_its_own_output_root(tree, tmp_path_factory):
    _, out = open_stage("data", _ns("data", output_root="outputs/sweeps/a"))
    assert out("metrics/data.json") == Path("outputs/sweeps/a/metrics/data.json")
    assert (tree / "outputs" / "sweeps" / "a" / "metrics").is_dir()
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    _, out = open_stage("data", _ns("data", output_root=str(elsewhere)))
    assert out("figures/x.png") == elsewhere.resolve() / "figures" / "x.png"


@pytest.mark.parametrize("output_root, needle", [
    (".", "is the repository itself"),
    ("data/source/run1", "inside the pipeline's output data/source"),
    ("metrics", "inside the pipeline's output"),
])
def test_output_root_may_not_overwrite_the_pipeline(tree, output_root, needle):
    (tree / "metrics").mkdir(exist_ok=True)
    raw = yaml.safe_load((tree / "dvc.yaml").read_text())
    raw["stages"]["data"]["outs"].append("metrics")  # a folder out, to check "inside an out" on folders too
    (tree / "dvc.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamError, match=needle):
        open_stage("data", _ns("data", output_root=output_root))


def test_outputs_are_relative_inside_the_repository(tmp_path):
    out = Outputs(tmp_path / "r", base=tmp_path)
    assert out("models/assets") == Path("r/models/assets") and (tmp_path / "r" / "models").is_dir()


def test_run_stage_refuses_unknown_or_bad_overrides_before_any_work(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    with pytest.raises(ParamError, match="unknown parameter 'n_prompts'"):
        run_stage("data", tmp_path / "params.yaml", overrides={"n_prompts": 3}, workdir=tmp_path)
    with pytest.raises(ParamError, match="parameters: data.world.mistake_rate"):
        run_stage("data", tmp_path / "params.yaml", overrides={"world": {"mistake_rate": 3.0}}, workdir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_parameters_source_is_the_key_list():
    src = parameters_source("report")
    assert src.splitlines()[-4:] == ["svg = None", "dpi = None", "top_principles = None", "output_root = None"]


def test_markdown_export_links_embedded_figures_relative_to_the_markdown(tmp_path):
    nb = nbformat.v4.new_notebook()
    fig = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Image>"},
                                 metadata={"rlbff": {"figure": "figures/report_funnel.png", "caption": "the funnel"}})
    text = nbformat.v4.new_output("display_data", data={"text/markdown": "**kept**"})
    cell = nbformat.v4.new_code_cell("show()", outputs=[text, fig])
    nb.cells = [nbformat.v4.new_markdown_cell("# Report"), cell]
    path = tmp_path / "outputs" / "notebooks" / "report.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    md = export_markdown(path, tmp_path / "reports" / "report.md", tmp_path).read_text()
    assert "![the funnel](../figures/report_funnel.png)" in md and "**kept**" in md
    assert "iVBOR" not in md and "show()" not in md
    md = export_markdown(path, tmp_path / "report.md", tmp_path).read_text()
    assert "![the funnel](figures/report_funnel.png)" in md


# ------------------------------------------------------------------ bin/stage


def _launcher_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLBFF_")}
    env["PATH"] = "/usr/bin:/bin"  # whatever python is there (if any), not the project's
    env.update(extra)
    return env


def test_launcher_uses_the_project_environment_whatever_is_on_path():
    res = subprocess.run(["sh", "bin/stage", "check"], cwd=ROOT, env=_launcher_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "ok (profile" in res.stdout


def test_launcher_names_a_python_that_lacks_the_requirements():
    res = subprocess.run(["sh", "bin/stage", "check"], cwd=ROOT, env=_launcher_env(RLBFF_PYTHON="/bin/false"),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and "/bin/false cannot import papermill" in res.stderr


def test_launcher_finds_the_venv_above_a_queued_experiment_copy(tmp_path):
    """`dvc exp run --queue` runs the stage in a copy under <repo>/.dvc/tmp/exps/<id>/: the launcher walks up to
    the repository's .venv."""
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    marker = tmp_path / "used"
    (venv / "python").write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec {sys.executable} "$@"\n')
    (venv / "python").chmod(0o755)
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmp123"
    (copy / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "bin" / "stage", copy / "bin" / "stage")
    shutil.copy(ROOT / "params.yaml", copy / "params.yaml")
    shutil.copy(ROOT / "dvc.yaml", copy / "dvc.yaml")
    res = subprocess.run(["sh", "bin/stage", "check"], cwd=copy, env=_launcher_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert str(copy / "params.yaml") in res.stdout  # it checked the copy's params, with the venv above it
    assert "-m rlbff_lib.core.stage check" in marker.read_text()


def test_write_metrics_writes_the_details_and_only_numbers_in_the_headline(tmp_path, monkeypatch):
    """outputs/details/NAME.json: the details as given; metrics/NAME.json: the headline function's numbers,
    values not measured (None, NaN) and the dicts they leave empty taken out."""
    from rlbff_lib.core.stage import headline_numbers, with_ci, write_metrics

    monkeypatch.chdir(tmp_path)  # a stage runs in the repository root; out() paths are relative to it

    details = {"curve": [{"step": 1, "loss": 2.5}], "acc": 0.8, "ci": [0.7, 0.9], "label": "ours"}
    headline = write_metrics(Outputs(tmp_path), "x", details,
                             lambda d: {"acc": with_ci(d["acc"], d["ci"], "accuracy"), "wb": {"sft": None},
                                        "gain": float("nan"), "n": 3, "ok": True})
    assert headline == {"acc": {"accuracy": 0.8, "ci_low": 0.7, "ci_high": 0.9}, "n": 3, "ok": True}
    assert json.loads((tmp_path / "outputs" / "details" / "x.json").read_text()) == details
    assert json.loads((tmp_path / "metrics" / "x.json").read_text()) == headline
    assert with_ci(1.0, None) == {"value": 1.0, "ci_low": None, "ci_high": None}
    with pytest.raises(ValueError, match=r"headline metric a\.label: expected a number, got str 'ours'"):
        headline_numbers({"a": {"label": "ours"}})
    with pytest.raises(ValueError, match=r"headline metric ci: expected a number, got list"):
        write_metrics(Outputs(tmp_path / "bad"), "x", details, lambda d: {"ci": d["ci"]})
    assert not (tmp_path / "bad" / "outputs").exists()  # a bad headline fails before either file is written
