from __future__ import annotations

import json
import re
from pathlib import Path

import pydantic
import pytest

from trainlab.config import Config, flatten_config, load_config
from trainlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_valid_and_frozen() -> None:
    cfg = load_config()
    assert cfg.data.name == "digits" and cfg.model.arch == "small"
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


def test_precedence_defaults_then_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("seed: 7\ntrain:\n  epochs: 3\n  optimizer: {lr: 0.05}\n")
    cfg = load_config(path, ["train.epochs=9"])
    assert cfg.seed == 7  # file beats default
    assert cfg.train.epochs == 9  # override beats file
    assert cfg.train.optimizer.lr == 0.05
    assert cfg.train.batch_size == Config().train.batch_size  # untouched default


def test_json_config(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"layers": [{"type": "conv", "out": 8}, {"type": "relu"}]}}))
    cfg = load_config(path)
    assert cfg.model.arch == "custom"
    assert cfg.model.layers[0].out == 8  # type: ignore[index]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.optimizer.lr=-1"], "invalid config: train.optimizer.lr = -1: input should be greater than 0"),
        (["train.optimizer.name=rmsprop"], "train.optimizer.name = 'rmsprop': input should be 'adam', 'adamw' or 'sgd'"),
        (["train.epocs=3"], "unknown config key 'train.epocs'; valid keys there: epochs, batch_size"),
        (["data.name=svhn"], "data.name = 'svhn': input should be 'digits', 'mnist'"),
        (["model.layers=[{type: conv}]"], "model.layers.0.out is required"),
        (["model.layers=[{type: convolution, out: 3}]"], "model.layers.0.type = 'convolution': must be one of"),
        (["model.arch=custom"], "model.arch is 'custom' but model.layers is empty"),
        (["model.arch=small", "model.layers=[{type: relu}]"], "set model.arch: custom to use the declared layers"),
        (["train.epochs=2", "train.schedule.warmup_epochs=3"], "warm-up must end before training does"),
        (["train.loss.label_smoothing=1.5"], "train.loss.label_smoothing = 1.5: input should be less than 1"),
        (["train.batch_size=0"], "train.batch_size = 0: input should be greater than 0"),
        (["epochs"], "override 'epochs' is not key=value"),
        (["photos.yaml"], "'photos.yaml' looks like a config file but is passed as an override; pass it with -c"),
        (["seed=1", "seed.x=1"], "override 'seed.x': 'seed' is a value (1), not a section"),
    ],
)
def test_bad_values_name_field_value_and_fix(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML or JSON"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("5\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_config(scalar)
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


@pytest.mark.parametrize("value, message", [
    ("[" * 100_000, "override 'train.epochs' nests over 64 levels deep"),  # a 3,000-line RecursionError
    ("- " * 60_000 + "1", "override 'train.epochs' has a value of 120,001 characters; at most 100,000"),
])
def test_deep_or_huge_override_values_are_one_line(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [f"train.epochs={value}"])


@pytest.mark.parametrize("text, message", [
    ("train: " + "[" * 100_000 + "]" * 100_000 + "\n", "nests over 64 levels deep"),  # libyaml's stack: a segfault
    ("train:\n  seed: [" + ",".join(map(str, range(300_000))) + "]\n", "is 2.0 MB; a config file is at most 1 MB"),
    ("train: \xff\n", "is not text"),
], ids=["nested 100,000 deep", "2 MB", "binary"])
def test_huge_deep_or_binary_config_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_flatten_config_gives_dotted_string_params() -> None:
    flat = flatten_config(load_config(None, ["train.optimizer.lr=0.02"]))
    assert flat["train.optimizer.lr"] == "0.02"
    assert flat["data.name"] == "digits"
    assert all(isinstance(v, str) for v in flat.values())


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    assert isinstance(load_config(path), Config)


def test_the_docs_config_example_is_valid(tmp_path: Path) -> None:
    text = (REPO / "docs" / "configs.md").read_text()
    block = text.split("## An example with every section", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme.yaml").write_text(block)
    cfg = load_config(tmp_path / "readme.yaml")
    assert cfg.model.arch == "custom" and cfg.train.schedule.name == "onecycle"


def test_a_home_relative_path_is_expanded_as_a_shell_would() -> None:
    # `data.path=~/photos` reaches trainlab unexpanded (bash expands ~ only at the start of a word)
    cfg = load_config(None, ["data.path=~/photos", "output_dir=~/runs"])
    assert cfg.data.path == Path.home() / "photos" and cfg.output_dir == Path.home() / "runs"
