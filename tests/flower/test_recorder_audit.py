"""The audit of a recorded Flower app (design §13): ``fedsafe audit RUN --model pkg.mod:factory --data
FILE.npz`` (and its Python API) on the recording of the user's own app (``_user_app.py``), with the data sets the
user names; and end to end, the app trained in Flower's simulation engine (Ray, slow), recorded and audited."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("flwr", reason="the Flower tests need flwr: pip install -e '.[dev,flower]'")

from fedsafe.audit.runner import AuditSettings
from fedsafe.cli import app as cli_app
from fedsafe.flower.audit_data import AuditDataError, audit_data_from_arrays, load_audit_data
from fedsafe.flower.recording import audit_recorded, downlink_spread

from ._user_app import (
    MODEL,
    ROUNDS,
    TESTS_DIR,
    N,
    NoisyDownlink,
    UserGrid,
    audit_arrays,
    client_app,
    record,
    server_identity,  # noqa: F401 -- the autouse fixture
    server_main,
    store_of,
    user_server_app,
)

pytestmark = pytest.mark.timeout(300)

QUICK = AuditSettings.of(quick=True, steps=2, eot=(2,), shadows=2, max_shadow_epochs=2, masking=False)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return record(tmp_path_factory.mktemp("recorded") / "run")


def test_audit_data_errors_name_the_file_and_key(tmp_path):
    arrays = audit_arrays()
    del arrays["heldout_y"]
    with pytest.raises(AuditDataError, match="missing heldout_y"):
        audit_data_from_arrays(arrays, origin="a.npz")
    arrays = audit_arrays()
    arrays["test_x_1"] = arrays["test_x_1"] * 3
    with pytest.raises(AuditDataError, match=r"test_x_1: float images must be finite pixels in \[0, 1\]"):
        audit_data_from_arrays(arrays, origin="a.npz")
    arrays = {k: v for k, v in audit_arrays().items() if not k.startswith(("train_", "server_"))}
    with pytest.raises(AuditDataError, match="a.npz: missing train_x_0"):
        audit_data_from_arrays(arrays, origin="a.npz")
    data = audit_data_from_arrays(arrays, origin="a.npz", membership=False)  # --no-membership needs neither
    assert [len(s) for s in data.client_train] == [0] * N and len(data.client_test[2]) == 24
    (tmp_path / "x.npz").write_text("not a zip")
    with pytest.raises(AuditDataError, match="x.npz: not a readable .npz"):
        load_audit_data(tmp_path / "x.npz")


def test_audit_of_a_recording_reports_what_it_used(recorded, tmp_path):
    path = tmp_path / "audit.npz"
    np.savez(path, **audit_arrays())
    s = audit_recorded(recorded, data=load_audit_data(path), data_path=path, settings=QUICK)
    assert s["clients"] == N and s["rounds"] == ROUNDS and s["profile"] == "recorded Flower run"
    assert {a["attack"] for a in s["attacks"]} == {"pgd", "eot-pgd"}
    assert s["attack_notes"][0].startswith("no PGD+CRN: every client received one shared copy")
    assert s["downlink_noise"] == 0.0 and s["recorded"]["downlink_spread"] is None
    assert len(s["membership"]["insider"]["pairs"]) == N * (N - 1)
    used = s["recorded"]["data"]
    assert used["file"] == str(path) and used["members"][0] == "train_x_0 (48 images)"
    assert "heldout_x (40 images)" in s["sentences"][0] and MODEL in s["sentences"][0]
    assert s["learned"] and s["global_acc"] > 0.8  # the square is easy: the federation learned it
    assert json.loads((recorded / "audit" / "audit.json").read_text())["recorded"]["inputs"] == s["recorded"]["inputs"]
    again = audit_recorded(recorded, data=load_audit_data(path), data_path=path, settings=QUICK)
    assert again["cached"]["attacks"] == len(s["attacks"]) and again["membership"]["cached"]
    arrays = audit_arrays()
    arrays["heldout_x"] = arrays["heldout_x"][::-1].copy()  # other audit data: nothing cached may be reused
    np.savez(path, **arrays)
    other = audit_recorded(recorded, data=load_audit_data(path), data_path=path, settings=QUICK)
    assert other["cached"]["attacks"] == 0 and not other["membership"]["cached"]


def test_eot_attacker_knows_the_measured_spread_of_per_client_downlinks(tmp_path):
    run_dir = tmp_path / "run"
    server_main(UserGrid(), run_dir, NoisyDownlink(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=N,
                                                   min_available_nodes=N))
    store = store_of(run_dir)
    spread, t = downlink_spread(store, N)
    # written out with numpy: the per-weight sample variance over the copies (ddof 1), pooled, square root
    copies = [store.load_received(ROUNDS, i) for i in range(N)]
    flat = np.stack([np.concatenate([c[k].numpy().ravel() for k in c]) for c in copies]).astype(np.float64)
    assert t == ROUNDS and spread == pytest.approx(np.sqrt(flat.var(axis=0, ddof=1).mean()), rel=1e-9)
    assert spread == pytest.approx(0.01, rel=0.15)  # NoisyDownlink's std
    path = tmp_path / "audit.npz"
    np.savez(path, **audit_arrays())
    s = audit_recorded(run_dir, data=load_audit_data(path), data_path=path, settings=QUICK)
    assert s["downlink_noise"] == pytest.approx(spread)
    assert [a["noise_std"] for a in s["attacks"] if a["attack"] == "eot-pgd"] == [pytest.approx(spread)]
    assert any(a["start"] == "crn2" for a in s["attacks"])  # the kept per-client copies replay CRN
    assert any(f"s_D = {spread:.3g}" in x for x in s["sentences"])


def test_cli_audits_a_recording_with_the_users_model_and_data(recorded, tmp_path):
    path = tmp_path / "audit.npz"
    np.savez(path, **audit_arrays())
    args = ["audit", str(recorded), "--model", MODEL, "--data", str(path), "--quick", "--steps", "2",
            "--shadows", "2", "--max-shadow-epochs", "1", "--no-masking", "--set", "train.lr=0.01"]
    res = CliRunner().invoke(cli_app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "recorded Flower run" in text and "adam lr 0.01, batch 32" in text
    res = CliRunner().invoke(cli_app, [*args, "--dry-run"])
    assert res.exit_code == 0 and "Estimated cost" in res.output
    res = CliRunner().invoke(cli_app, ["audit", str(recorded)])
    assert res.exit_code == 1 and "name its audit data with --data" in " ".join(res.output.split())
    res = CliRunner().invoke(cli_app, [*args[:6], "--set", "federation.downlink_noise=1"])
    assert res.exit_code == 1 and "takes only train.*" in " ".join(res.output.split())


@pytest.mark.slow
def test_flower_simulation_recorded_and_audited_end_to_end(tmp_path, monkeypatch):
    from flwr.simulation import run_simulation

    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setenv("FLWR_DISABLE_UPDATE_CHECK", "1")
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    monkeypatch.syspath_prepend(TESTS_DIR)  # the Ray workers import the user's app by name
    run_dir = tmp_path / "run"
    backend = {"init_args": {"num_cpus": 2, "_node_ip_address": "127.0.0.1", "include_dashboard": False,
                             "logging_level": "ERROR", "log_to_driver": False},
               "client_resources": {"num_cpus": 1}}
    run_simulation(user_server_app(run_dir), client_app, num_supernodes=N, backend_config=backend)
    store = store_of(run_dir)
    assert store.is_complete() and [r["round"] for r in store.read_json(store.layout.metrics)] == [1, 2]
    path = tmp_path / "audit.npz"
    np.savez(path, **audit_arrays())
    s = audit_recorded(run_dir, data=load_audit_data(path), data_path=path, settings=QUICK)
    assert s["learned"] and len(s["membership"]["server"]["per_client"]) == N
    import ray

    assert not ray.is_initialized()  # run_simulation shut its Ray cluster down
