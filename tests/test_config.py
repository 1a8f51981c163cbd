import pytest

from fedsafe.config import ConfigError, config_hash, load_config, parse_overrides, to_yaml


def test_profiles_and_overrides():
    cpu = load_config()
    assert cpu.profile == "cpu" and cpu.model.width == 0.25 and cpu.task.image_size == 64
    paper = load_config(profile="paper")
    assert (paper.model.width, paper.task.image_size, paper.train.rounds, paper.train.local_epochs) == (1.0, 100, 50,
                                                                                                       20)
    c = load_config(overrides=["train.rounds=3", "task.name=glioma", "federation.uplink_clip=null"])
    assert c.train.rounds == 3 and c.task.name == "glioma" and c.federation.uplink_clip is None


def test_yaml_file_over_profile_and_set_over_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("profile: cpu\ntrain:\n  rounds: 7\n  lr: 0.01\n")
    c = load_config(p, overrides=["train.rounds=9"])
    assert (c.train.rounds, c.train.lr, c.train.local_epochs) == (9, 0.01, 5)


def test_round_trip_and_hash(tmp_path):
    c = load_config(overrides=["seed=3"])
    p = tmp_path / "out.yaml"
    p.write_text(to_yaml(c))
    again = load_config(p)
    assert again == c and config_hash(again) == config_hash(c)
    assert config_hash(load_config(overrides=["seed=4"])) != config_hash(c)


@pytest.mark.parametrize("text, message", [
    ("train:\n  lr_rate: 0.1\n", "unknown key 'train.lr_rate'"),
    ("trian:\n  rounds: 2\n", "unknown key 'trian'"),
    ("train:\n  rounds: 0\n", "train.rounds"),
    ("train:\n  optimizer: rmsprop\n", "train.optimizer"),
    ("splits:\n  num_shards: 10\n", "num_shards (10) must be a multiple"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("train: [unclosed\n", "not valid YAML at line"),
])
def test_bad_config_is_a_one_line_error_naming_the_key(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert message in str(e.value) and "\n" not in str(e.value) and str(p) in str(e.value)


def test_bad_overrides_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["train.rounds"])
    with pytest.raises(ConfigError, match="unknown key 'model.depth'"):
        load_config(overrides=["model.depth=3"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown profile 'gpu'"):
        load_config(profile="gpu")
    with pytest.raises(ConfigError, match="privacy.calibrate needs federation.uplink_clip"):
        load_config(overrides=["privacy.calibrate.epsilon=1.0"])
