"""Integration on 127.0.0.1: a SuperLink with TLS and SuperNode authentication, 3 registered SuperNodes (one per
partition) run 2 rounds of the tiny config and leave the same run directory as the in-process simulator; a node
with an unregistered key is refused, and so is a plaintext node. Every process is stopped by its PID, also when the
test fails (ProcessSet), and the test is time-bounded."""

from __future__ import annotations

import shutil
import time

import pytest

pytest.importorskip("flwr", reason="the Flower tests need flwr: pip install -e '.[dev,flower]'")

from fedsafe.flower.app import run_config_for, write_app_project
from fedsafe.flower.certs import make_certs, make_node_keys
from fedsafe.flower.command_lines import (
    flower_env,
    flwr_run,
    free_port,
    register_nodes,
    superlink_argv,
    supernode_argv,
    write_flower_config,
)
from fedsafe.flower.processes import ProcessSet
from fedsafe.runs.layout import RunLayout
from fedsafe.training.trainer import train

from ._helpers import assert_same_run, tiny_config

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("ssh-keygen") is None,
                                reason="needs openssl and ssh-keygen")

HOST = "127.0.0.1"


def _refused(proc, timeout: float) -> str:
    code = proc.wait(timeout)
    log = proc.log_text()
    assert code != 0, f"{proc.name} was not refused:\n{proc.log_tail()}"
    assert "Exit Code: 305" in log, proc.log_tail()  # SUPERNODE_CONNECTION_ERROR
    return log


@pytest.mark.slow  # 105-140 s on 2 shared cores: each message starts a fresh ClientApp process (torch import)
@pytest.mark.timeout(420, method="signal")
def test_tls_authenticated_deployment_on_loopback(tmp_path):
    t0 = time.perf_counter()
    cfg = tiny_config()
    n = cfg.splits.num_clients
    certs = make_certs(tmp_path / "certs", hosts=(HOST, "localhost"))
    make_node_keys(certs.directory, n + 1)  # node n is never registered
    home = tmp_path / "flwr-home"
    env = flower_env(home, threads=1)
    port = free_port(HOST)
    address = f"{HOST}:{port}"
    write_flower_config(home, address, root_certificates=certs.ca)
    app_dir = write_app_project(tmp_path / "app")
    run_dir = tmp_path / "run"

    with ProcessSet() as procs:
        link = procs.start("superlink", superlink_argv(host=HOST, port=port, database=tmp_path / "link.db",
                                                       certs=certs), env=env, log_path=tmp_path / "superlink.log")
        link.wait_port(HOST, port)
        register_nodes([certs.node_pub(i) for i in range(n)], env=env)
        nodes = [procs.start(f"node-{i}", supernode_argv(superlink=address, port=free_port(HOST), partition=i,
                                                         num_partitions=n, ca=certs.ca, key=certs.node_key(i)),
                             env=env, log_path=tmp_path / f"node_{i}.log") for i in range(n)]
        # Intruders, started beside them: an unregistered key (claiming partition 0), and a plaintext node.
        intruder = procs.start("unregistered", supernode_argv(
            superlink=address, port=free_port(HOST), partition=0, num_partitions=n, ca=certs.ca,
            key=certs.node_key(n), max_retries=3, max_wait=30), env=env, log_path=tmp_path / "unregistered.log")
        plaintext = procs.start("plaintext", supernode_argv(
            superlink=address, port=free_port(HOST), partition=1, num_partitions=n, ca=None, key=None,
            max_retries=3, max_wait=30), env=env, log_path=tmp_path / "plaintext.log")

        rc = flwr_run(app_dir, run_config_for(cfg, run_dir=str(run_dir), threads=1, engine="flower-deployment"),
                      env=env, log_path=tmp_path / "flwr_run.log", timeout=300)
        assert rc == 0, (tmp_path / "flwr_run.log").read_text()[-3000:]
        assert all(p.running() for p in nodes), [p.log_tail() for p in nodes if not p.running()]
        assert "Failed to activate SuperNode" in _refused(intruder, 60)
        _refused(plaintext, 60)
    assert not any(p.running() for p in procs.processes)

    rd = RunLayout(run_dir)
    assert rd.is_complete()
    ref = RunLayout(tmp_path / "inproc")
    train(cfg, ref.root)
    assert assert_same_run(ref, rd, atol=1e-5) <= 1e-5
    print(f"\ndeployment test: {time.perf_counter() - t0:.1f} s")
