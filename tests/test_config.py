import pytest
import yaml

from ssps.config import Config, ConfigError, dump_config, load_config, to_dict


def test_defaults_and_overrides_are_typed():
    cfg = load_config(
        overrides=["train.epochs=3", "optim.lr=1", "ssps.enabled=true", "method.simclr.projector_dims=[8, 4]"]
    )
    assert cfg.train.epochs == 3
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.ssps.enabled is True
    assert cfg.method.simclr.projector_dims == (8, 4)


def test_frozen():
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.train.epochs = 5


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown key 'train.epoch'"),
        ("trian.epochs=3", "unknown key 'trian'"),
        ("train.epochs=three", "train.epochs: expected an integer"),
        ("train.epochs=3.5", "train.epochs: expected an integer"),
        ("ssps.enabled=1", "ssps.enabled: expected true or false"),
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("train.epochs", "expected key=value"),
        ("train=3", "train: expected a mapping"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epocs: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "train.epochs" in msg and "ssps.num_clusters" in msg
    assert "\n" not in msg


def test_round_trip(tmp_path):
    cfg = load_config(overrides=["encoder.name=ecapa_tdnn"])
    dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg
    assert isinstance(Config(), Config) and to_dict(again) == yaml.safe_load(
        (tmp_path / "resolved.yaml").read_text()
    )


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_shipped_configs_load():
    from pathlib import Path

    files = sorted(Path(__file__).parents[1].glob("configs/**/*.yaml"))
    assert len(files) >= 8
    for f in files:
        if not f.stem.startswith("chain"):  # `ssps chain` configs: tests/test_pseudo.py loads them
            load_config(f)
