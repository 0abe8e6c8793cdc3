"""params.yaml is a fixed point of DVC's YAML round trip: `dvc exp run -S` changes only the lines it sets.

DVC writes `-S` through ruamel (dvc.utils.serialize.modify_yaml, via dvc.utils.hydra.apply_overrides), which
re-emits the whole file; any layout it would not write itself (flow mappings, `null`) is rewritten on every run.
"""
import difflib
import shutil

import pytest
from dvc.utils.hydra import apply_overrides
from dvc.utils.serialize import modify_yaml

from rlbff_lib.core.params import REPO_ROOT

PARAMS = REPO_ROOT / "params.yaml"


def _copy(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copyfile(PARAMS, path)
    return path


def _changed(path):
    """(removed, added) lines of ``path`` against the repository's params.yaml."""
    diff = difflib.unified_diff(PARAMS.read_text().splitlines(), path.read_text().splitlines(), lineterm="", n=0)
    lines = [line for line in diff if not line.startswith(("---", "+++", "@@"))]
    return [line[1:] for line in lines if line[0] == "-"], [line[1:] for line in lines if line[0] == "+"]


def _set(data, dotted, value):
    *parents, key = dotted.split(".")
    for name in parents:
        data = data[name]
    data[key] = value


def test_noop_round_trip_is_byte_identical(tmp_path):
    path = _copy(tmp_path)
    with modify_yaml(path):
        pass
    assert path.read_bytes() == PARAMS.read_bytes()


# (key, value for modify_yaml, the same as a `-S` override, lines removed, lines added)
CASES = [
    ("data.world.n_prompts", 1000, "1000",  # an int deep in block mappings
     ["    n_prompts: 2000"], ["    n_prompts: 1000"]),
    ("reward_models.bt.margin_scale", 0.5, "0.5",  # a float of a mapping that was a flow mapping
     ["    margin_scale: 1.0"], ["    margin_scale: 0.5"]),
    ("data.helpsteer3.path", "/data/hs3", "/data/hs3",  # null set to a string
     ["    path:"], ["    path: /data/hs3"]),
    ("rm_eval.models.genrm.limits.validation", 10, "10",  # null set to an int, four mappings deep
     ["        validation:"], ["        validation: 10"]),
    ("alignment.seeds", [0, 1, 2, 3], "[0,1,2,3]",  # a list grows by one item
     [], ["  - 3"]),
    ("alignment.grpo.beta", 0.02, "0.02",  # a value with a comment after it
     ["    beta: 0.01                      # KL coefficient; TRL's default 0 loads no reference model (template: 0.01)"],
     ["    beta: 0.02                      # KL coefficient; TRL's default 0 loads no reference model (template: 0.01)"]),
    ("profile", "full", "full",
     ["profile: smoke"], ["profile: full"]),
]


@pytest.mark.parametrize("key, value, override, removed, added", CASES, ids=[c[0] for c in CASES])
def test_modify_yaml_changes_only_the_set_line(tmp_path, key, value, override, removed, added):
    path = _copy(tmp_path)
    with modify_yaml(path) as data:
        _set(data, key, value)
    assert _changed(path) == (removed, added)


@pytest.mark.parametrize("key, value, override, removed, added", CASES, ids=[c[0] for c in CASES])
def test_set_param_override_changes_only_the_set_line(tmp_path, key, value, override, removed, added):
    """`dvc exp run -S key=value` (without hydra composition) is exactly apply_overrides on params.yaml."""
    path = _copy(tmp_path)
    apply_overrides(path, [f"{key}={override}"])
    assert _changed(path) == (removed, added)


def _leaves(node, prefix=()):
    """(container, key, dotted path) of every scalar in ``node``, list items included."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, (dict, list)):
            yield from _leaves(value, prefix + (str(key),))
        else:
            yield node, key, ".".join(prefix + (str(key),))


def _other(value):
    """A different value of the same kind."""
    if value is None:
        return "set"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return int(value) + 1
    if isinstance(value, float):
        return float(value) + 0.5
    return str(value) + "x"


def test_every_scalar_lives_on_its_own_line_and_changes_only_it(tmp_path):
    """Change every scalar at once: each changes its own line in place, nothing else moves."""
    path = _copy(tmp_path)
    with modify_yaml(path) as data:
        leaves = list(_leaves(data))
        for container, key, _ in leaves:
            container[key] = _other(container[key])
    old, new = PARAMS.read_text().splitlines(), path.read_text().splitlines()
    assert len(new) == len(old)
    changed = [(a, b) for a, b in zip(old, new) if a != b]
    assert len(changed) == len(leaves) > 300
    for a, b in changed:
        assert _prefix(a) == _prefix(b), (a, b)


def _prefix(line):
    """What stays when a line's value changes: the key (``  name``) or the list dash (``  - ``)."""
    if line.lstrip().startswith("- "):
        return line[:line.index("- ") + 2]
    return line.partition(":")[0]
