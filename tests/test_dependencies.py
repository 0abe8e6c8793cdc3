"""Dependencies tidy (issue 15 item 7): every third-party package the code imports is declared, in the right group.

Imports are read by AST from every ``.py`` file of ``rlbff_lib/``, ``bench/`` and ``tests/`` and from the code cells of
``notebooks/*.ipynb`` (function-level imports too). A module is mapped to the distribution that provides it by the
installed packages' own metadata (``importlib.metadata.packages_distributions``), not by a list kept here. Groups:
the library and the pipeline notebooks need only the runtime ``dependencies``; the tests also the ``test`` extra;
the benchmark scripts also the ``gpu`` extra. pytest and Jupyter are not runtime dependencies; Python 3.11 and 3.12
are both allowed.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from rlbff_lib.core.params import REPO_ROOT

PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(*groups: str) -> set[str]:
    reqs = list(PROJECT["dependencies"]) if "runtime" in groups else []
    for g in groups:
        if g != "runtime":
            reqs += PROJECT["optional-dependencies"][g]
    return {_norm(Requirement(r).name) for r in reqs}


def _imports(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _sources(folder: str) -> dict[str, ast.AST]:
    trees = {}
    root = REPO_ROOT / folder
    if folder == "notebooks":
        for path in sorted(root.glob("*.ipynb")):
            cells = json.loads(path.read_text())["cells"]
            code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
            code = "\n".join(l for l in code.splitlines() if not l.lstrip().startswith(("%", "!")))  # magics
            trees[str(path)] = ast.parse(code)
    else:
        for path in sorted(root.rglob("*.py")):
            trees[str(path)] = ast.parse(path.read_text(), str(path))
    return trees


def _local_modules() -> set[str]:
    """Top-level names that are this repository's own code: the package, and the scripts and helpers that bench/
    and tests/ import from their own folders (``common``, ``fakes``, ...)."""
    names = {"rlbff_lib"}
    for folder in ("bench", "tests", "tests/fakes"):
        for path in (REPO_ROOT / folder).iterdir():
            if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
                names.add(path.stem)
    names |= {p.name for p in (REPO_ROOT / "tests").iterdir() if p.is_dir()}  # test folders importable by name
    return names


def _third_party(folder: str) -> dict[str, set[str]]:
    """module -> files importing it, for modules neither in the standard library nor this repository's."""
    local, out = _local_modules(), {}
    for path, tree in _sources(folder).items():
        for mod in _imports(tree):
            if mod not in sys.stdlib_module_names and mod not in local and mod != "__future__":
                out.setdefault(mod, set()).add(path)
    return out


@functools.lru_cache(maxsize=1)
def _providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    """Distributions providing ``module`` per the installed metadata; a module not installed here (vLLM on a CPU
    machine) is its own distribution name."""
    found = _providers().get(module)
    return {_norm(d) for d in found} if found else {_norm(module)}


def _undeclared(folder: str, allowed: set[str]) -> dict[str, list[str]]:
    return {mod: sorted(Path(p).relative_to(REPO_ROOT).as_posix() for p in files)[:3]
            for mod, files in sorted(_third_party(folder).items()) if not _distributions(mod) & allowed}


def test_the_library_and_notebooks_import_only_runtime_dependencies():
    runtime = _declared("runtime")
    for folder in ("rlbff_lib", "notebooks"):
        assert not _undeclared(folder, runtime), f"{folder}: imported, not a runtime dependency: {_undeclared(folder, runtime)}"
    # the scan sees what it must: packages imported only inside functions are found too
    seen = set(_third_party("rlbff_lib"))
    assert {"numpy", "tqdm", "safetensors", "tokenizers", "pyarrow", "nbformat", "nbconvert", "jupyter_client",
            "httpx", "rapidfuzz", "yaml", "torch", "trl", "huggingface_hub"} <= seen


def test_tests_and_benchmarks_imports_are_declared():
    tests = _declared("runtime", "test")
    assert not _undeclared("tests", tests), f"tests: undeclared imports {_undeclared('tests', tests)}"
    bench = _declared("runtime", "test", "gpu")
    assert not _undeclared("bench", bench), f"bench: undeclared imports {_undeclared('bench', bench)}"


def test_runtime_excludes_test_and_notebook_tools():
    runtime = _declared("runtime")
    assert not {"pytest", "jupyter", "jupyterlab", "notebook", "nbclient", "packaging"} & runtime
    assert "pytest" in _declared("test") and "jupyter" in _declared("notebook")


def test_python_3_11_and_3_12_are_allowed():
    spec = SpecifierSet(PROJECT["requires-python"])
    assert "3.11.7" in spec and "3.12.4" in spec and "3.10.14" not in spec
