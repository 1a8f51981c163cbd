"""Every value has one home: the name lists of fedsafe.names are the config's choices and nothing else restates
them, the YAML 1.2 reader is the only YAML reader. Each check is read from the package's own text or values, and
each detector is tried on a case it must catch."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fedsafe import names
from fedsafe.config import CrnConfig, DefenseConfig, FederationConfig, TrainConfig
from fedsafe.yaml12 import dump_yaml, read_yaml

SRC = Path(__file__).resolve().parents[1] / "src" / "fedsafe"
# the one tuple literal of names left outside fedsafe.names: the type of a *resolved* precision (auto is not one)
ALLOWED = {("precision.py", ("fp32", "bf16"))}


def _name_lists_restated(text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, list, values) of every tuple, list or set literal of two or more strings that are all names of one
    fedsafe.names list: a second copy of (part of) that list."""
    lists = {k: set(getattr(names, k)) for k in names.__all__}
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            vals = tuple(e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
            if len(vals) >= 2 and len(vals) == len(node.elts):
                out += [(node.lineno, k, vals) for k, s in lists.items() if set(vals) <= s][:1]
    return out


def test_no_module_restates_a_list_of_names():
    bad = [f"{f.relative_to(SRC)}:{line}: {vals} restates names.{k}"
           for f in sorted(SRC.rglob("*.py")) if f.name != "names.py"
           for line, k, vals in _name_lists_restated(f.read_text()) if (f.name, vals) not in ALLOWED]
    assert not bad, "\n".join(bad)


def test_the_restated_list_detector_catches_a_copy():
    text = ('x = d.name in ("adversarial-training", "fed-safe")\n'
            'p: Literal["fp32", "bf16", "auto"] = "fp32"\nok = ("pred", "true")\n')
    assert _name_lists_restated(text) == [(1, "DEFENSES", ("adversarial-training", "fed-safe")),
                                          (2, "PRECISIONS", ("fp32", "bf16", "auto"))]


@pytest.mark.parametrize(("model", "field", "names_list"), [
    (DefenseConfig, "name", names.DEFENSES), (FederationConfig, "aggregator", names.AGGREGATORS),
    (FederationConfig, "norm_action", names.NORM_ACTIONS), (TrainConfig, "precision", names.PRECISIONS),
    (CrnConfig, "precision", names.PRECISIONS)])
def test_the_config_choices_are_the_name_lists(model, field, names_list):
    assert model.model_fields[field].annotation.__args__ == names_list


def test_the_kind_lists_are_parts_of_their_list():
    assert set(names.SERVER_DEFENSES) | set(names.CLIENT_DEFENSES) < set(names.DEFENSES)
    assert set(names.PER_CLIENT_DEFENSES) < set(names.SERVER_DEFENSES)
    assert not set(names.SERVER_DEFENSES) & set(names.CLIENT_DEFENSES)
    assert set(names.BYZANTINE_AGGREGATORS) < set(names.AGGREGATORS)


def test_every_profile_name_has_its_yaml_and_no_yaml_is_unnamed():
    shipped = sorted(p.stem for p in (SRC / "profiles").glob("*.yaml"))
    assert shipped == sorted(names.PROFILES)
    for name in names.PROFILES:
        assert read_yaml((SRC / "profiles" / f"{name}.yaml").read_text())["profile"] == name


YAML_CALL = re.compile(r"\byaml\.(safe_load|load|safe_dump|dump|full_load|unsafe_load)\(")


def test_only_the_yaml12_module_reads_or_writes_yaml():
    bad = [f"{f.relative_to(SRC)}:{i}: {line.strip()}" for f in sorted(SRC.rglob("*.py")) if f.name != "yaml12.py"
           for i, line in enumerate(f.read_text().splitlines(), 1) if YAML_CALL.search(line)]
    assert not bad, "\n".join(bad)


def test_the_yaml_call_pattern_catches_both_directions():
    hits = [s for s in ("cfg = yaml.safe_load(text)", "yaml.safe_dump(d, sort_keys=False)", "read_yaml(text)",
                        "yaml.YAMLError") if YAML_CALL.search(s)]
    assert hits == ["cfg = yaml.safe_load(text)", "yaml.safe_dump(d, sort_keys=False)"]


@pytest.mark.parametrize("value", ["1e-3", "1e5", "-2E+4", ".5", "yes", "null", "20", 1e-3, 1e-5, 20.0, 3, None, True])
def test_yaml_writes_what_it_reads_back(value):
    """A string that YAML 1.2 reads as a number is written quoted; numbers stay numbers."""
    assert read_yaml(dump_yaml({"v": value})) == {"v": value}


def test_yaml_12_floats_are_numbers():
    assert read_yaml("a: 1e-3\nb: 2E5\nc: 0.5\nd: '1e-3'") == {"a": 0.001, "b": 200000.0, "c": 0.5, "d": "1e-3"}


# -- one profile source ---------------------------------------------------------------------------------------------

PROFILE_SECTIONS = {"task": "TaskConfig", "model": "ModelConfig", "train": "TrainConfig"}


def _literal_defaults(text: str, keys: dict[str, set[str]]) -> list[str]:
    """``Class.field`` of every field in ``keys[class]`` whose default is written as a literal (``= 5`` or
    ``Field(5, ...)``) instead of read from the profile."""
    out = []
    for cls in ast.walk(ast.parse(text)):
        if isinstance(cls, ast.ClassDef) and cls.name in keys:
            for node in cls.body:
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                        and node.target.id in keys[cls.name]:
                    v = node.value
                    if isinstance(v, ast.Call) and getattr(v.func, "id", "") == "Field":
                        v = v.args[0] if v.args else None
                    if isinstance(v, ast.Constant):
                        out.append(f"{cls.name}.{node.target.id}")
    return out


def _profile_keys() -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for name in names.PROFILES:
        prof = read_yaml((SRC / "profiles" / f"{name}.yaml").read_text())
        for section, cls in PROFILE_SECTIONS.items():
            keys.setdefault(cls, set()).update(prof.get(section, {}))
    return keys


def test_the_config_defaults_are_the_cpu_profiles_yaml():
    from fedsafe.config import ExperimentConfig, load_config

    assert ExperimentConfig() == load_config(None, profile="cpu")
    cpu = read_yaml((SRC / "profiles" / "cpu.yaml").read_text())
    dumped = ExperimentConfig().model_dump()
    assert all(dumped[s][k] == v for s in PROFILE_SECTIONS for k, v in cpu[s].items())


def test_no_config_field_a_profile_sets_writes_its_default_again():
    keys = {cls: ks - {"momentum"} for cls, ks in _profile_keys().items()}  # momentum: paper-sgd names the default 0
    assert keys["TrainConfig"] >= {"rounds", "lr", "optimizer"}, "the profiles are not read"
    bad = _literal_defaults((SRC / "config.py").read_text(), keys)
    assert not bad, f"defaults written beside the cpu profile's YAML: {bad}"


def test_the_literal_default_detector_catches_both_forms():
    text = ("class TrainConfig:\n    rounds: int = Field(20, ge=1)\n    optimizer: str = 'adam'\n"
            "    lr: float = Field(_cpu('train', 'lr'), gt=0)\n    other: int = 3\n")
    assert _literal_defaults(text, {"TrainConfig": {"rounds", "optimizer", "lr"}}) == ["TrainConfig.rounds",
                                                                                         "TrainConfig.optimizer"]


def test_the_local_spec_takes_the_recipe_from_the_config():
    """LocalSpec has no default for what the profiles set (the optimiser, learning rate, gradient clip)."""
    import dataclasses

    from fedsafe.federation.federation_spec import LocalSpec

    fields = {f.name: f for f in dataclasses.fields(LocalSpec)}
    for key in ("optimizer", "lr", "grad_clip"):
        assert fields[key].default is dataclasses.MISSING, key


def test_the_optimizer_and_partition_names_are_the_ones_implemented():
    """The config's optimizer and partition choices are names lists, and the code behind them takes exactly those
    names: make_optimizer builds every optimizer name and refuses others; the partition registry holds every
    synthetic partition (``sites`` is the sites CSV's, not a registered split)."""
    import torch

    from fedsafe.config import SplitConfig
    from fedsafe.data.partition import PARTITIONS as REGISTRY
    from fedsafe.federation.client import make_optimizer

    assert TrainConfig.model_fields["optimizer"].annotation.__args__ == names.OPTIMIZERS
    assert SplitConfig.model_fields["partition"].annotation.__args__ == names.PARTITIONS
    assert tuple(REGISTRY) == names.SPLIT_PARTITIONS == tuple(p for p in names.PARTITIONS if p != "sites")
    w = torch.nn.Parameter(torch.zeros(1))
    assert [type(make_optimizer(n, iter([w]), lr=0.1)).__name__.lower() for n in names.OPTIMIZERS] == ["sgd", "adam"]
    with pytest.raises(ValueError, match="known: sgd, adam"):
        make_optimizer("lion", iter([w]), lr=0.1)
