"""A config file is never changed silently: duplicate keys and keys set inside a plain value are refused."""

from __future__ import annotations

import pytest

from fedsafe.config import ConfigError, load_config, parse_overrides


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  rounds: 3\n  local_epochs: 2\n  rounds: 7\n")
    with pytest.raises(ConfigError, match=r"my\.yaml: duplicate key 'rounds' at line 4 \(first at line 2\)"):
        load_config(path)


def test_duplicate_top_level_sections_are_refused(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  rounds: 3\nseed: 1\ntrain:\n  local_epochs: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'train' at line 4"):
        load_config(path)


def test_the_same_key_in_two_sections_is_no_duplicate(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("defense:\n  eps: 0.02\ncrn:\n  eps: 0.04\n")
    cfg = load_config(path)
    assert (cfg.defense.eps, cfg.crn.eps) == (0.02, 0.04)


def test_a_duplicate_key_in_a_set_value_is_refused():
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_overrides(["crn.windows={a: 1, a: 2}"])


def test_set_keys_inside_a_plain_value_of_the_file_are_refused_not_dropped(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train: 5\n")
    with pytest.raises(ConfigError, match=r"my\.yaml \(with --set\): train is 5, not a section: cannot set "
                                          r"train\.local_epochs in it"):
        load_config(path, overrides=["train.local_epochs=1"])
    with pytest.raises(ConfigError, match="train"):  # without --set the file alone is refused as before
        load_config(path)


def test_set_keys_into_a_null_section_still_work(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("privacy:\n  calibrate: null\nfederation:\n  uplink_clip: 10\n")
    cfg = load_config(path, overrides=["privacy.calibrate.epsilon=2"])
    assert cfg.privacy.calibrate is not None and cfg.privacy.calibrate.epsilon == 2
