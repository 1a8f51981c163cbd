"""Certificates, node keys, command lines and process handling of the deployment, without a federation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from fedsafe.flower.certs import CertPaths, make_certs, make_node_keys
from fedsafe.flower.command_lines import flower_env, superlink_argv, supernode_argv
from fedsafe.flower.memory import tree_pss_bytes
from fedsafe.flower.processes import ProcessSet, alive, descendants

pytestmark = pytest.mark.timeout(60)


@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("ssh-keygen") is None,
                    reason="needs openssl and ssh-keygen")
def test_certs_chain_and_san(tmp_path):
    paths = make_certs(tmp_path, hosts=["127.0.0.1", "localhost", "fl.example.org"])
    keys = make_node_keys(tmp_path, 2)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(paths.ca), str(paths.server_cert)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(paths.server_cert), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text and "DNS:fl.example.org" in text
    assert [k.name for k in keys] == ["node_000", "node_001"]
    assert paths.node_pub(1).read_text().startswith("ecdsa-sha2-nistp384 ")
    assert oct(paths.server_key.stat().st_mode & 0o777) == "0o600"
    assert CertPaths(tmp_path).node_keys() == [0, 1]
    # existing files are kept
    before = paths.ca.read_bytes()
    make_certs(tmp_path)
    assert paths.ca.read_bytes() == before


def test_command_lines(tmp_path):
    certs = CertPaths(tmp_path)
    link = superlink_argv(host="127.0.0.1", port=9000, database=tmp_path / "db", certs=certs)
    assert "--enable-supernode-auth" in link and "--insecure" not in link
    assert link[link.index("--ssl-certfile") + 1] == str(certs.server_cert)
    assert "--disable-runtime-dependency-installation" in link
    with pytest.raises(ValueError, match="needs TLS"):
        superlink_argv(host="127.0.0.1", port=9000, database=None, certs=None)
    sim = superlink_argv(host="127.0.0.1", port=9000, database=None, certs=None, supernode_auth=False,
                         simulation=True)
    assert "--insecure" in sim and "--simulation" in sim
    node = supernode_argv(superlink="127.0.0.1:9000", port=9100, partition=2, num_partitions=3, ca=certs.ca,
                          key=certs.node_key(2))
    assert node[node.index("--node-config") + 1] == "partition-id=2 num-partitions=3"
    assert node[node.index("--auth-supernode-private-key") + 1] == str(certs.node_key(2))
    with pytest.raises(ValueError, match="partition"):
        supernode_argv(superlink="x:1", port=1, partition=3, num_partitions=3, ca=None, key=None)
    cpu = supernode_argv(superlink="x:1", port=1, partition=0, num_partitions=3, ca=None, key=None, device="cpu")
    assert cpu[cpu.index("--node-config") + 1] == 'partition-id=0 num-partitions=3 device="cpu"'


def test_a_node_with_a_device_it_does_not_have_is_refused(monkeypatch):
    import torch

    from fedsafe.device import DeviceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no usable CUDA device"):
        supernode_argv(superlink="x:1", port=1, partition=0, num_partitions=3, ca=None, key=None, device="cuda")


def test_env_is_private_and_offline(tmp_path):
    env = flower_env(tmp_path, threads=1, base={"PATH": "/usr/bin"})
    assert env["FLWR_HOME"] == str(tmp_path)
    assert env["FLWR_TELEMETRY_ENABLED"] == "0" and env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_process_set_stops_processes_and_their_detached_children(tmp_path):
    # A parent that starts a child in a session of its own (as Flower does), then sleeps.
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
            "time.sleep(60)")
    with ProcessSet(grace=2.0) as procs:
        p = procs.start("parent", [sys.executable, "-c", code], env=dict(os.environ), log_path=tmp_path / "p.log")
        deadline = time.monotonic() + 10
        while not descendants(p.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        kids = descendants(p.pid)
        assert kids and tree_pss_bytes(p.pid) > 0
    assert not p.running()
    deadline = time.monotonic() + 20
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(k) for k in kids)
