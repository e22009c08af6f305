"""Configs: bounds, overrides, YAML files, clear errors naming the field."""

import pytest
from pydantic import Field

from polymodal.core.config import RecipeConfig, build_config, load_yaml_config, parse_overrides, parse_value
from polymodal.core.errors import ConfigError


class Toy(RecipeConfig):
    epochs: int = Field(5, ge=1)
    lr: float = Field(1e-3, gt=0)
    ks: tuple[int, ...] = (10, 20)


def test_parse_values():
    assert parse_value("5") == 5 and parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("[10, 20]") == [10, 20] and parse_value("null") is None
    assert parse_value("ED") == "ED" and parse_value("true") is True
    assert parse_overrides(["epochs=3", "lr=2e-4"]) == {"epochs": 3, "lr": pytest.approx(2e-4)}


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"field 'epochs'.*greater than or equal to 1.*got 0"):
        build_config(Toy, {"epochs": 0})
    with pytest.raises(ConfigError, match=r"field 'lr'"):
        build_config(Toy, {"lr": "fast"})


def test_unknown_field_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"unknown field 'epoch'.*did you mean 'epochs'"):
        build_config(Toy, {"epoch": 3})


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 7\nks: [5]\n")
    cfg = build_config(Toy, load_yaml_config(p))
    assert cfg.epochs == 7 and cfg.ks == (5,)
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_yaml_config(tmp_path / "missing.yaml")


def test_assignment_is_validated_too():
    cfg = build_config(Toy, {})
    with pytest.raises(Exception, match="epochs"):
        cfg.epochs = -1
