"""The pipeline harness: each DVC stage runs one notebook through papermill; a notebook opens its stage here.

    python -m rlbff_lib.core.stage run NAME      # validate params.yaml, execute notebooks/NAME.ipynb
    python -m rlbff_lib.core.stage check         # validate every section of params.yaml, nothing else
    python -m rlbff_lib.core.stage sync          # rewrite the notebooks' parameters cells (the key lists)

A run validates ALL sections first (a bad key fails in a second, before heavy
work), then executes ``notebooks/NAME.ipynb`` on the environment's kernel with
``RLBFF_ROOT`` / ``RLBFF_PARAMS`` naming the tree and params file it reads. The
executed copy goes to ``outputs/notebooks/NAME.ipynb`` (never over the source):
it is written to a partial file and renamed only on success; a failed run leaves
``outputs/notebooks/NAME.failed.ipynb`` for inspection. A notebook whose metadata
names ``rlbff.markdown`` is also exported there as Markdown (:func:`export_markdown`).

The same notebook runs three ways: from DVC through this harness, opened in Jupyter
from ``notebooks/``, or by papermill for a sweep. Its first code cell calls
:func:`open_stage`, which makes every one of them behave alike: relative paths
resolve against the repository root (not the notebook's folder), the config is
params.yaml's section with papermill's overrides merged over it (unknown names
refused), and everything is written under ``output_root`` (default: the
repository, i.e. the pipeline's own outputs; a sweep names its own folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from rlbff_lib.core.params import (REPO_ROOT, SECTIONS, ParamError, build, check_parameter_names, load_params,
                                   merge_overrides, params_file, project_root, read_raw, section_class,
                                   stage_config)

KERNEL_NAME = "rlbff"
NOTEBOOKS = REPO_ROOT / "notebooks"
PARAMETERS_HEADER = ("# Parameters (papermill -p/-y set them). None: the value in params.yaml, section `{name}`.\n"
                     "# output_root: where this run writes (None: the repository, i.e. the pipeline's own outputs).")


def ensure_kernel() -> str:
    """Register this environment's Python as the Jupyter kernel ``rlbff`` (once, inside sys.prefix)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (rlbff)", prefix=sys.prefix)
    return KERNEL_NAME


def stage_env(profile: str) -> dict:
    """Environment of a stage's kernel: quiet progress, offline hub in smoke. (No MPLBACKEND: the
    kernel's inline backend shows figures in the notebook.)"""
    env = {
        "RLBFF_PAPERMILL": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if profile in ("smoke", "rehearsal"):  # both run offline (the rehearsal reads local copies only)
        env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    return env


# ---------------------------------------------------------------- inside the notebook


class Outputs:
    """Where a stage run writes: ``out("metrics/data.json")`` is ``<root>/metrics/data.json`` (folder made),
    relative to ``base`` (the repository root, the stage's current folder) when inside it, so paths that
    outputs record (``models/assets/base_policy`` in ``outputs/details/assets.json``) stay relative."""

    def __init__(self, root: str | Path, base: str | Path | None = None):
        self.root = Path(root).resolve()
        self.base = Path(base).resolve() if base is not None else self.root

    def __call__(self, relative: str | Path) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return path.relative_to(self.base)
        except ValueError:
            return path

    def __repr__(self) -> str:
        return f"Outputs({str(self.root)!r})"


def with_ci(value: Any, ci: Any, key: str = "value") -> dict:
    """``{key: value, "ci_low": lo, "ci_high": hi}`` from a ``[lo, hi]`` interval (``None`` where there is none):
    a headline number and its interval as plain numbers (``dvc metrics show`` prints a list as one string)."""
    lo, hi = ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
    return {key: value, "ci_low": lo, "ci_high": hi}


def headline_numbers(headline: dict, prefix: str = "") -> dict:
    """``headline`` (nested dicts) with the values not measured (``None``, non-finite) and the dicts left empty
    taken out. A value that is not a number (a string, a list) raises ValueError naming its key (``a.b``)."""
    import math

    kept: dict = {}
    for key, value in headline.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            value = headline_numbers(value, name + ".")
            if value:
                kept[key] = value
        elif value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        elif isinstance(value, (int, float)):
            kept[key] = value
        else:
            raise ValueError(f"headline metric {name}: expected a number, got {type(value).__name__} {value!r}")
    return kept


def write_metrics(out: Outputs, name: str, details: dict, headline: Callable[[dict], dict]) -> dict:
    """Write stage ``name``'s results, each file atomically: ``outputs/details/NAME.json`` all it measured
    (``details``), then ``metrics/NAME.json`` the headline numbers that ``dvc metrics show`` / ``dvc exp show``
    compare: ``headline(details)`` (the stage module's ``headline_metrics``) through :func:`headline_numbers`.
    Returns the headline as written."""
    from rlbff_lib.core.io import write_json

    numbers = headline_numbers(headline(details))
    write_json(out(f"outputs/details/{name}.json"), details)
    write_json(out(f"metrics/{name}.json"), numbers)
    return numbers


def pipeline_outs(root: str | Path, stage_name: str | None = None) -> list[Path]:
    """Every output path that ``dvc.yaml`` under ``root`` declares (outs, metrics, plots); of one stage when named."""
    import yaml

    path = Path(root) / "dvc.yaml"
    if not path.exists():
        return []
    outs = []
    for name, stage in (yaml.safe_load(path.read_text()) or {}).get("stages", {}).items():
        if stage_name is not None and name != stage_name:
            continue
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []) or []:
                outs.append(Path(root) / (next(iter(entry)) if isinstance(entry, dict) else entry))
    return outs


