"""The SLURM launcher: node lists expanded as `scontrol show hostnames` does, and every command of a 4-node
allocation of the full profile rendered from a fake SLURM environment (ranks, addresses, process counts,
servers on their own nodes), the per-node entry point, the forwarder, and the health wait."""
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from rlbff_lib.core.params import read_raw
from rlbff_lib.training import slurm as S

REPO = Path(__file__).resolve().parents[2]
ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-[001-002,017],gpu-b[9-10]", "SLURM_JOB_NUM_NODES": "5",
       "SLURMD_NODENAME": "gpu-001", "SLURM_NODEID": "0"}


def full_params() -> dict:
    text = (REPO / "params.yaml").read_text().replace("profile: smoke", "profile: full", 1)
    return read_raw_from_text(text)


def read_raw_from_text(text: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "profiles").mkdir()
        (Path(d) / "params.yaml").write_text(text)
        (Path(d) / "profiles" / "full.yaml").write_text((REPO / "profiles" / "full.yaml").read_text())
        raw = read_raw(Path(d) / "params.yaml")
    assert raw["profile"] == "full"
    return raw


@pytest.mark.parametrize("spec,hosts", [
    ("tux[1,3-5]", ["tux1", "tux3", "tux4", "tux5"]),                     # the scontrol man page's example
    ("node[08-11],login", ["node08", "node09", "node10", "node11", "login"]),
    ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
    ("a1,b[7]-ib", ["a1", "b7-ib"]),
])
def test_expand_nodelist(spec, hosts):
    assert S.expand_nodelist(spec) == hosts


def test_bad_node_lists_are_named():
    for spec in ("gpu[1-", "gpu[3-1]", "gpu]"):
        with pytest.raises(ValueError, match="node list"):
            S.expand_nodelist(spec)


def test_allocation_from_the_environment():
    alloc = S.Allocation.from_env(ENV)
    assert alloc.nodes == ["gpu-001", "gpu-002", "gpu-017", "gpu-b9", "gpu-b10"] and alloc.job_id == 4242
    with pytest.raises(RuntimeError, match="SLURM_JOB_NUM_NODES=4"):
        S.Allocation.from_env({**ENV, "SLURM_JOB_NUM_NODES": "4"})
    with pytest.raises(RuntimeError, match="not inside a SLURM allocation"):
        S.Allocation.from_env({})


def test_four_node_allocation_renders_every_command_of_the_full_profile():
    env = {**ENV, "SLURM_JOB_NODELIST": "gpu-[001-004]", "SLURM_JOB_NUM_NODES": "4"}
    alloc, raw, cluster = S.Allocation.from_env(env), full_params(), S.Cluster.read()
    port = 29500 + 4242 % 1000
    # alignment: 2 training nodes (16 processes) + the GenRM judge + the BT scorer on nodes of their own
    r = S.render(S.plan("alignment", raw, cluster, alloc), raw, cluster, alloc)
    assert r["train_nodes"] == ["gpu-001", "gpu-002"] and r["master_addr"] == "gpu-001" and r["master_port"] == port
    assert [(s["name"], s["node"]) for s in r["servers"]] == [("judge", "gpu-003"), ("scorer", "gpu-004")]
    judge = r["servers"][0]["command"]
    assert judge[:judge.index("vllm")] == ["srun", "--overlap", "--kill-on-bad-exit=1", "--nodes=1", "--ntasks=1",
                                           "--ntasks-per-node=1", "--nodelist=gpu-003"]
    v = judge[judge.index("vllm"):]
    assert v[:3] == ["vllm", "serve", "models/reward_models/genrm"]
    assert v[v.index("--served-model-name") + 1] == raw["alignment"]["grpo"]["reward"]["judge_model"]
    assert f":{v[v.index('--port') + 1]}/" in raw["alignment"]["grpo"]["reward"]["judge_base_url"]
    assert v[-4:] == ["--max-logprobs", "20", "--logprobs-mode", "raw_logprobs"]   # the judgement's top-20 log-probs
    assert r["servers"][0]["health"] == "http://gpu-003:8001/v1/models"
    scorer = r["servers"][1]["command"]
    assert "rlbff_lib.reward_models.serve" in scorer and scorer[scorer.index("--kind") + 1] == "bt"
    assert r["servers"][1]["health"] == "http://gpu-004:8002/health"
    assert r["forward"][-2:] == ["8001=gpu-003:8001", "8002=gpu-004:8002"]
    assert "--nodelist=gpu-001,gpu-002" in r["forward"]
    for rank, host in enumerate(["gpu-001", "gpu-002"]):
        cmd = r["per_node_accelerate"][host]
        arg = lambda k: cmd[cmd.index(k) + 1]  # noqa: E731
        assert (arg("--machine_rank"), arg("--num_machines"), arg("--num_processes")) == (str(rank), "2", "16")
        assert (arg("--main_process_ip"), arg("--main_process_port")) == ("gpu-001", str(port))
        assert arg("--deepspeed_config_file") == str(REPO / "configs" / "deepspeed" / "zero3.json")
    assert r["env"] == {"MASTER_ADDR": "gpu-001", "MASTER_PORT": str(port), S.ENV_NODES: "gpu-001,gpu-002",
                        S.ENV_GPUS: "8", S.ENV_PORT: str(port)}
    # reward_models: 2 training nodes, no server (GRPO's vLLM is colocated); principles: the extractor on node 2
    rm = S.render(S.plan("reward_models", raw, cluster, alloc), raw, cluster, alloc)
    assert rm["train_nodes"] == ["gpu-001", "gpu-002"] and rm["servers"] == []
    pr = S.render(S.plan("principles", raw, cluster, alloc), raw, cluster, alloc)
    assert pr["train_nodes"] == ["gpu-001"] and [(s["name"], s["node"]) for s in pr["servers"]] == [
        ("extraction", "gpu-002")]
    assert "per_node_accelerate" not in pr and S.ENV_NODES not in pr["env"]


