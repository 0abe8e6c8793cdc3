"""One command for a SLURM cluster: each stage's trainers on N nodes, its inference servers on nodes of their own.

    sbatch --nodes=4 configs/slurm/rlbff.sbatch                 # the pipeline at paper scale (profile: full)
    python -m rlbff_lib.training.slurm plan [STAGE ...]         # inside an allocation: who runs what, no side effect
    python -m rlbff_lib.training.slurm run [STAGE ...]          # what the sbatch script runs (default: every stage)

Inside an allocation, ``run`` takes the stages in order (``configs/slurm/cluster.yaml``). For each stage it
lays the allocation's nodes out (:func:`plan`): the first ``ceil(num_processes / gpus_per_node)`` nodes train
(the batch host, where the stage's notebook runs, is the first of them), the next ones run the inference
servers the stage needs, i.e. those whose local port its parameters send requests to (``vllm serve`` for the
GenRM judge and a self-hosted extractor, ``trl vllm-serve`` for GRPO's server mode, the scoring service of
:mod:`rlbff_lib.reward_models.serve` for a served BT / scalar reward). Each server is started with ``srun`` on
its node and polled until it answers (``GET /v1/models``, ``/health`` for the scoring service); every training
node then forwards ``127.0.0.1:<port>`` to the server node (:func:`forward`), so the parameters name only
``127.0.0.1`` and the same profile runs on one machine or a cluster. Then ``dvc repro --single-item STAGE``
runs the stage (skipped when ``dvc status`` finds it up to date); servers and forwarders stop after it.

When a trainer starts (:func:`rlbff_lib.training.launch.launch` calls :func:`launch_command`) under an
accelerate config for several machines and ``run`` has exported the training nodes (``RLBFF_SLURM_*``), the
command becomes ``srun`` over the training nodes, one task per node, each running :func:`node_main`: its rank is
its host name's place in the node list, and it executes ``accelerate launch --num_machines N --num_processes
N×G --machine_rank R --main_process_ip <first node> --main_process_port <port>``. Ranks and addresses come
from SLURM's environment: ``SLURM_JOB_NODELIST`` (expanded as ``scontrol show hostnames`` does,
:func:`expand_nodelist`), ``SLURM_JOB_NUM_NODES``, ``SLURM_JOB_ID`` (the port: ``master_port_base`` + id mod
1000), ``SLURMD_NODENAME`` / ``SLURM_NODEID``. Outside SLURM a multi-machine config stops at once, naming the
missing ``--main_process_ip``, instead of retrying a placeholder address.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from rlbff_lib.core.params import REPO_ROOT

CLUSTER = REPO_ROOT / "configs" / "slurm" / "cluster.yaml"
ACCELERATE_CONFIGS = REPO_ROOT / "configs" / "accelerate"
ENV_NODES, ENV_GPUS, ENV_PORT = "RLBFF_SLURM_TRAIN_NODES", "RLBFF_SLURM_GPUS_PER_NODE", "RLBFF_SLURM_MASTER_PORT"
HEALTH_PATH = {"vllm": "/v1/models", "trl-vllm": "/v1/models", "rlbff-score": "/health"}


# ------------------------------------------------------------------ SLURM's environment


def expand_nodelist(spec: str) -> list[str]:
    """Host names of a SLURM node list, in order, as ``scontrol show hostnames`` prints them.

    ``gpu[01-03,07],login1`` → gpu01, gpu02, gpu03, gpu07, login1; several bracket groups multiply
    (``r[1-2]n[1-2]`` → r1n1, r1n2, r2n1, r2n2); a range keeps its zero padding.
    """
    items, depth, start = [], 0, 0
    for i, ch in enumerate(spec):
        depth += ch == "["
        depth -= ch == "]"
        if depth < 0:
            raise ValueError(f"node list {spec!r}: unbalanced ']'")
        if ch == "," and depth == 0:
            items.append(spec[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"node list {spec!r}: unbalanced '['")
    items.append(spec[start:])
    hosts: list[str] = []
    for item in filter(None, (s.strip() for s in items)):
        hosts += _expand_one(item, spec)
    return hosts


def _expand_one(item: str, spec: str) -> list[str]:
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
    if not m:
        return [item]
    prefix, body, rest = m.groups()
    values = []
    for part in body.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
                raise ValueError(f"node list {spec!r}: bad range {part!r}")
            values += [str(k).zfill(len(lo)) for k in range(int(lo), int(hi) + 1)]
        elif part.isdigit():
            values.append(part)
        else:
            raise ValueError(f"node list {spec!r}: bad entry {part!r}")
    return [prefix + v + tail for v in values for tail in _expand_one(rest, spec)]


@dataclass
class Allocation:
    """A SLURM job's nodes (host names, in order), its id and this node's host name."""

    job_id: int
    nodes: list[str]
    host: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Allocation":
        env = os.environ if env is None else env
        spec = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not spec or "SLURM_JOB_ID" not in env:
            raise RuntimeError("not inside a SLURM allocation (SLURM_JOB_ID / SLURM_JOB_NODELIST unset): "
                               "submit with `sbatch configs/slurm/rlbff.sbatch`")
        nodes = expand_nodelist(spec)
        count = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
        if count is not None and int(count) != len(nodes):
            raise RuntimeError(f"SLURM_JOB_NUM_NODES={count} but SLURM_JOB_NODELIST={spec} names {len(nodes)} nodes")
        host = env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
        return cls(int(env["SLURM_JOB_ID"]), nodes, host)


def node_rank(nodes: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """This node's place in ``nodes``: by host name (``SLURMD_NODENAME``), else ``SLURM_NODEID``."""
    env = os.environ if env is None else env
    host = env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    if host in nodes:
        return list(nodes).index(host)
    if "SLURM_NODEID" in env and int(env["SLURM_NODEID"]) < len(nodes):
        return int(env["SLURM_NODEID"])
    raise RuntimeError(f"host {host} is not one of the training nodes {','.join(nodes)}")


