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