def resolve_output_root(output_root: str | Path | None, root: Path) -> Path:
    """``None``: ``root`` (the pipeline's outputs). Else the folder (relative to ``root``), which must be
    neither the repository itself nor inside one of the pipeline's outputs; it must be writable."""
    if output_root is None:
        target = root
    else:
        target = (root / Path(output_root).expanduser()).resolve()
        if target == root.resolve():
            raise ParamError(f"output_root: {output_root} is the repository itself; a sweep writes into its own "
                             "folder (e.g. outputs/sweeps/NAME); leave output_root unset to write the pipeline's outputs")
        for out in pipeline_outs(root):
            if target == out.resolve() or out.resolve() in target.parents:
                raise ParamError(f"output_root: {output_root} is inside the pipeline's output {out.relative_to(root)}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ParamError(f"output_root: cannot create {target}: {e.strerror or e}") from None
    if not os.access(target, os.W_OK):
        raise ParamError(f"output_root: {target} is not writable")
    return target


def open_stage(name: str, namespace: dict) -> tuple[Any, Outputs]:
    """The first call of a stage notebook: returns ``(cfg, out)``.

    Moves the kernel to the repository root (:func:`~rlbff_lib.core.params.project_root`) so relative
    inputs resolve there whichever folder Jupyter or papermill started in, sets the stage environment
    (:func:`stage_env`; values already set win), builds the config (:func:`~rlbff_lib.core.params.stage_config`:
    params.yaml's section, papermill's overrides merged over it, unknown names refused) and checks
    ``output_root``. ``out(relative)`` is the path to write ``relative`` to.
    """
    root = project_root()
    os.chdir(root)
    profile = read_raw(params_file(root)).get("profile", "smoke")
    for key, value in stage_env(profile).items():
        if key != "RLBFF_PAPERMILL":  # set by the harness only: it marks a run whose terminal shows the logs
            os.environ.setdefault(key, value)
    cfg = stage_config(name, namespace)
    return cfg, Outputs(resolve_output_root(namespace.get("output_root"), root), base=root)


# ---------------------------------------------------------------- parameters cells


def parameters_source(name: str) -> str:
    """The text of stage ``name``'s ``parameters`` cell: each top-level key of its section set to ``None``."""
    import dataclasses

    lines = PARAMETERS_HEADER.format(name=name).splitlines()
    lines += [f"{f.name} = None" for f in dataclasses.fields(section_class(name)) if f.init]
    lines.append("output_root = None")
    return "\n".join(lines)


def parameters_cell(nb: dict) -> dict:
    """The one code cell tagged ``parameters`` (raises if there is not exactly one)."""
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected exactly one 'parameters' cell, found {len(cells)}")
    return cells[0]


def sync_notebooks() -> list[str]:
    """Rewrite each stage notebook's parameters cell from its config's keys; returns changed names."""
    changed = []
    for name in SECTIONS:
        path = NOTEBOOKS / f"{name}.ipynb"
        if not path.exists():
            continue
        nb = json.loads(path.read_text())
        cell = parameters_cell(nb)
        src = parameters_source(name)
        if "".join(cell["source"]) != src:
            cell["source"] = src.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(name)
    return changed


# ---------------------------------------------------------------- running a stage


@contextlib.contextmanager
def _environ(values: dict):
    """``os.environ`` updated with ``values`` inside the block, restored after (the kernel inherits it)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_stage(name: str, params_path: Path = REPO_ROOT / "params.yaml", output: Path | None = None,
              overrides: dict | None = None, workdir: Path = REPO_ROOT) -> Path:
    """Validate params (and ``overrides``), execute the stage notebook, return the executed notebook's path.

    The notebook reads ``params_path`` and the tree ``workdir`` (its relative inputs and outputs resolve
    there); tests point it at a temporary folder. ``overrides`` are papermill parameters (section keys
    or ``output_root``), checked here before a kernel starts.
    """
    import papermill

    if name not in SECTIONS:
        raise SystemExit(f"unknown stage {name!r} (known: {', '.join(SECTIONS)})")
    params_path, workdir = Path(params_path).resolve(), Path(workdir).resolve()
    params = load_params(params_path)  # every section: fail fast, naming the key
    overrides = dict(overrides or {})
    check_parameter_names(name, overrides)
    cls = section_class(name)
    section = {k: v for k, v in overrides.items() if k != "output_root" and v is not None}
    try:
        build(cls, merge_overrides(cls, read_raw(params_path).get(name) or {}, section), name)
    except ParamError as e:
        raise ParamError(f"parameters: {e}") from None
    from rlbff_lib.core.preflight import preflight

    raw = read_raw(params_path)
    raw[name] = merge_overrides(cls, raw.get(name) or {}, section)
    with _environ(stage_env(params["profile"])):
        preflight(name, raw, workdir, pipeline_outs(workdir, name))  # seconds: the hub, local paths, GPUs, vLLM and
        # writable output folders the stage needs, naming the param
    source = workdir / "notebooks" / f"{name}.ipynb"  # a queued `dvc exp` runs in a copy of the repository
    source = source if source.exists() else NOTEBOOKS / f"{name}.ipynb"
    output = output or workdir / "outputs" / "notebooks" / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.stem + ".partial.ipynb")
    failed = output.with_name(output.stem + ".failed.ipynb")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    env = {**stage_env(params["profile"]), "RLBFF_ROOT": str(workdir), "RLBFF_PARAMS": str(params_path)}
    try:
        with _environ(env):
            papermill.execute_notebook(
                str(source), str(partial), parameters=overrides, kernel_name=ensure_kernel(),
                cwd=str(workdir), progress_bar=False, log_output=True, report_mode=False,
            )
    except BaseException:
        if partial.exists():
            os.replace(partial, failed)
        raise
    failed.unlink(missing_ok=True)
    os.replace(partial, output)
    markdown = json.loads(source.read_text()).get("metadata", {}).get("rlbff", {}).get("markdown")
    if markdown:
        export_markdown(output, workdir / markdown, workdir)
    return output


def export_markdown(notebook: Path, target: Path, root: Path | None = None) -> Path:
    """Write an executed notebook as Markdown (nbconvert's ``MarkdownExporter``, code cells' input left out),
    atomically. A source notebook asks for it with the metadata ``{"rlbff": {"markdown": "reports/NAME.md"}}``.

    A figure shown by :func:`rlbff_lib.core.plots.show` is embedded in the notebook; here it becomes a
    link to the saved file, relative to ``target`` (``root``: what the figure paths are relative to, by
    default ``target``'s repository), so the links resolve where the Markdown is written.
    """
    import nbformat
    from nbconvert import MarkdownExporter

    from rlbff_lib.core.io import atomic_write_text

    root = Path(root) if root is not None else project_root(target.parent)
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for i, out in enumerate(cell.get("outputs", [])):
            figure = (out.get("metadata") or {}).get("rlbff", {}).get("figure")
            if figure:
                link = os.path.relpath(root / figure, Path(target).parent).replace(os.sep, "/")
                caption = out["metadata"]["rlbff"].get("caption") or Path(figure).stem
                cell.outputs[i] = nbformat.v4.new_output("display_data", data={"text/markdown": f"![{caption}]({link})"})
    exporter = MarkdownExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    atomic_write_text(target, re.sub(r"\n{3,}", "\n\n", body).strip() + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlbff_lib.core.stage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute one stage's notebook")
    r.add_argument("name", choices=sorted(SECTIONS))
    r.add_argument("--params", default=None, help="params file (default: params.yaml of the repository)")
    c = sub.add_parser("check", help="validate params.yaml")
    c.add_argument("--params", default=None)
    sub.add_parser("sync", help="rewrite the notebooks' parameters cells (one line per section key)")
    args = ap.parse_args(argv)
    params = Path(args.params) if getattr(args, "params", None) else params_file(project_root())
    try:
        if args.cmd == "check":
            p = load_params(params)
            print(f"{params}: ok (profile {p['profile']}, sections {', '.join(SECTIONS)})")
        elif args.cmd == "sync":
            print("updated:", ", ".join(sync_notebooks()) or "nothing")
        else:
            print(f"executed {run_stage(args.name, params, workdir=project_root())}")
    except ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the notebook raised: its one-line reason here, the traceback in the failed notebook
        from papermill.exceptions import PapermillExecutionError

        if not isinstance(e, PapermillExecutionError):
            raise
        print(f"error: stage {args.name}: {e.ename}: {e.evalue} (traceback in outputs/notebooks/"
              f"{args.name}.failed.ipynb, cell {e.exec_count})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