def master_port(job_id: int, base: int = 29500) -> int:
    """A rendezvous port per job, so two jobs sharing a node do not collide."""
    return base + job_id % 1000


# ------------------------------------------------------------------ the layout of one stage


@dataclass
class Server:
    """An inference server of ``configs/slurm/cluster.yaml`` (see the file for the fields)."""

    name: str
    stage: str
    kind: str
    model: str
    port: int
    nodes: int = 1
    served_model_name: str | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    scorer_kind: str = "scalar"
    gpus_per_replica: int = 1
    batch_size: int = 8
    max_length: int = 4096
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in HEALTH_PATH:
            raise ValueError(f"servers.{self.name}.kind: must be one of {list(HEALTH_PATH)}, got {self.kind!r}")
        if self.nodes != 1:
            raise ValueError(f"servers.{self.name}.nodes: one node per server (a server over several nodes needs "
                             f"Ray, which this launcher does not set up), got {self.nodes}")


@dataclass
class Cluster:
    gpus_per_node: int = 8
    gpu: str = "H200"
    master_port_base: int = 29500
    health_timeout_s: float = 3600.0
    health_interval_s: float = 10.0
    stages: list[str] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)

    @classmethod
    def read(cls, path: str | Path = CLUSTER) -> "Cluster":
        raw = yaml.safe_load(Path(path).read_text()) or {}
        servers = [Server(**s) for s in raw.pop("servers", [])]
        return cls(**raw, servers=servers)


@dataclass
class StagePlan:
    """Who runs what for one stage: training nodes (the first is the batch host) and server nodes."""

    stage: str
    train_nodes: list[str]
    servers: list[tuple[Server, str]]  # (server, its node)
    accelerate_config: str | None
    num_processes: int | None

    @property
    def nodes_needed(self) -> int:
        return len(self.train_nodes) + len(self.servers)


def _lookup(raw: dict, dotted: str):
    value = raw
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(dotted)
        value = value[key]
    return value


