"""The pieces both Flower sides share: config transport, state <-> ArrayRecord, the app project, partitions."""

from __future__ import annotations

import tomllib

import pytest
import torch

pytest.importorskip("flwr", reason="the Flower tests need flwr: pip install -e '.[dev,flower]'")

from fedsafe.config import ConfigError, config_hash
from fedsafe.flower.app import (
    RUN_CONFIG_DEFAULTS,
    build_flower_run,
    decode_config,
    encode_config,
    partition_fingerprint,
    record_to_state,
    run_config_for,
    state_to_record,
    write_app_project,
)

from ._helpers import tiny_config

pytestmark = pytest.mark.timeout(60)


def test_config_round_trips_through_the_run_config():
    cfg = tiny_config()
    rc = run_config_for(cfg, run_dir="/x", threads=2)
    assert set(rc) == set(RUN_CONFIG_DEFAULTS)
    assert config_hash(decode_config(rc["fedsafe-config"])) == config_hash(cfg)


@pytest.mark.parametrize("text", ["", "not base64!", "aGVsbG86IFt3b3JsZA=="])
def test_bad_config_text_is_a_one_line_config_error(text):
    with pytest.raises(ConfigError):
        decode_config(text)


def test_state_record_round_trip_is_exact():
    g = torch.Generator().manual_seed(0)
    conv = torch.randn(4, 3, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)
    state = {"conv.weight": conv, "fc.bias": torch.randn(5, generator=g), "crn5.rounds": torch.tensor(3),
             "crn5.centre_grad": torch.tensor(True), "delta": torch.randn(2, 1, 4, 4, generator=g).double()}
    back = record_to_state(state_to_record(state))
    assert list(back) == list(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v), k
    assert record_to_state(state_to_record({})) == {}


def test_app_project_is_a_valid_flower_app_with_no_dependencies(tmp_path):
    from flwr.common.config import validate_config

    d = write_app_project(tmp_path / "app")
    doc = tomllib.loads((d / "pyproject.toml").read_text())
    assert doc["project"]["dependencies"] == []  # else every run installs them (a CUDA torch download)
    assert doc["tool"]["flwr"]["app"]["config"] == RUN_CONFIG_DEFAULTS
    ok, errors, _ = validate_config(doc, check_module=True, project_dir=d)
    assert ok, errors


def test_partition_comes_from_node_config_and_is_checked():
    run = build_flower_run(encode_config(tiny_config()))
    assert run.partition({"partition-id": 2, "num-partitions": 3}) == 2
    with pytest.raises(ValueError, match="no partition-id"):
        run.partition({})
    with pytest.raises(ValueError, match="outside 0..2"):
        run.partition({"partition-id": 3})
    with pytest.raises(ValueError, match="num-partitions=4"):
        run.partition({"partition-id": 0, "num-partitions": 4})


def test_fingerprints_differ_between_clients_and_seeds():
    a = build_flower_run(encode_config(tiny_config())).data
    b = build_flower_run(encode_config(tiny_config("seed=12"))).data
    prints = {partition_fingerprint(a, i) for i in range(3)}
    assert len(prints) == 3
    assert partition_fingerprint(a, 0) != partition_fingerprint(b, 0)
