"""Stage preflight: under profile full, with no hub, GPU or vLLM here, every stage stops in seconds naming its
parameter; under the rehearsal's local substitutes the same checks pass."""
import shutil
import subprocess
import sys
import time

import pytest

from rlbff_lib.core.params import REPO_ROOT, read_raw
from rlbff_lib.core.preflight import PreflightError, check_gpus, check_hub_repo, preflight


def tree(tmp_path, profile):
    folder = tmp_path / profile
    folder.mkdir()
    text = (REPO_ROOT / "params.yaml").read_text().replace("profile: smoke", f"profile: {profile}", 1)
    (folder / "params.yaml").write_text(text)
    shutil.copytree(REPO_ROOT / "profiles", folder / "profiles")
    return folder


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))


@pytest.mark.parametrize("stage, param", [("data", "data.helpsteer3.hub_name"),
                                          ("assets", "assets.tokenizer.source"),
                                          ("principles", "principles.embedder.name_or_path"),
                                          ("reward_models", "reward_models.accelerate_config"),
                                          ("alignment", "alignment.accelerate_config")])
def test_full_profile_without_its_services_stops_naming_the_param(tmp_path, offline, stage, param):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has GPUs")
    raw = read_raw(tree(tmp_path, "full") / "params.yaml")
    start = time.monotonic()
    with pytest.raises(PreflightError, match=f"^{param.replace('.', r'[.]')}: "):
        preflight(stage, raw, tmp_path)
    assert time.monotonic() - start < 10


def test_rehearsal_substitutes_pass(tmp_path, offline):
    folder = tree(tmp_path, "rehearsal")
    raw = read_raw(folder / "params.yaml")
    (folder / raw["data"]["helpsteer3"]["hub_name"]).mkdir(parents=True)
    assert preflight("data", raw, folder) == ["data.helpsteer3.hub_name: local"]
    assert preflight("assets", raw, folder) == ["assets.embedder.name_or_path: local"]
    assert preflight("reward_models", raw, folder) == ["reward_models.accelerate_config: 0 GPU(s)"]
    with pytest.raises(PreflightError, match="^alignment.policy.name_or_path: "):  # the assets stage has not run
        preflight("alignment", raw, folder)
    (folder / "models" / "assets" / "base_policy").mkdir(parents=True)
    (folder / "models" / "assets" / "base_policy" / "config.json").write_text("{}")
    assert preflight("alignment", raw, folder)[-1] == "alignment.policy.name_or_path: local"


def test_checks_one_by_one(tmp_path, monkeypatch):
    assert check_gpus("cpu.yaml", None, "x.accelerate_config") == 0
    with pytest.raises(PreflightError, match="^x.accelerate_config: nope.yaml not found"):
        check_gpus("nope.yaml", None, "x.accelerate_config")
    with pytest.raises(PreflightError, match="is a folder without a model"):
        check_hub_repo(str(tmp_path), "m.name_or_path")
    with pytest.raises(PreflightError, match="neither a local folder nor a hub name"):
        check_hub_repo("./missing/model", "m.name_or_path")
    # online, but the hub does not answer: a connection error in seconds, not a hang
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(PreflightError, match="^m.name_or_path: 'Qwen/Qwen3-32B' is not on this machine and the "
                                             "Hugging Face hub is unreachable"):
        check_hub_repo("Qwen/Qwen3-32B", "m.name_or_path", timeout_s=3)
    assert time.monotonic() - start < 15


def test_the_stage_runner_stops_before_the_notebook(tmp_path):
    folder = tree(tmp_path, "full")
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty"),
           "PATH": "/usr/bin:/bin"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rlbff_lib.core.stage", "run", "data", "--params",
                           str(folder / "params.yaml")], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.helpsteer3.hub_name: 'nvidia/HelpSteer3' is not in the local Hugging Face cache" in proc.stderr
    assert time.monotonic() - start < 60
    assert not (folder / "outputs").exists()