def resolve_model(server: Server, raw: dict) -> str:
    """The server's model, with ``{section.key}`` replaced by that parameter's value."""
    return re.sub(r"\{([a-z_.]+)\}", lambda m: str(_lookup(raw, m.group(1))), server.model)


def needed_servers(stage: str, raw: dict, cluster: Cluster) -> list[Server]:
    """The cluster's servers of ``stage`` whose local port the stage's parameters send requests to."""
    text = json.dumps(raw.get(stage) or {})
    return [s for s in cluster.servers if s.stage == stage and f"127.0.0.1:{s.port}" in text]


def accelerate_file(name: str) -> Path:
    path = Path(name)
    return path if path.is_file() else ACCELERATE_CONFIGS / name


def train_processes(stage: str, raw: dict) -> tuple[str | None, int | None, int]:
    """(accelerate config, num_processes, machines) of a stage that launches trainers; (None, None, 1) if none."""
    section = raw.get(stage) or {}
    if "accelerate_config" not in section:
        return None, None, 1
    acc = yaml.safe_load(accelerate_file(section["accelerate_config"]).read_text())
    n = section.get("num_processes") or acc.get("num_processes", 1)
    return section["accelerate_config"], n, int(acc.get("num_machines", 1))


def plan(stage: str, raw: dict, cluster: Cluster, alloc: Allocation) -> StagePlan:
    """Lay the allocation out for ``stage``; raises naming the nodes it lacks."""
    config, n, machines = train_processes(stage, raw)
    train = math.ceil(n / cluster.gpus_per_node) if machines > 1 else 1
    servers = needed_servers(stage, raw, cluster)
    need = train + sum(s.nodes for s in servers)
    if need > len(alloc.nodes):
        names = ", ".join(f"{s.name} ({s.nodes})" for s in servers) or "none"
        raise RuntimeError(f"stage {stage}: needs {train} training node(s) + servers [{names}] = {need} nodes; the "
                           f"allocation has {len(alloc.nodes)} ({','.join(alloc.nodes)}): sbatch --nodes={need}")
    if alloc.host != alloc.nodes[0]:
        raise RuntimeError(f"run on the allocation's first node {alloc.nodes[0]} (the batch host), not {alloc.host}")
    placed, k = [], train
    for s in servers:
        placed.append((s, alloc.nodes[k]))
        k += s.nodes
    return StagePlan(stage, alloc.nodes[:train], placed, config, n if machines > 1 else None)


# ------------------------------------------------------------------ commands


def accelerate_args(config: str | Path, train_nodes: Sequence[str], rank: int, gpus_per_node: int, port: int,
                    num_processes: int | None = None) -> list[str]:
    """``accelerate launch`` of one training node: machines, processes, rank and the main node's address.

    num_processes: the stage's setting; it must equal nodes × GPUs per node (the global batch depends on it).
    A relative ``deepspeed_config_file`` of the config is passed as an absolute path.
    """
    total = len(train_nodes) * gpus_per_node
    if num_processes is not None and num_processes != total:
        raise RuntimeError(f"num_processes {num_processes}: the allocation gives {len(train_nodes)} training nodes x "
                           f"{gpus_per_node} GPUs = {total}; change num_processes (and gradient_accumulation_steps, "
                           "to keep the global batch) or the node count")
    path = accelerate_file(str(config))
    args = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path),
            "--num_machines", str(len(train_nodes)), "--num_processes", str(total), "--machine_rank", str(rank),
            "--main_process_ip", train_nodes[0], "--main_process_port", str(port)]
    return args + deepspeed_file_args(path)


def deepspeed_file_args(path: Path) -> list[str]:
    ds = (yaml.safe_load(path.read_text()).get("deepspeed_config") or {}).get("deepspeed_config_file")
    if ds and not Path(ds).is_absolute():
        return ["--deepspeed_config_file", str(REPO_ROOT / ds)]
    return []


