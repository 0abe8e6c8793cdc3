"""The package's shape, read from the source (AST, every import statement, function-level ones too):

(a) each DVC stage's import closure lies inside the ``deps`` its ``dvc.yaml`` entry declares, so editing a
    module reruns every stage that runs it; (b) no import cycle; (c) ``rlbff_lib.core`` imports nothing else
    of the package; (d) no stage module imports another stage module.

A stage's closure starts from the imports in ``notebooks/<stage>.ipynb``, ``rlbff_lib/stages/<stage>.py``,
the module of its config class (``SECTIONS``), the harness its ``cmd`` runs (``sh bin/stage`` runs
``python -m rlbff_lib.core.stage``), and follows rlbff_lib imports transitively, plus modules named by a
string literal that is exactly a module name (``launch("rlbff_lib.alignment.grpo", ...)``, ``python -m``
entry points of training subprocesses). Importing a module also runs its packages' ``__init__.py``.
"""
from __future__ import annotations

import ast
import functools
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from rlbff_lib.core.params import REPO_ROOT, SECTIONS

ROOT = REPO_ROOT
PKG = "rlbff_lib"
MODULE_NAME = re.compile(r"^rlbff_lib(\.[A-Za-z_][A-Za-z0-9_]*)+$")
ENTRY_MODULE = re.compile(r"-m\s+(rlbff_lib(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


# ------------------------------------------------------------------ the import graph


@functools.lru_cache(maxsize=8)
def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file (packages as ``pkg.sub`` -> ``__init__.py``)."""
    out = {}
    for path in sorted((root / PKG).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, else its longest prefix that is a module."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def parse_imports(tree: ast.AST, modules: dict[str, Path], current: str = "") -> tuple[set[str], set[str]]:
    """``(imports, strings)``: package modules imported anywhere in ``tree`` (relative imports resolved
    against ``current``), and package modules named by a string literal that is exactly a module name."""
    imports, strings = set(), set()
    package = current if (current and modules.get(current, Path()).name == "__init__.py") else current.rpartition(".")[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            if node.value in modules:
                strings.add(node.value)
            continue
        for name in names:
            if name == PKG or name.startswith(PKG + "."):
                resolved = _resolve(name, modules)
                if resolved:
                    imports.add(resolved)
    imports.discard(current)
    strings.discard(current)
    return imports, strings


@functools.lru_cache(maxsize=8)
def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(imports, strings)`` of every module: name -> package modules it imports / names as a string."""
    modules = module_files(root)
    imports, strings = {}, {}
    for name, path in modules.items():
        imports[name], strings[name] = parse_imports(ast.parse(path.read_text(), str(path)), modules, name)
    return imports, strings


def notebook_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules imported by the code cells of a notebook (IPython magics and shell lines skipped)."""
    found = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        src = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())
        imports, strings = parse_imports(ast.parse(src, str(path)), modules)
        found |= imports | strings
    return found


def _packages(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def closure(roots: set[str], imports: dict[str, set[str]], strings: dict[str, set[str]]) -> set[str]:
    """Every module that running ``roots`` imports (or launches by name), their packages included."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in imports.get(name, ()) | strings.get(name, ()) | set(_packages(name)) if m not in seen]
    return seen


# ------------------------------------------------------------------ stages against dvc.yaml


def _dep_paths(entry: dict) -> list[str]:
    return [next(iter(d)) if isinstance(d, dict) else d for d in entry.get("deps", [])]


def cmd_files_and_entries(cmd: str, root: Path = ROOT) -> tuple[list[str], set[str]]:
    """Repository files a stage's ``cmd`` runs (``sh bin/stage``) and the modules it runs with ``-m``,
    read from the cmd and from those files."""
    files, entries = [], set(ENTRY_MODULE.findall(cmd))
    for token in shlex.split(cmd):
        path = root / token
        if "/" in token and path.is_file():
            files.append(token)
            entries |= set(ENTRY_MODULE.findall(path.read_text()))
    return files, entries


def stage_closure(name: str, entry: dict, root: Path = ROOT) -> tuple[set[str], list[str]]:
    """``(modules, files)``: the modules stage ``name`` runs, and the repository files it needs (the
    modules' files, its notebook, the files its cmd runs)."""
    modules = module_files(root)
    imports, strings = import_graph(root)
    cmd_files, entries = cmd_files_and_entries(entry["cmd"], root)
    roots = set(entries)
    notebook = root / "notebooks" / f"{name}.ipynb"
    if notebook.exists():
        roots |= notebook_imports(notebook, modules)
    if f"{PKG}.stages.{name}" in modules:
        roots.add(f"{PKG}.stages.{name}")
    if name in SECTIONS:
        roots.add(SECTIONS[name].split(":")[0])
    mods = closure(roots, imports, strings)
    files = sorted({str(modules[m].relative_to(root)) for m in mods} | set(cmd_files)
                   | ({f"notebooks/{name}.ipynb"} if notebook.exists() else set()))
    return mods, files


def covered(path: str, deps: list[str]) -> bool:
    p = Path(path)
    return any(p == Path(d) or Path(d) in p.parents for d in deps)


def stage_gaps(name: str, entry: dict, root: Path = ROOT) -> list[str]:
    """Files stage ``name`` runs that its ``deps`` do not cover (each a file or a folder above it)."""
    _, files = stage_closure(name, entry, root)
    deps = _dep_paths(entry)
    return [f for f in files if not covered(f, deps)]


def unused_code_deps(name: str, entry: dict, root: Path = ROOT) -> list[str]:
    """Declared library deps (under ``rlbff_lib/``) that hold none of the files the stage runs: editing
    them would rerun the stage for nothing."""
    _, files = stage_closure(name, entry, root)
    return [d for d in _dep_paths(entry) if d.startswith(PKG) and not any(covered(f, [d]) for f in files)]


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_import_closure_lies_inside_its_deps(name):
    gaps = stage_gaps(name, STAGES[name])
    assert not gaps, (f"dvc.yaml stage {name!r} runs files its deps do not cover (editing them would not rerun it): "
                      f"{', '.join(gaps)}; add the file or its folder to stages.{name}.deps")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_declares_no_library_folder_it_does_not_run(name):
    extra = unused_code_deps(name, STAGES[name])
    assert not extra, f"dvc.yaml stage {name!r} lists library deps it never imports: {', '.join(extra)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_exist_and_name_no_other_stage_module(name):
    for dep in _dep_paths(STAGES[name]):
        if dep.startswith((PKG, "notebooks", "bin", "configs")):
            assert (ROOT / dep).exists(), f"stages.{name}.deps: {dep} does not exist"
        assert dep not in (PKG, f"{PKG}/stages"), f"stages.{name}.deps: {dep} is wider than any stage runs"
        if dep.startswith(f"{PKG}/stages/"):
            assert dep in (f"{PKG}/stages/{name}.py", f"{PKG}/stages/__init__.py"), (
                f"stages.{name}.deps: {dep} is another stage's module")


def test_the_deps_check_reports_a_missing_folder():
    """Self-test: an entry that omits a folder the stage imports is reported, file by file."""
    entry = dict(STAGES["data"])
    entry["deps"] = [d for d in _dep_paths(entry) if d != f"{PKG}/core"]
    gaps = stage_gaps("data", entry)
    assert f"{PKG}/core/params.py" in gaps and f"{PKG}/core/stage.py" in gaps
    assert all(g.startswith(f"{PKG}/core/") for g in gaps), gaps
    entry["deps"] = [d for d in _dep_paths(STAGES["data"]) if d != "bin/stage"]
    assert stage_gaps("data", entry) == ["bin/stage"]


def test_the_closure_follows_function_level_imports_and_module_strings(tmp_path):
    """Self-test on a throwaway package: an import inside a function and a module named by a string
    (a subprocess entry point) are both followed, transitively; a relative import is resolved."""
    pkg = tmp_path / PKG
    for sub in ("core", "stages", "training", "extra"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text('"""x"""\n')
    (pkg / "__init__.py").write_text('"""x"""\n')
    (pkg / "core" / "stage.py").write_text("from .io import x\n")
    (pkg / "core" / "io.py").write_text("x = 1\n")
    (pkg / "stages" / "demo.py").write_text("def f():\n    from rlbff_lib.training import launch\n"
                                            "    launch.go('rlbff_lib.extra.child')\n")
    (pkg / "training" / "launch.py").write_text("def go(m):\n    pass\n")
    (pkg / "extra" / "child.py").write_text("import rlbff_lib.extra.leaf\n")
    (pkg / "extra" / "leaf.py").write_text("")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "stage").write_text('exec "$py" -m rlbff_lib.core.stage "$@"\n')
    entry = {"cmd": "sh bin/stage run demo", "deps": ["bin/stage", f"{PKG}/core", f"{PKG}/stages/demo.py"]}
    gaps = stage_gaps("demo", entry, tmp_path)
    assert set(gaps) == {f"{PKG}/__init__.py", f"{PKG}/training/__init__.py", f"{PKG}/training/launch.py",
                         f"{PKG}/extra/__init__.py", f"{PKG}/extra/child.py", f"{PKG}/extra/leaf.py",
                         f"{PKG}/stages/__init__.py"}, gaps


# ------------------------------------------------------------------ layering


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    imports, _ = import_graph()
    cycles = find_cycles(imports)
    assert not cycles, "import cycles among rlbff_lib modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_core_imports_nothing_else_of_the_package():
    imports, strings = import_graph()
    bad = {m: sorted(d for d in imports[m] | strings[m] if not (d == f"{PKG}.core" or d.startswith(f"{PKG}.core.")
                                                                or d == PKG))
           for m in imports if m.startswith(f"{PKG}.core")}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, f"rlbff_lib.core must import nothing else of the package: {bad}"


def test_no_stage_module_imports_another_stage_module():
    imports, strings = import_graph()
    stages = [m for m in imports if m.startswith(f"{PKG}.stages.")]
    bad = {m: sorted(d for d in imports[m] | strings[m] if d.startswith(f"{PKG}.stages.") and d != m) for m in stages}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, ("a stage module imports another stage module (move the shared code below stages/): "
                     + "; ".join(f"{m} imports {', '.join(d)}" for m, d in bad.items()))


def test_every_section_maps_to_its_stage_module():
    for name, target in SECTIONS.items():
        assert target.split(":")[0] == f"{PKG}.stages.{name}", f"SECTIONS[{name!r}] = {target}"