def test_too_few_nodes_and_a_wrong_process_count_are_named():
    env = {**ENV, "SLURM_JOB_NODELIST": "gpu-[001-003]", "SLURM_JOB_NUM_NODES": "3"}
    alloc, raw, cluster = S.Allocation.from_env(env), full_params(), S.Cluster.read()
    with pytest.raises(RuntimeError, match=r"alignment: needs 2 training node\(s\).*= 4 nodes.*sbatch --nodes=4"):
        S.plan("alignment", raw, cluster, alloc)
    with pytest.raises(RuntimeError, match="num_processes 16: the allocation gives 3 training nodes x 8 GPUs = 24"):
        S.accelerate_args("multi_node_zero3.yaml", ["a", "b", "c"], 0, 8, 29500, 16)


def test_launch_command_uses_srun_inside_the_launcher_and_stops_outside(tmp_path):
    tail = ["-m", "rlbff_lib.reward_models.scalar", "train", "--config", "job.json"]
    env = {S.ENV_NODES: "gpu-001,gpu-002", S.ENV_GPUS: "8", S.ENV_PORT: "29742"}
    cmd = S.launch_command("multi_node_zero3.yaml", 16, tail, env)
    assert cmd[:7] == ["srun", "--overlap", "--kill-on-bad-exit=1", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                       "--nodelist=gpu-001,gpu-002"] and "--gpus-per-node=8" in cmd
    assert cmd[cmd.index("--") + 1:] == tail and "node" in cmd
    # each node's task: its rank from its host name, then accelerate launch (printed here instead of run)
    inner = cmd[cmd.index(sys.executable):]
    for host, rank in (("gpu-002", "1"), ("gpu-001", "0")):
        out = subprocess.run(inner[:inner.index("--")] + ["--print"] + inner[inner.index("--"):], cwd=REPO,
                             env={**os.environ, "SLURMD_NODENAME": host}, capture_output=True, text=True, check=True)
        printed = out.stdout.split()
        assert printed[printed.index("--machine_rank") + 1] == rank and printed[-len(tail):] == tail
        assert printed[printed.index("--num_processes") + 1] == "16"
    # outside SLURM: a clear error instead of a placeholder address retried forever
    with pytest.raises(RuntimeError, match="needs --main_process_ip"):
        S.launch_command("multi_node_zero3.yaml", None, tail, {})
    # one machine: the plain accelerate command, unchanged
    assert S.launch_command("cpu.yaml", 2, tail, env) == [sys.executable, "-m", "accelerate.commands.launch",
                                                          "--config_file", str(REPO / "configs" / "accelerate" /
                                                                               "cpu.yaml"), "--num_processes", "2", *tail]