def srun(nodes: Sequence[str], command: Sequence[str], gpus_per_node: int | None = None) -> list[str]:
    """``srun`` of one task per node on ``nodes`` (overlapping the steps already running there)."""
    cmd = ["srun", "--overlap", "--kill-on-bad-exit=1", f"--nodes={len(nodes)}", f"--ntasks={len(nodes)}",
           "--ntasks-per-node=1", f"--nodelist={','.join(nodes)}"]
    if gpus_per_node:
        cmd.append(f"--gpus-per-node={gpus_per_node}")
    return cmd + list(command)


def launch_command(config: str | Path, num_processes: int | None, tail: Sequence[str],
                   env: Mapping[str, str] | None = None) -> list[str]:
    """The command :func:`rlbff_lib.training.launch.launch` runs: ``accelerate launch ... <tail>`` here, or,
    for a multi-machine config inside :func:`run`, ``srun`` of :func:`node_main` over the training nodes."""
    env = os.environ if env is None else env
    path = accelerate_file(str(config))
    acc = yaml.safe_load(path.read_text()) or {}
    machines = int(acc.get("num_machines", 1))
    if machines > 1 and env.get(ENV_NODES):
        nodes = env[ENV_NODES].split(",")
        inner = [sys.executable, "-m", "rlbff_lib.training.slurm", "node", "--config", str(path),
                 "--nodes", env[ENV_NODES], "--gpus-per-node", env[ENV_GPUS], "--port", env[ENV_PORT]]
        if num_processes is not None:
            inner += ["--num-processes", str(num_processes)]
        return srun(nodes, inner + ["--", *tail], int(env[ENV_GPUS]))
    if machines > 1 and not acc.get("main_process_ip"):
        raise RuntimeError(f"{path.name}: a {machines}-machine config needs --main_process_ip and a rank per machine: "
                           "run inside SLURM through `sbatch configs/slurm/rlbff.sbatch` (rlbff_lib.training.slurm), "
                           "or use multi_gpu_zero3.yaml on one machine")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path)]
    if num_processes is not None:
        cmd += ["--num_processes", str(num_processes)]
    return cmd + deepspeed_file_args(path) + list(tail)


def server_command(server: Server, raw: dict) -> list[str]:
    """The command that starts ``server`` on its node, listening on every interface."""
    model = resolve_model(server, raw)
    if server.kind == "vllm":
        cmd = ["vllm", "serve", model, "--host", "0.0.0.0", "--port", str(server.port),
               "--tensor-parallel-size", str(server.tensor_parallel_size),
               "--data-parallel-size", str(server.data_parallel_size),
               "--gpu-memory-utilization", str(server.gpu_memory_utilization)]
        if server.served_model_name:
            cmd += ["--served-model-name", server.served_model_name]
        if server.max_model_len:
            cmd += ["--max-model-len", str(server.max_model_len)]
        return cmd + list(server.extra_args)
    if server.kind == "trl-vllm":
        cmd = ["trl", "vllm-serve", "--model", model, "--host", "0.0.0.0", "--port", str(server.port),
               "--tensor_parallel_size", str(server.tensor_parallel_size),
               "--data_parallel_size", str(server.data_parallel_size),
               "--gpu_memory_utilization", str(server.gpu_memory_utilization)]
        if server.max_model_len:
            cmd += ["--max_model_len", str(server.max_model_len)]
        return cmd + list(server.extra_args)
    return [sys.executable, "-m", "rlbff_lib.reward_models.serve", "--kind", server.scorer_kind, "--model", model,
            "--host", "0.0.0.0", "--port", str(server.port), "--gpus-per-replica", str(server.gpus_per_replica),
            "--batch-size", str(server.batch_size), "--max-length", str(server.max_length), *server.extra_args]


def health_url(server: Server, host: str) -> str:
    return f"http://{host}:{server.port}{HEALTH_PATH[server.kind]}"


