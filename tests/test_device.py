"""The device setting (design §10): auto falls back to the CPU, bad strings and absent GPUs are one-line errors, and
the random draws do not depend on the device."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from fedsafe.build import federation_spec, model_factory, prepare_data, run_device
from fedsafe.cli import app
from fedsafe.config import ConfigError, load_config
from fedsafe.device import DeviceError, resolve_device
from fedsafe.federation.state import add_gaussian
from fedsafe.seeding import torch_generator

TINY = ["task.image_size=16", "task.synthetic_size=300", "model.width=0.04", "splits.client_test_size=20"]


def test_auto_takes_cuda_only_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert run_device(load_config(overrides=["train.device=auto"])) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no usable CUDA device") as e:
        resolve_device(name)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "CPU", "cuda:x", "mps"])
def test_device_strings_are_validated(bad):
    with pytest.raises(DeviceError, match="device must be auto, cpu, cuda or cuda:N"):
        resolve_device(bad)
    with pytest.raises(ConfigError, match="train.device"):
        load_config(overrides=[f"train.device={bad}"])


def test_train_with_cuda_on_a_cpu_machine_fails_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--device", "cuda", *sum([["--set", o] for o in TINY],
                                                                                        [])])
    assert r.exit_code == 1 and "no usable CUDA device" in " ".join(r.output.split())
    assert r.output.count("error:") == 1 and not (run / "config.yaml").exists()


def test_the_federation_is_built_on_the_configured_device():
    cfg = load_config(overrides=[*TINY, "train.device=cpu"])
    data = prepare_data(cfg)
    spec = federation_spec(cfg, data)
    model = model_factory(cfg, data)()
    assert data.device == torch.device("cpu") and spec.local.device == "cpu"
    assert next(model.parameters()).device == torch.device("cpu")


def test_noise_is_drawn_on_the_cpu_generator_whatever_the_target_device():
    """The downlink/uplink noise comes from a CPU generator keyed (seed, purpose, round, client), so the same seed
    gives the same noise on every device: here, the draw for a float64 'device' copy equals the float32 draw."""
    state = {"w": torch.zeros(5, 3)}
    a = add_gaussian(state, 0.1, torch_generator(0, "downlink", 1, 2))
    b = add_gaussian({"w": torch.zeros(5, 3, dtype=torch.float64)}, 0.1, torch_generator(0, "downlink", 1, 2))
    torch.testing.assert_close(a["w"].double(), b["w"], rtol=1e-6, atol=0)  # the same draws (float rounding apart)
    assert a["w"].abs().min() > 0
    assert torch_generator(0, "downlink", 1, 2).device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_the_same_seed_gives_the_same_noise_on_cpu_and_cuda():
    state = {"w": torch.zeros(64, 8)}
    cpu = add_gaussian(state, 0.1, torch_generator(3, "uplink", 4, 1))
    gpu = add_gaussian({"w": torch.zeros(64, 8, device="cuda")}, 0.1, torch_generator(3, "uplink", 4, 1))
    assert torch.equal(cpu["w"], gpu["w"].cpu())