def _http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"data": [{"id": "genrm"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_forwarder_and_health_wait(tmp_path):
    import socket

    server = _http_server()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "rlbff_lib.training.slurm", "forward",
                             f"{free}=127.0.0.1:{server.server_address[1]}"], cwd=REPO)
    try:
        waited = S.wait_healthy(f"http://127.0.0.1:{free}/v1/models", 30, 0.2, proc)
        assert waited < 30
        with urllib.request.urlopen(f"http://127.0.0.1:{free}/v1/models") as resp:
            assert json.loads(resp.read())["data"][0]["id"] == "genrm"
    finally:
        proc.terminate()
        proc.wait()
        server.shutdown()
    with pytest.raises(RuntimeError, match="no healthy answer after 0 s"):
        S.wait_healthy(f"http://127.0.0.1:{free}/v1/models", 0, 0.1)
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(RuntimeError, match="exited with code 3"):
        S.wait_healthy(f"http://127.0.0.1:{free}/v1/models", 30, 0.1, dead)


def test_sbatch_script_is_valid_bash_and_runs_the_launcher():
    script = REPO / "configs" / "slurm" / "rlbff.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "python -m rlbff_lib.training.slurm run" in text and "#SBATCH --nodes=4" in text


FAKE_SRUN = """#!/bin/bash
# srun stand-in: drops srun's options, runs the command here as the first node of --nodelist
node=""
while [[ "$1" == --* ]]; do case "$1" in --nodelist=*) node="${1#--nodelist=}";; esac; shift; done
export FAKE_NODE="${node%%,*}" SLURMD_NODENAME="${node%%,*}"
exec "$@"
"""
FAKE_VLLM = """#!{python}
# `vllm serve` stand-in: answers GET /v1/models on its node's address (FAKE_NODE) and --port
import http.server, json, os, sys
port, name = int(sys.argv[sys.argv.index("--port") + 1]), sys.argv[sys.argv.index("--served-model-name") + 1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"data": [{{"id": name}}]}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer((os.environ["FAKE_NODE"], port), H).serve_forever()
"""
STAGE = """import json, os, sys, urllib.request
url = "http://127.0.0.1:{port}/v1/models"   # what the stage's parameters name: the forwarder on this node
seen = {{k: os.environ.get(k) for k in ("MASTER_ADDR", "RLBFF_SLURM_TRAIN_NODES", "RLBFF_SLURM_GPUS_PER_NODE")}}
seen["judge"] = json.loads(urllib.request.urlopen(url, timeout=10).read())["data"][0]["id"]
open(sys.argv[1], "w").write(json.dumps(seen))
"""


def test_run_brings_servers_up_forwards_them_and_runs_the_stage(tmp_path, monkeypatch):
    import socket

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("vllm", FAKE_VLLM.format(python=sys.executable)),
                       ("dvc", "#!/bin/bash\necho '{\"alignment\": [\"changed deps\"]}'\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = {"alignment": {"accelerate_config": "multi_node_zero3.yaml", "num_processes": 16,
                         "grpo": {"reward": {"judge_base_url": f"http://127.0.0.1:{port}/v1"}}}}
    cluster = S.Cluster(gpus_per_node=8, health_timeout_s=60, health_interval_s=0.2, stages=["alignment"],
                        servers=[S.Server(name="judge", stage="alignment", kind="vllm", model="m",
                                          served_model_name="genrm", port=port)])
    alloc = S.Allocation(7, ["127.0.0.3", "127.0.0.4", "127.0.0.2"], "127.0.0.3")   # loopback addresses as nodes
    (tmp_path / "stage.py").write_text(STAGE.format(port=port))
    out = tmp_path / "seen.json"
    S.run(["alignment"], raw, cluster, alloc, f"{sys.executable} {tmp_path / 'stage.py'} {out}")
    assert json.loads(out.read_text()) == {"MASTER_ADDR": "127.0.0.3", "RLBFF_SLURM_TRAIN_NODES": "127.0.0.3,127.0.0.4",
                                           "RLBFF_SLURM_GPUS_PER_NODE": "8", "judge": "genrm"}
    with pytest.raises(RuntimeError, match="no healthy answer"):   # the server and the forwarder are gone
        S.wait_healthy(f"http://127.0.0.2:{port}/v1/models", 0, 0.1)
    # a failing stage stops the job, and the servers still go down
    with pytest.raises(SystemExit, match="exited with code 3"):
        S.run(["alignment"], raw, cluster, alloc, f"{sys.executable} -c 'raise SystemExit(3)'")
    with pytest.raises(RuntimeError, match="no healthy answer"):
        S.wait_healthy(f"http://127.0.0.2:{port}/v1/models", 0, 0.1)