def forward_command(p: StagePlan) -> list[str]:
    """Forwarders on every training node: 127.0.0.1:<port> → <server node>:<port>."""
    pairs = [f"{s.port}={host}:{s.port}" for s, host in p.servers]
    return srun(p.train_nodes, [sys.executable, "-m", "rlbff_lib.training.slurm", "forward", *pairs])


def render(p: StagePlan, raw: dict, cluster: Cluster, alloc: Allocation) -> dict:
    """Every command of a stage, as ``plan`` prints it; the per-node accelerate lines show the ranks."""
    port = master_port(alloc.job_id, cluster.master_port_base)
    out = {"stage": p.stage, "train_nodes": p.train_nodes, "master_addr": p.train_nodes[0], "master_port": port,
           "servers": [{"name": s.name, "node": host, "command": srun([host], server_command(s, raw)),
                        "health": health_url(s, host)} for s, host in p.servers]}
    if p.servers:
        out["forward"] = forward_command(p)
    if p.accelerate_config and p.num_processes is not None:
        out["per_node_accelerate"] = {
            host: accelerate_args(p.accelerate_config, p.train_nodes, r, cluster.gpus_per_node, port, p.num_processes)
            for r, host in enumerate(p.train_nodes)}
    out["env"] = stage_env(p, cluster, port)
    return out


def stage_env(p: StagePlan, cluster: Cluster, port: int) -> dict[str, str]:
    env = {"MASTER_ADDR": p.train_nodes[0], "MASTER_PORT": str(port)}
    if p.num_processes is not None:
        env.update({ENV_NODES: ",".join(p.train_nodes), ENV_GPUS: str(cluster.gpus_per_node), ENV_PORT: str(port)})
    return env


# ------------------------------------------------------------------ running


