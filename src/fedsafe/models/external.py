"""Models the user brings: an import path ``package.module:factory``, or a MONAI network ``monai:<Name>``.

A factory is any callable (a function, or an ``nn.Module`` class) reached as ``package.module:attribute`` (the
attribute may be dotted, ``module:Class.create``). It is called with keywords::

    factory(num_classes=K, in_channels=C, image_size=S, **model.kwargs)

and must return an ``nn.Module`` that maps a (B, C, S, S) float batch of pixels in [0, 1] to (B, K) logits (the
attacks' budgets are in pixel units: a model that wants normalised inputs normalises inside itself, as the
papers' CNN does). When the module is not importable as found and ``<package>.py`` or ``<package>/`` lies in
the working directory, the working directory is put at the front of ``sys.path`` first, as ``uvicorn app:main``
does (a console script such as ``fedsafe`` does not have it there).

MONAI networks (``pip install 'fedsafe[monai]'``) are built 2-D (``spatial_dims=2``), untrained
(``pretrained=False``), with their channel and class arguments set from the task; ``model.kwargs`` passes the
rest (``init_features``, ``block_config``, ``widen_factor``, ``norm``, ...). Those with BatchNorm average its
running statistics with the weights; ``norm: group`` or ``instance`` (where the network takes it) avoids them.

Example::

    build_external("monai:DenseNet121", num_classes=2, in_channels=1, image_size=64,
                   kwargs={"init_features": 16, "growth_rate": 8, "block_config": [2, 2]})
    build_external("my_models:make_net", num_classes=2, in_channels=1, image_size=64, kwargs={})
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["ModelError", "MONAI_NETWORKS", "IMPORT_PATH", "build_external", "is_external", "one_line",
           "resolve_factory"]

IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
"""``package.module:factory`` (dotted on both sides)."""


class ModelError(ValueError):
    """A model that cannot be built or does not fit the task, with a one-line message naming ``model.name``."""


# MONAI network -> (keyword of the input channels, keyword of the classes, fixed keywords)
_DENSENET = ("in_channels", "out_channels", {"spatial_dims": 2})
_RESNET = ("n_input_channels", "num_classes", {"spatial_dims": 2, "pretrained": False})
MONAI_NETWORKS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "DenseNet": _DENSENET,
    "DenseNet121": (*_DENSENET[:2], {"spatial_dims": 2, "pretrained": False}),
    "DenseNet169": (*_DENSENET[:2], {"spatial_dims": 2, "pretrained": False}),
    "DenseNet201": (*_DENSENET[:2], {"spatial_dims": 2, "pretrained": False}),
    "resnet10": _RESNET,
    "resnet18": _RESNET,
    "resnet34": _RESNET,
    "resnet50": _RESNET,
    "SEResNet50": ("in_channels", "num_classes", {"spatial_dims": 2, "pretrained": False}),
    "EfficientNetBN": ("in_channels", "num_classes", {"spatial_dims": 2, "pretrained": False,
                                                      "model_name": "efficientnet-b0"}),
}
"""The MONAI networks ``monai:<Name>`` builds (2-D classifiers whose forward returns the logits)."""

_OVERRIDABLE = frozenset({"model_name"})  # fixed keywords that model.kwargs may change


def one_line(e: BaseException) -> str:
    """``Type: message`` on one line (whitespace collapsed, at most 200 characters of message)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def is_external(name: str) -> bool:
    """Whether ``name`` is a MONAI name or an import path (rather than a model of the registry)."""
    return name.startswith("monai:") or ":" in name


def _import(module: str, name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        cwd = Path.cwd()
        local = (cwd / f"{top}.py").is_file() or (cwd / top).is_dir()
        if e.name != top or not local or str(cwd) in sys.path:
            raise ModelError(f"model.name {name!r}: cannot import {module!r} ({one_line(e)})") from None
    sys.path.insert(0, str(cwd))
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 -- any failure of the user's module is reported in one line
        raise ModelError(f"model.name {name!r}: cannot import {module!r} ({one_line(e)})") from None


def resolve_factory(name: str) -> Callable[..., Any]:
    """The callable an import path ``package.module:attr`` names; ModelError (one line) when it cannot."""
    if not IMPORT_PATH.match(name):
        raise ModelError(f"model.name {name!r}: expected a registered name, monai:<Network> or "
                         "package.module:factory")
    module, _, attr = name.partition(":")
    try:
        obj: Any = _import(module, name)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 -- an error raised while the user's module runs
        raise ModelError(f"model.name {name!r}: importing {module!r} failed ({one_line(e)})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"model.name {name!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"model.name {name!r}: {attr!r} is a {type(obj).__name__}, not a callable factory")
    return obj


def _monai_factory(name: str) -> tuple[Callable[..., Any], tuple[str, str, dict[str, Any]]]:
    net = name.removeprefix("monai:")
    if net not in MONAI_NETWORKS:
        raise ModelError(f"model.name {name!r}: unknown MONAI network; known: "
                         f"{', '.join('monai:' + n for n in MONAI_NETWORKS)}")
    try:
        nets = importlib.import_module("monai.networks.nets")
    except ImportError as e:
        raise ModelError(f"model.name {name!r} needs MONAI ({one_line(e)}): pip install 'fedsafe[monai]'") from None
    return getattr(nets, net), MONAI_NETWORKS[net]


def _call(factory: Callable[..., Any], name: str, kwargs: Mapping[str, Any]) -> Any:
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as e:
        raise ModelError(f"model.name {name!r}: the factory does not take the keywords "
                         f"{', '.join(sorted(kwargs))} ({one_line(e)})") from None
    except ValueError:  # no signature (a builtin): let the call say
        pass
    try:
        return factory(**kwargs)
    except Exception as e:  # noqa: BLE001 -- the user's factory: any failure is reported in one line
        raise ModelError(f"model.name {name!r}: the factory raised {one_line(e)}") from None


def build_external(name: str, *, num_classes: int, in_channels: int, image_size: int,
                   kwargs: Mapping[str, Any]) -> nn.Module:
    """Build a MONAI network (``monai:<Name>``) or call a user factory (``package.module:factory``) for a task of
    ``num_classes`` classes on (in_channels, image_size, image_size) inputs, with ``kwargs`` (``model.kwargs``).

    Raises ModelError (one line, naming ``model.name``) when it cannot be imported or built, or does not return
    an ``nn.Module``.
    """
    if name.startswith("monai:"):
        factory, (c_key, k_key, fixed) = _monai_factory(name)
        reserved = ({c_key, k_key} | set(fixed)) - _OVERRIDABLE
        call = {**fixed, **kwargs, c_key: in_channels, k_key: num_classes}
    else:
        factory = resolve_factory(name)
        reserved = {"num_classes", "in_channels", "image_size"}
        call = {**kwargs, "num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    taken = sorted(reserved & set(kwargs))
    if taken:
        raise ModelError(f"model.kwargs.{taken[0]}: set by fedsafe for {name!r} (from the task); leave it out")
    model = _call(factory, name, call)
    if not isinstance(model, nn.Module):
        raise ModelError(f"model.name {name!r}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    return model
