"""Models the user brings (models/external.py, registry.py): import paths, MONAI networks, one-line errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from fedsafe.models import ModelError, build_model, check_model, describe_model

HERE = Path(__file__).resolve().parent
SHAPE = dict(num_classes=3, in_channels=1, image_size=16)


@pytest.fixture
def user_path(monkeypatch):
    """The folder of ``user_models.py`` on sys.path, as a user's own package would be."""
    monkeypatch.syspath_prepend(str(HERE))


@pytest.fixture
def monai_nets():
    if importlib.util.find_spec("monai") is None:
        pytest.skip("MONAI is not installed (pip install 'fedsafe[monai]')")
    return importlib.import_module("monai.networks.nets")


def test_import_path_calls_the_factory_with_the_task_shape_and_kwargs(user_path):
    import user_models  # importable once the fixture put its folder on sys.path

    torch.manual_seed(3)
    m = build_model("user_models:make_net", **SHAPE, kwargs={"hidden": 5})
    torch.manual_seed(3)
    ref = user_models.SmallNet(3, 1, 16, hidden=5)
    assert type(m) is user_models.SmallNet and m.head.out_features == 3 and m.head.in_features == 5 * 4 * 4
    assert m.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values(), strict=True))
    check_model(m, "user_models:make_net", **SHAPE)
    assert describe_model(m)["class"] == "user_models.SmallNet"
    assert describe_model(m)["parameters"] == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("name, message", [
    ("no_such_package.models:make", r"^model.name 'no_such_package.models:make': cannot import 'no_such_package"),
    ("user_models:missing", r"module 'user_models' has no attribute 'missing'"),
    ("user_models:NOT_CALLABLE", r"'NOT_CALLABLE' is a int, not a callable factory"),
    ("user_models:not_a_module", r"the factory returned a dict, not a torch.nn.Module"),
    ("user_models:no_image_size", r"does not take the keywords image_size, in_channels, num_classes"),
    ("paper_cnn", r"^unknown model 'paper_cnn'"),
])
def test_a_factory_that_cannot_be_built_is_a_one_line_error(user_path, name, message):
    with pytest.raises(ModelError, match=message) as e:
        build_model(name, **SHAPE)
    assert "\n" not in str(e.value)


def test_a_factory_returning_the_wrong_shape_is_a_one_line_error(user_path):
    m = build_model("user_models:wrong_shape", **SHAPE)  # builds: only a forward pass shows the wrong head
    with pytest.raises(ModelError, match=r"returned torch.float32 \(2, 4\) for a batch \(2, 1, 16, 16\), expected "
                                         r"floating-point logits \(2, 3\)") as e:
        check_model(m, "user_models:wrong_shape", **SHAPE)
    assert "\n" not in str(e.value)
    assert m.training  # the check restores the mode it found


def test_check_refuses_a_forward_that_fails_and_a_model_without_weights():
    with pytest.raises(ModelError, match=r"a forward pass on a zero batch \(2, 3, 16, 16\) failed \(RuntimeError"):
        check_model(torch.nn.Conv2d(1, 2, 3), "conv", num_classes=3, in_channels=3, image_size=16)
    with pytest.raises(ModelError, match="no trainable floating-point parameters"):
        check_model(torch.nn.Flatten(), "flat", **SHAPE)


def test_kwargs_cannot_override_the_task_shape(user_path):
    with pytest.raises(ModelError, match=r"^model.kwargs.num_classes: set by fedsafe"):
        build_model("user_models:make_net", **SHAPE, kwargs={"num_classes": 7})
    with pytest.raises(ModelError, match="'width' is given twice"):
        build_model("paper-cnn", **SHAPE, kwargs={"width": 0.1}, width=0.2)


def test_a_module_in_the_working_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "cwd_models_for_fedsafe_test.py").write_text(
        "from torch import nn\n"
        "def make(*, num_classes, in_channels, image_size):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, num_classes))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in sys.path if p not in ("", str(tmp_path))])
    m = build_model("cwd_models_for_fedsafe_test:make", **SHAPE)
    check_model(m, "cwd_models_for_fedsafe_test:make", **SHAPE)


def test_monai_networks_are_built_2d_untrained_from_the_task(monai_nets):
    kw = {"init_features": 4, "growth_rate": 4, "block_config": [2, 2]}
    torch.manual_seed(0)
    m = build_model("monai:DenseNet121", **SHAPE, kwargs=kw)
    torch.manual_seed(0)
    ref = monai_nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=3, **kw)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values(), strict=True))
    check_model(m, "monai:DenseNet121", **SHAPE)
    r = build_model("monai:resnet10", num_classes=2, in_channels=3, image_size=16, kwargs={"widen_factor": 0.25})
    check_model(r, "monai:resnet10", num_classes=2, in_channels=3, image_size=16)
    assert r.conv1.in_channels == 3 and r.fc.out_features == 2


def test_monai_errors_name_the_network_and_the_key(monai_nets):
    with pytest.raises(ModelError, match=r"unknown MONAI network; known: monai:DenseNet, monai:DenseNet121"):
        build_model("monai:UNet", **SHAPE)
    with pytest.raises(ModelError, match=r"^model.kwargs.spatial_dims: set by fedsafe for 'monai:resnet18'"):
        build_model("monai:resnet18", **SHAPE, kwargs={"spatial_dims": 3})
    with pytest.raises(ModelError, match=r"model.name 'monai:resnet18': the factory raised"):
        build_model("monai:resnet18", **SHAPE, kwargs={"no_such_option": 1})