def wait_healthy(url: str, timeout_s: float, interval_s: float, proc: subprocess.Popen | None = None) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited. Raises when ``proc`` exits first or
    the time is up (naming the URL and the last error)."""
    start, last = time.monotonic(), "no answer yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=min(10.0, interval_s + 5)) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as e:
            last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"{url}: no healthy answer after {timeout_s:.0f} s (last: {last})")
        time.sleep(interval_s)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def stage_up_to_date(stage: str) -> bool:
    res = subprocess.run(["dvc", "status", "--json", stage], capture_output=True, text=True, cwd=REPO_ROOT)
    return res.returncode == 0 and json.loads(res.stdout or "{}") == {}


def run(stages: Sequence[str], raw: dict, cluster: Cluster, alloc: Allocation, command: str) -> None:
    """Each stage in turn: its servers up and healthy, forwarders on the training nodes, the stage, all down."""
    for stage in stages:
        p = plan(stage, raw, cluster, alloc)
        if stage_up_to_date(stage):
            print(f"[slurm] {stage}: up to date", flush=True)
            continue
        r = render(p, raw, cluster, alloc)
        procs: list[subprocess.Popen] = []
        try:
            for (s, _), info in zip(p.servers, r["servers"]):  # all start at once, then each is waited for
                print(f"[slurm] {stage}: {s.name} on {info['node']}: {shlex.join(info['command'])}", flush=True)
                procs.append(subprocess.Popen(info["command"], cwd=REPO_ROOT))
            for (s, _), info, proc in zip(p.servers, r["servers"], procs):
                waited = wait_healthy(info["health"], cluster.health_timeout_s, cluster.health_interval_s, proc)
                print(f"[slurm] {stage}: {s.name} healthy after {waited:.0f} s", flush=True)
            if p.servers:
                procs.append(subprocess.Popen(r["forward"], cwd=REPO_ROOT))
                for s, _ in p.servers:
                    wait_healthy(health_url(s, "127.0.0.1"), 120, 1.0, procs[-1])
            cmd = command.format(stage=stage)
            print(f"[slurm] {stage}: {cmd} (training nodes {','.join(p.train_nodes)})", flush=True)
            rc = subprocess.run(cmd, shell=True, cwd=REPO_ROOT, env={**os.environ, **r["env"]}).returncode
            if rc:
                raise SystemExit(f"[slurm] {stage}: `{cmd}` exited with code {rc}")
        finally:
            _stop(procs)


def node_main(args) -> int:
    """One training node: find its rank, then run (exec) its ``accelerate launch``."""
    nodes = args.nodes.split(",")
    rank = node_rank(nodes)
    cmd = accelerate_args(args.config, nodes, rank, args.gpus_per_node, args.port, args.num_processes) + args.tail
    if args.print:
        print(shlex.join(cmd))
        return 0
    os.environ.update({"MASTER_ADDR": nodes[0], "MASTER_PORT": str(args.port)})
    os.execvp(cmd[0], cmd)
    return 1  # not reached


# ------------------------------------------------------------------ forwarding


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _serve_forward(local_port: int, host: str, port: int, ready: asyncio.Event | None = None):
    async def handle(lr: asyncio.StreamReader, lw: asyncio.StreamWriter) -> None:
        try:
            rr, rw = await asyncio.open_connection(host, port)
        except OSError:
            lw.close()
            return
        await asyncio.gather(_pipe(lr, rw), _pipe(rr, lw))
        for w in (rw, lw):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", local_port)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def forward(pairs: Sequence[str]) -> None:
    """Serve ``LOCAL_PORT=HOST:PORT`` forwards on 127.0.0.1 until killed."""
    targets = []
    for pair in pairs:
        m = re.match(r"^(\d+)=([^:\s]+):(\d+)$", pair)
        if not m:
            raise SystemExit(f"forward: {pair!r}: expected LOCAL_PORT=HOST:PORT")
        targets.append((int(m.group(1)), m.group(2), int(m.group(3))))

    async def main() -> None:
        await asyncio.gather(*(_serve_forward(*t) for t in targets))

    asyncio.run(main())


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlbff_lib.training.slurm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("plan", "run"):
        p = sub.add_parser(name, help="print the layout and commands" if name == "plan" else "run the stages")
        p.add_argument("stages", nargs="*", help="stages in order (default: cluster.yaml's stages)")
        p.add_argument("--cluster", default=str(CLUSTER))
        p.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
        p.add_argument("--stage-command", default="dvc repro --single-item {stage}",
                       help="what runs a stage ({stage} is replaced)")
        p.add_argument("--profile", default="full", help="the profile params.yaml must select")
    p = sub.add_parser("node", help="(internal) one training node's accelerate launch")
    p.add_argument("--config", required=True)
    p.add_argument("--nodes", required=True)
    p.add_argument("--gpus-per-node", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--print", action="store_true", help="print the command instead of running it")
    p.add_argument("tail", nargs=argparse.REMAINDER)
    p = sub.add_parser("forward", help="(internal) forward 127.0.0.1 ports to server nodes")
    p.add_argument("pairs", nargs="+", help="LOCAL_PORT=HOST:PORT")
    args = parser.parse_args(argv)
    if args.command == "node":
        args.tail = args.tail[1:] if args.tail[:1] == ["--"] else args.tail
        return node_main(args)
    if args.command == "forward":
        forward(args.pairs)
        return 0
    try:
        return _plan_or_run(args)
    except RuntimeError as e:
        raise SystemExit(f"slurm: {e}") from None


def _plan_or_run(args) -> int:
    from rlbff_lib.core.params import read_raw

    raw = read_raw(args.params)
    if raw.get("profile", "smoke") != args.profile:
        raise SystemExit(f"{args.params}: profile is {raw.get('profile', 'smoke')!r}, not {args.profile!r}: set "
                         f"`profile: {args.profile}` there (the one switch), or pass --profile")
    cluster = Cluster.read(args.cluster)
    alloc = Allocation.from_env()
    stages = args.stages or cluster.stages
    if args.command == "plan":
        for stage in stages:
            print(json.dumps(render(plan(stage, raw, cluster, alloc), raw, cluster, alloc), indent=1))
        return 0
    run(stages, raw, cluster, alloc, args.stage_command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
