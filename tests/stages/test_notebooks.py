"""Source notebooks: no outputs, exactly one parameters cell that matches params.yaml, a DVC stage each."""
import json
from pathlib import Path

import pytest
import yaml

from rlbff_lib.core.params import SECTIONS
from rlbff_lib.core.stage import parameters_cell, parameters_source, section_values
from rlbff_lib.core.params import REPO_ROOT

ROOT = REPO_ROOT
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_section_has_a_notebook_and_a_stage():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in SECTIONS:
        assert (ROOT / "notebooks" / f"{name}.ipynb").exists(), name
        assert stages[name]["cmd"] == f"python -m rlbff_lib.core.stage run {name}"
        assert f"notebooks/{name}.ipynb" in stages[name]["deps"]
        assert name in stages[name]["params"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebook_has_no_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: a code cell holds outputs"
            assert cell.get("execution_count") is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_in_sync_with_params_yaml(path):
    nb = json.loads(path.read_text())
    cell = parameters_cell(nb)
    assert "".join(cell["source"]) == parameters_source(section_values(path.stem)), (
        f"{path.name}: parameters cell is out of date; run `make sync`")


def test_dvc_outputs_are_owned_and_metrics_declared():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        assert f"outputs/notebooks/{name}.ipynb" in st["outs"], name
        metrics = [next(iter(m)) if isinstance(m, dict) else m for m in st.get("metrics", [])]
        assert f"metrics/{name}.json" in metrics, name
        for plot in st.get("plots", []):
            path = next(iter(plot)) if isinstance(plot, dict) else plot
            assert path.startswith(f"figures/{name}_"), path
