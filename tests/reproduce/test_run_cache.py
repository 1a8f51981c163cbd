"""The result cache: run keys change with everything that determines a run, and with nothing else."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedsafe.attacks.spec import AttackSpec
from fedsafe.config import load_config
from fedsafe.data.types import ImageTable
from fedsafe.precision import resolve_precision
from fedsafe.reproduce.run_cache import NOT_DETERMINING, RunCache, data_fingerprint, determining, run_key

FP = "f" * 64

# one change per determining leaf of the config (every leaf not in NOT_DETERMINING must appear here)
CHANGES = {
    "seed": "seed=1",
    "task.name": "task.name=glioma",
    "task.image_size": "task.image_size=32",
    "task.channels": "task.channels=3",
    "task.strict": "task.strict=true",
    "task.synthetic_size": "task.synthetic_size=600",
    "task.label_conflicts": "task.label_conflicts=drop",
    "task.near_duplicates": "task.near_duplicates=false",
    "task.near_duplicate_threshold": "task.near_duplicate_threshold=0.05",
    "task.near_duplicate_hash_distance": "task.near_duplicate_hash_distance=4",
    "task.same_scan": "task.same_scan=false",
    "task.same_scan_threshold": "task.same_scan_threshold=0.02",
    "task.same_scan_loose_threshold": "task.same_scan_loose_threshold=0.05",
    "task.same_scan_hash_distance": "task.same_scan_hash_distance=6",
    "task.sites_csv": "task.sites_csv=sites.csv",
    "splits.num_clients": "splits.num_clients=5",
    "splits.partition": "splits.partition=iid",
    "splits.num_shards": "splits.num_shards=30",
    "splits.dirichlet_alpha": "splits.dirichlet_alpha=0.1",
    "splits.client_test_size": "splits.client_test_size=50",
    "splits.server_size": "splits.server_size=0.2",
    "splits.server_for_fraction": "splits.server_for_fraction=1.0",
    "splits.global_test_size": "splits.global_test_size=0.2",
    "model.name": None,  # one model registered: nothing to change it to (covered by the completeness test)
    "model.width": "model.width=0.5",
    "model.dropout": "model.dropout=0.1",
    "train.rounds": "train.rounds=21",
    "train.local_epochs": "train.local_epochs=2",
    "train.batch_size": "train.batch_size=16",
    "train.optimizer": "train.optimizer=sgd",
    "train.lr": "train.lr=0.01",
    "train.momentum": "train.momentum=0.9",
    "train.grad_clip": "train.grad_clip=5",
    "train.augment": "train.augment=false",
    "train.precision": "train.precision=fp32",
    "train.channels_last": "train.channels_last=false",
    "train.device": None,  # resolved to its type (cpu / cuda): only one of them on a CPU-only machine
    "train.compile": "train.compile=true",
    "federation.weighted": "federation.weighted=false",
    "federation.downlink_noise": "federation.downlink_noise=0.01",
    "federation.uplink_clip": "federation.uplink_clip=50",
    "federation.uplink_noise": "federation.uplink_noise=0.001",
    "federation.keep_received_rounds": "federation.keep_received_rounds=5",
    "federation.aggregator": "federation.aggregator=median",
    "federation.trim_fraction": "federation.trim_fraction=0.2",
    "federation.byzantine": "federation.byzantine=1",
    "federation.multi_krum_m": "federation.multi_krum_m=2",
    "federation.norm_factor": "federation.norm_factor=10",
    "federation.norm_action": "federation.norm_action=clip",
    "privacy.delta": "privacy.delta=0.0001",
    "privacy.calibrate": "privacy.calibrate={epsilon: 1.0}",
    "defense.name": "defense.name=fed-safe",
    "defense.fraction": "defense.fraction=0.5",
    "defense.eps": "defense.eps=0.05",
    "defense.alpha": "defense.alpha=0.01",
    "defense.steps": "defense.steps=3",
    "defense.random_start": "defense.random_start=false",
    "defense.epochs": "defense.epochs=2",
    "defense.lr": "defense.lr=0.01",
    "defense.batch_size": "defense.batch_size=8",
    "defense.adaptation_data": "defense.adaptation_data=attack-sets",
    "crn.enabled": "crn.enabled=true",
    "crn.windows": "crn.windows=[5]",
    "crn.eps": "crn.eps=0.03",
    "crn.alpha": "crn.alpha=0.01",
    "crn.steps": "crn.steps=2",
    "crn.centre_grad": "crn.centre_grad=false",
    "crn.precision": "crn.precision=bf16",
}
# settings some changes need to be valid (calibration needs a clip)
NEEDS = {"privacy.calibrate": ["federation.uplink_clip=50"]}


def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and path != "privacy.calibrate":
            out += _leaves(v, path + ".")
        else:
            out.append(path)
    return out


def test_every_config_field_is_classified():
    leaves = set(_leaves(load_config(profile="cpu").model_dump(mode="json")))
    assert leaves == set(CHANGES) | set(NOT_DETERMINING), "classify new config fields in the cache key tests"


@pytest.mark.parametrize("field", [k for k, v in CHANGES.items() if v is not None])
def test_key_changes_with_every_determining_field(field, monkeypatch):
    needs = NEEDS.get(field, [])
    if field == "train.precision":
        # What `auto` resolves to depends on the CPU (bf16 only with AMX / AVX512-BF16), so compare explicitly
        # different resolved precisions, and check `auto` under both answers of the CPU probe.
        base = load_config(profile="cpu", overrides=[*needs, "train.precision=fp32"])
        changed = load_config(profile="cpu", overrides=[*needs, "train.precision=bf16"])
        auto = load_config(profile="cpu", overrides=[*needs, "train.precision=auto"])
        auto_keys = {}
        for fast_bf16 in (True, False):
            monkeypatch.setattr("fedsafe.precision.cpu_has_fast_bf16", lambda fast_bf16=fast_bf16: fast_bf16)
            auto_keys[fast_bf16] = run_key(auto, FP)
        assert auto_keys[True] == run_key(changed, FP) and auto_keys[False] == run_key(base, FP)
    else:
        base = load_config(profile="cpu", overrides=needs)
        changed = load_config(profile="cpu", overrides=[*needs, CHANGES[field]])
    assert determining(changed) != determining(base)
    assert run_key(changed, FP) != run_key(base, FP)


@pytest.mark.parametrize("override", ["threads=2", "task.data_root=/somewhere/else", "task.cache_dir=/tmp/c",
                                      "train.eval_every=0", "train.eval_batch_size=64", "profile=paper"])
def test_key_ignores_what_does_not_determine_the_run(override):
    base = load_config(profile="cpu")
    if override == "profile=paper":  # the paper profile's name with the cpu profile's every setting
        other = base.model_copy(update={"profile": "paper"})
    else:
        other = load_config(profile="cpu", overrides=[override])
    assert run_key(other, FP) == run_key(base, FP)


def test_key_changes_with_the_data_and_is_stable():
    cfg = load_config(profile="cpu")
    assert run_key(cfg, FP) == run_key(load_config(profile="cpu"), FP)
    assert run_key(cfg, FP) != run_key(cfg, "e" * 64)


def test_auto_precision_is_keyed_by_what_it_resolves_to():
    auto = load_config(profile="cpu", overrides=["train.precision=auto"])
    resolved = load_config(profile="cpu", overrides=[f"train.precision={resolve_precision('auto')}"])
    assert run_key(auto, FP) == run_key(resolved, FP)


def _table(**kw) -> ImageTable:
    rng = np.random.default_rng(0)
    base = dict(images=rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8), labels=np.array([0, 1, 0, 1, 0, 1]),
                class_names=("a", "b"), ids=tuple(f"h{i}" for i in range(6)), origin=("train",) * 6, name="t")
    base.update(kw)
    return ImageTable(**base)


def test_data_fingerprint_sees_pixels_labels_and_ids():
    t = _table()
    assert data_fingerprint(t) == data_fingerprint(_table())
    pixels = t.images.copy()
    pixels[3, 4, 4, 0] ^= 1
    assert data_fingerprint(_table(images=pixels)) != data_fingerprint(t)
    assert data_fingerprint(_table(labels=np.array([1, 1, 0, 1, 0, 1]))) != data_fingerprint(t)
    assert data_fingerprint(_table(ids=("x", *t.ids[1:]))) != data_fingerprint(t)
    # split groups decide the splits: another grouping, another key; all-distinct groups keep the old key
    assert data_fingerprint(_table(groups=np.array([0, 0, 2, 3, 4, 5]))) != data_fingerprint(t)
    assert data_fingerprint(_table(groups=np.arange(6))) == data_fingerprint(t)


def test_run_dirs_are_keyed_by_task_and_key(tmp_path):
    cache = RunCache(tmp_path)
    small = ["task.synthetic_size=60", "task.image_size=16"]
    cfg = load_config(profile="cpu", overrides=small)
    rd = cache.run_dir(cfg)
    assert rd.parent == tmp_path / "runs" and rd.name == f"synthetic-{cache.key(cfg)[:12]}"
    assert cache.run_dir(load_config(profile="cpu", overrides=[*small, "threads=1"])) == rd
    # the synthetic task's content depends on its seed and size: so does the key
    assert cache.fingerprint(load_config(profile="cpu", overrides=[*small, "seed=1"])) != cache.fingerprint(cfg)
    assert cache.fingerprint(load_config(profile="cpu", overrides=["task.synthetic_size=70", "task.image_size=16"])) \
        != cache.fingerprint(cfg)
    assert cache.task_size(cfg) == 60


def test_a_missing_or_different_attack_evaluation_is_not_a_hit(tmp_path):
    cache = RunCache(tmp_path)
    spec = AttackSpec(attack="pgd", eps=0.05, alpha=0.001, steps=2)
    assert cache.cached_evaluation(tmp_path, spec) is None
    key = cache.attack_key(spec, precision="fp32", batch_size=100, crn_precision="fp32")
    (tmp_path / "attacks").mkdir()
    (tmp_path / "attacks" / f"{key}.csv").write_text("attacker,target\n0,0\n")
    other = dataclasses.replace(spec, steps=3)
    (tmp_path / "attacks" / f"{key}.json").write_text(
        '{"attack": ' + __import__("json").dumps(other.to_dict()) + "}")
    assert cache.cached_evaluation(tmp_path, spec) is None  # same file name, another spec inside: not used
    (tmp_path / "attacks" / f"{key}.json").write_text('{"attack": ' + __import__("json").dumps(spec.to_dict()) + "}")
    hit = cache.cached_evaluation(tmp_path, spec)
    assert hit is not None and hit.cached and list(hit.frame.columns) == ["attacker", "target"]


def _without(dump: dict, dotted: str) -> dict:
    *parents, leaf = dotted.split(".")
    node = dump
    for p in parents:
        node = node[p]
    node.pop(leaf)
    return dump


def test_a_field_added_later_leaves_earlier_runs_their_hash_and_key(monkeypatch):
    """crn.precision was added after runs were written: at its old value (fp32) a config hashes as one written
    without the field (its config.yaml read back), so earlier runs stay resumable and cached; `auto` resolving to
    fp32 shares that key; bf16 is another run."""
    from fedsafe.config import ADDED_LATER, config_hash

    assert ADDED_LATER == {"crn.precision": "fp32", "task.snapshot": None}
    cfg = load_config(profile="cpu", overrides=["crn.enabled=true"])
    old_yaml = _without(cfg.model_dump(mode="json"), "crn.precision")
    assert config_hash(cfg) == config_hash(old_yaml)
    bf16 = load_config(profile="cpu", overrides=["crn.enabled=true", "crn.precision=bf16"])
    assert config_hash(bf16) != config_hash(cfg) and run_key(bf16, FP) != run_key(cfg, FP)
    auto = load_config(profile="cpu", overrides=["crn.enabled=true", "crn.precision=auto"])
    monkeypatch.setattr("fedsafe.precision.cpu_has_fast_bf16", lambda: False)
    assert run_key(auto, FP) == run_key(cfg, FP)
    monkeypatch.setattr("fedsafe.precision.cpu_has_fast_bf16", lambda: True)
    assert run_key(auto, FP) == run_key(bf16, FP)


def test_task_snapshot_was_added_later_and_is_not_in_the_run_key():
    """Runs written before task.snapshot keep their config hash; a run read from a snapshot has the run key of the
    same run read from the source (the table is the same; the key covers its content, not where it lives)."""
    from fedsafe.config import config_hash

    cfg = load_config(profile="cpu", overrides=["task.name=meningioma"])
    assert config_hash(cfg) == config_hash(_without(cfg.model_dump(mode="json"), "task.snapshot"))
    snap = load_config(profile="cpu", overrides=["task.name=meningioma", "task.snapshot=men.npz"])
    assert config_hash(snap) != config_hash(cfg) and run_key(snap, FP) == run_key(cfg, FP)
    assert run_key(snap, FP) != run_key(snap, "another table")  # the control: the key does follow the data
