"""The typed parameter loader: defaults, profiles, and errors that name the key."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlbff_lib.core.params import SECTIONS, ParamError, build, load_params, read_raw, section_class, to_dict
from rlbff_lib.core.params import REPO_ROOT

ROOT = REPO_ROOT


def _write(tmp_path, raw, full=None):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    if full is not None:
        (tmp_path / "profiles").mkdir()
        (tmp_path / "profiles" / "full.yaml").write_text(yaml.safe_dump(full))
    return tmp_path / "params.yaml"


def _smoke():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_is_the_embedded_default():
    """params.yaml states exactly the dataclass defaults: the smoke profile is embedded in code."""
    loaded = load_params(ROOT / "params.yaml")
    assert loaded["profile"] == "smoke"
    for name in SECTIONS:
        default = section_class(name)()
        assert to_dict(loaded[name]) == to_dict(default), f"params.yaml section {name} differs from defaults"


def test_every_section_key_is_written_out():
    raw = _smoke()
    for name in SECTIONS:
        fields = {f.name for f in dataclasses.fields(section_class(name))}
        assert set(raw[name]) == fields, name


def test_full_profile_loads_and_differs(tmp_path):
    full = load_params(_write_full_copy(tmp_path))
    assert full["profile"] == "full"
    smoke = load_params(ROOT / "params.yaml")
    assert to_dict(full["data"]) != to_dict(smoke["data"])
    assert full["data"].source == "helpsteer3"


def _write_full_copy(tmp_path):
    raw = _smoke()
    raw["profile"] = "full"
    return _write(tmp_path, raw, full=yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text()))


@pytest.mark.parametrize("mutate, needle", [
    (lambda r: r["data"]["world"].update(mistake_rate=1.5), "data.world.mistake_rate"),
    (lambda r: r["data"]["world"].update(n_prompts="many"), "data.world.n_prompts"),
    (lambda r: r["data"].update(sauce="synthetic"), "data.sauce: unknown key"),
    (lambda r: r["data"].update(source="wikipedia"), "data.source"),
    (lambda r: r["assets"]["models"]["policy"].update(hidden_size=0), "assets.models.policy.hidden_size"),
    (lambda r: r["assets"]["pretrain"].update(steps=True), "assets.pretrain.steps"),
    (lambda r: r.update(trainer={}), "trainer: unknown section"),
    (lambda r: r.update(profile="huge"), "profile"),
])
def test_bad_parameters_name_the_key(tmp_path, mutate, needle):
    raw = _smoke()
    mutate(raw)
    with pytest.raises(ParamError) as e:
        load_params(_write(tmp_path, raw))
    assert needle in str(e.value)


def test_missing_profile_file_is_reported(tmp_path):
    raw = _smoke()
    raw["profile"] = "full"
    with pytest.raises(ParamError, match="full.yaml"):
        read_raw(_write(tmp_path, raw))


def test_missing_keys_take_defaults(tmp_path):
    loaded = load_params(_write(tmp_path, {"data": {"world": {"n_prompts": 7}}}))
    assert loaded["data"].world.n_prompts == 7
    assert loaded["assets"] == section_class("assets")()


def test_int_is_accepted_for_float_but_not_bool_for_int():
    cfg = build(section_class("data"), {"world": {"property_rate": 1}})
    assert cfg.world.property_rate == 1.0 and isinstance(cfg.world.property_rate, float)
    with pytest.raises(ParamError, match="data.world.n_prompts: expected an integer"):
        build(section_class("data"), {"world": {"n_prompts": True}}, "data")


def test_check_command_fails_before_any_work(tmp_path):
    raw = _smoke()
    raw["data"]["world"]["n_prompts"] = -3
    path = _write(tmp_path, raw)
    res = subprocess.run([sys.executable, "-m", "rlbff_lib.core.stage", "check", "--params", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "data.world.n_prompts" in res.stderr


# ------------------------------------------------------------------ notebooks: stage_config, project_root


def _keys(name):
    return {f.name: None for f in dataclasses.fields(section_class(name)) if f.init}


def test_stage_config_takes_params_yaml_and_merges_overrides_key_by_key(tmp_path):
    from rlbff_lib.core.params import stage_config

    raw = _smoke()
    raw["data"]["world"]["seed"] = 7
    path = _write(tmp_path, raw)
    cfg = stage_config("data", _keys("data"), path)  # every key None: params.yaml as it is
    assert cfg.world.seed == 7 and cfg.world.n_prompts == raw["data"]["world"]["n_prompts"]
    cfg = stage_config("data", {**_keys("data"), "world": {"n_prompts": 5}}, path)
    assert cfg.world.n_prompts == 5 and cfg.world.seed == 7  # a nested config is merged, not replaced
    cfg = stage_config("data", {**_keys("data"), "world": "{n_prompts: 6}"}, path)  # papermill -p passes text
    assert cfg.world.n_prompts == 6 and cfg.world.seed == 7


def test_stage_config_replaces_free_key_mappings_whole():
    """``rm_eval.models`` maps free names to configs: an override names the models to keep, it is not merged."""
    from rlbff_lib.core.params import stage_config

    models = {"scalar": {"kind": "scalar", "path": "models/reward_models/scalar"}}
    cfg = stage_config("rm_eval", {**_keys("rm_eval"), "models": models}, ROOT / "params.yaml")
    assert list(cfg.models) == ["scalar"]
    assert len(load_params(ROOT / "params.yaml")["rm_eval"].models) > 1


@pytest.mark.parametrize("history, needle", [
    (["import x", "# Parameters\nn_prompts = 200\n"], "unknown parameter 'n_prompts'"),
    (["# Parameters\nworld = {'n_prompts': 5}\nsauce = 1\nspice = 2\n"], "unknown parameters 'sauce', 'spice'"),
])
def test_stage_config_rejects_names_papermill_injected_that_the_section_lacks(history, needle):
    from rlbff_lib.core.params import stage_config

    with pytest.raises(ParamError, match=needle) as e:
        stage_config("data", {**_keys("data"), "In": history}, ROOT / "params.yaml")
    assert "allowed: source, world, helpsteer3, output_root" in str(e.value)


def test_stage_config_accepts_the_harness_names_and_ignores_other_cells():
    from rlbff_lib.core.params import injected_names, stage_config

    ns = {**_keys("data"), "In": ["# Parameters (papermill -p/-y set them).\nsource = None\n",
                                  "# Parameters\noutput_root = 'x'\nPAPERMILL_OUTPUT_PATH = 'o.ipynb'\n"]}
    assert injected_names(ns) == {"output_root", "PAPERMILL_OUTPUT_PATH"}
    assert stage_config("data", ns, ROOT / "params.yaml").source == "synthetic"
    assert injected_names({"In": ["x = 1"]}) == set() and injected_names({}) is None


def test_stage_config_names_a_bad_override_and_a_missing_parameter(tmp_path):
    from rlbff_lib.core.params import stage_config

    with pytest.raises(ParamError, match="parameters: data.world.mistake_rate: must be in"):
        stage_config("data", {**_keys("data"), "world": {"mistake_rate": 2.0}}, ROOT / "params.yaml")
    with pytest.raises(ParamError, match="data.helpsteer3: not defined in the notebook's parameters cell"):
        stage_config("data", {"source": None, "world": None}, ROOT / "params.yaml")
    raw = _smoke()
    raw["data"]["world"]["seed"] = "zero"
    with pytest.raises(ParamError, match=r"^params.yaml: data.world.seed"):
        stage_config("data", _keys("data"), _write(tmp_path, raw))


def test_project_root_is_found_from_a_subfolder_or_the_environment(tmp_path, monkeypatch):
    from rlbff_lib.core.params import params_file, project_root

    monkeypatch.delenv("RLBFF_ROOT", raising=False)
    monkeypatch.delenv("RLBFF_PARAMS", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text("profile: smoke\n")
    (tmp_path / "notebooks").mkdir()
    assert project_root(tmp_path / "notebooks") == tmp_path.resolve()
    assert project_root(Path("/")) == ROOT  # no repository above: the checkout of this package
    monkeypatch.setenv("RLBFF_ROOT", str(tmp_path))
    assert project_root(Path("/")) == tmp_path.resolve()
    assert params_file() == tmp_path.resolve() / "params.yaml"
    monkeypatch.setenv("RLBFF_PARAMS", str(tmp_path / "other.yaml"))
    assert params_file() == (tmp_path / "other.yaml").resolve()
