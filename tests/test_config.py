"""Config: TOML recipes in, JSON beside the weights out; typos and impossible values refused by name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagger.config import CONFIG_VERSION, Config, load_toml
from tagger.errors import ConfigError
from tagger.commands import make_config, parse_features


def test_json_round_trip_keeps_every_setting():
    config = Config(hidden_size=7, features=[1, 2], optimizer="adam", lr=0.5, tag_scheme="iob2")
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert json.loads(json.dumps(config.to_dict()))["version"] == CONFIG_VERSION


def test_toml_tables_are_flattened_and_ints_are_accepted_for_floats(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('[model]\nhidden_size = 64\nchar_encoder = "lstm"\n\n[train]\nlr = 1\nepochs = 5\n'
                    "features = [1, 2]\n")
    config = Config.from_dict(load_toml(path), source=str(path))
    assert (config.hidden_size, config.char_encoder, config.epochs, config.features) == (64, "lstm", 5, [1, 2])
    assert config.lr == 1.0 and isinstance(config.lr, float)


@pytest.mark.parametrize("values, fragment", [
    ({"hiden_size": 8}, "unknown setting(s): hiden_size"),
    ({"epochs": "10"}, "epochs must be int, not '10'"),
    ({"epochs": 2.5}, "epochs must be int"),
    ({"dropout": True}, "dropout must be float, not True"),
    ({"epochs": True}, "epochs must be int, not True"),
    ({"optimizer": "sgdd"}, "optimizer must be one of sgd, adam"),
    ({"tag_scheme": "bio"}, "tag_scheme must be one of"),
    ({"unseen_remedies": "yes"}, "unseen_remedies must be one of auto, on, off, not 'yes'"),
    ({"hidden_size": 0}, "hidden_size must be at least 1"),
    ({"word_dim": -5}, "word_dim must be at least 1"),
    ({"patience": 0}, "patience must be at least 1"),
    ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ({"lr": 0.0}, "lr must be positive"),
    ({"lr": float("nan")}, "lr must be positive"),
    ({"clip": -1.0}, "clip must be at least 0"),
    ({"temperature": 0.0}, "temperature must be a positive number"),
    ({"temperature": float("inf")}, "temperature must be a positive number"),
    ({"features": [1, "pos"]}, "features must be a list of column indices"),
    ({"version": CONFIG_VERSION + 1}, f"config version {CONFIG_VERSION + 1} is not supported"),
])
def test_bad_values_are_refused_by_name_and_source(values, fragment):
    with pytest.raises(ConfigError) as info:
        Config.from_dict(values, source="recipe.toml")
    assert str(info.value).startswith("recipe.toml: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize("content, fragment", [
    (None, "no such file"), ("epochs = \n", "invalid TOML"), (b"epochs = 1 # \xff\n", "invalid TOML")])
def test_unreadable_toml_names_the_file(content, fragment, tmp_path):
    path = tmp_path / "recipe.toml"
    if content is not None:
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)
    with pytest.raises(ConfigError, match="is a directory"):
        load_toml(tmp_path)


def test_command_line_options_override_the_file(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text("epochs = 5\nseed = 1\n")
    config = make_config(path, {"epochs": 2}, "pos,3")
    assert (config.epochs, config.seed, config.features) == (2, 1, [1, 3])
    assert make_config(None, {}, None) == Config()


def test_feature_names_and_indices():
    assert parse_features("pos, chunk") == [1, 2]
    assert parse_features("2,1") == [2, 1]
    with pytest.raises(ConfigError, match="'lemma' is neither a column index"):
        parse_features("pos,lemma")


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_survives_the_trip_through_a_model_directory(recipe: Path):
    config = Config.from_dict(load_toml(recipe), source=str(recipe))  # no unknown key, no wrong type
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
