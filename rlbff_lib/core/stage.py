"""The pipeline harness: each DVC stage runs one notebook through papermill.

    python -m rlbff_lib.core.stage run NAME      # validate params.yaml, execute notebooks/NAME.ipynb
    python -m rlbff_lib.core.stage check         # validate every section of params.yaml, nothing else
    python -m rlbff_lib.core.stage sync          # rewrite notebooks' parameters cells from params.yaml

A run validates ALL sections first (a bad key fails in a second, before heavy
work), then executes ``notebooks/NAME.ipynb`` with only that stage's section as
papermill parameters, on the environment's kernel, from the repository root.
The executed copy goes to ``outputs/notebooks/NAME.ipynb`` (never over the
source): it is written to a partial file and renamed only on success; a failed
run leaves ``outputs/notebooks/NAME.failed.ipynb`` for inspection. A notebook whose metadata
names ``rlbff.markdown`` is also exported there as Markdown (:func:`export_markdown`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from rlbff_lib.core.params import REPO_ROOT, SECTIONS, ParamError, load_params, read_raw

KERNEL_NAME = "rlbff"
NOTEBOOKS = REPO_ROOT / "notebooks"


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
    """Environment for the kernel: quiet progress, offline hub in smoke, headless plots."""
    env = {
        "RLBFF_PAPERMILL": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if profile == "smoke":
        env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    return env


def parameters_source(values: dict) -> str:
    """The text of a ``parameters`` cell assigning each top-level key of a section."""
    lines = ["# Parameters: the params.yaml section of this stage (papermill overrides them)."]
    for key, value in values.items():
        lines.append(f"{key} = {value!r}")
    return "\n".join(lines)


def section_values(name: str, params_path: Path = REPO_ROOT / "params.yaml") -> dict:
    """The section ``name`` as papermill parameters: every field, defaults filled in."""
    import dataclasses

    cfg = load_params(params_path, sections=[name])[name]
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def _plain(value):
    import dataclasses

    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parameters_cell(nb: dict) -> dict:
    """The one code cell tagged ``parameters`` (raises if there is not exactly one)."""
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected exactly one 'parameters' cell, found {len(cells)}")
    return cells[0]


def sync_notebooks(params_path: Path = REPO_ROOT / "params.yaml") -> list[str]:
    """Rewrite each stage notebook's parameters cell from params.yaml; returns changed names."""
    changed = []
    for name in SECTIONS:
        path = NOTEBOOKS / f"{name}.ipynb"
        if not path.exists():
            continue
        nb = json.loads(path.read_text())
        cell = parameters_cell(nb)
        src = parameters_source(section_values(name, params_path))
        if "".join(cell["source"]) != src:
            cell["source"] = src.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(name)
    return changed


def run_stage(name: str, params_path: Path = REPO_ROOT / "params.yaml", output: Path | None = None,
              overrides: dict | None = None, workdir: Path = REPO_ROOT) -> Path:
    """Validate params, execute the stage notebook, return the executed notebook's path.

    The notebook runs with ``workdir`` as its current folder (its relative inputs
    and outputs resolve there); tests point it at a temporary copy.
    """
    import papermill

    params = load_params(params_path)  # every section: fail fast, naming the key
    if name not in SECTIONS:
        raise SystemExit(f"unknown stage {name!r} (known: {', '.join(SECTIONS)})")
    values = section_values(name, params_path)
    values.update(overrides or {})
    source = NOTEBOOKS / f"{name}.ipynb"
    output = output or Path(workdir) / "outputs" / "notebooks" / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.stem + ".partial.ipynb")
    failed = output.with_name(output.stem + ".failed.ipynb")
    os.environ.update(stage_env(params["profile"]))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    try:
        papermill.execute_notebook(
            str(source), str(partial), parameters=values, kernel_name=ensure_kernel(),
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
        export_markdown(output, Path(workdir) / markdown)
    return output


def export_markdown(notebook: Path, target: Path) -> Path:
    """Write an executed notebook as Markdown (nbconvert's ``MarkdownExporter``, code cells'
    input left out), atomically. A source notebook asks for it with the metadata
    ``{"rlbff": {"markdown": "reports/NAME.md"}}``; image links in its outputs are kept as
    written (relative to ``target``), so figures are referenced, not embedded."""
    import nbformat
    from nbconvert import MarkdownExporter

    from rlbff_lib.core.io import atomic_write_text

    exporter = MarkdownExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
    atomic_write_text(target, re.sub(r"\n{3,}", "\n\n", body).strip() + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlbff_lib.core.stage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute one stage's notebook")
    r.add_argument("name", choices=sorted(SECTIONS))
    r.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    c = sub.add_parser("check", help="validate params.yaml")
    c.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    s = sub.add_parser("sync", help="rewrite the notebooks' parameters cells from params.yaml")
    s.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    args = ap.parse_args(argv)
    try:
        if args.cmd == "check":
            p = load_params(args.params)
            print(f"{args.params}: ok (profile {p['profile']}, sections {', '.join(SECTIONS)})")
        elif args.cmd == "sync":
            print("updated:", ", ".join(sync_notebooks(Path(args.params))) or "nothing")
        else:
            print(f"executed {run_stage(args.name, Path(args.params))}")
    except ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
