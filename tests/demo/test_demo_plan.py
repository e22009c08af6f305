"""The demo plan: recipe choice, settings and overrides, and demo.json (issue 12)."""

import pytest

from polymodal.core.errors import ConfigError, PolymodalError
from polymodal.core.registry import FAMILIES
from polymodal.demo.plan import DemoPlan, demo_recipes, parse_recipe_overrides, read_status, setting_overrides


def test_sixteen_demo_recipes_in_family_order():
    recipes = demo_recipes()
    assert len(recipes) == 16
    order = [FAMILIES.index(r.family) for r in recipes]
    assert order == sorted(order)
    assert {r.family for r in recipes} == set(FAMILIES)


def test_every_demo_recipe_declares_its_demo_smoke_and_headline():
    for r in demo_recipes():
        assert r.smoke_settings, f"{r.name} has no smoke_settings"
        for field in (*r.demo_settings, *r.smoke_settings):
            assert field in r.config_cls.model_fields
        if r.headline:
            method, bases = r.headline
            assert method not in bases and bases, r.name


def test_only_keeps_display_order_and_rejects_unknown_names_with_a_hint():
    assert [r.name for r in demo_recipes(["ccd", "nlgcl"])] == ["nlgcl", "ccd"]
    with pytest.raises(ConfigError, match=r"'nlgc'.*did you mean 'nlgcl'"):
        demo_recipes(["nlgc"])
    with pytest.raises(ConfigError, match="not a demo recipe"):
        demo_recipes(["lightgcn"])  # a baseline, not a paper's main recipe


def test_settings_and_recipe_overrides():
    nlgcl = demo_recipes(["nlgcl"])[0]
    assert setting_overrides(nlgcl, "quick") == {}
    assert setting_overrides(nlgcl, "smoke") == nlgcl.smoke_settings
    with pytest.raises(ConfigError, match="--setting"):
        setting_overrides(nlgcl, "fast")
    assert parse_recipe_overrides(["nlgcl.epochs=5", "nlgcl.lr=1e-3"], [nlgcl]) == {"nlgcl": {"epochs": 5, "lr": 0.001}}
    for bad, msg in (("epochs=5", "RECIPE.FIELD=VALUE"), ("ccd.n_items=3", "not among"),
                     ("nlgcl.epoch=5", "did you mean 'epochs'"), ("nlgcl.epochs", "RECIPE.FIELD=VALUE")):
        with pytest.raises(ConfigError, match=msg):
            parse_recipe_overrides([bad], [nlgcl])


def test_plan_round_trip_and_user_overrides_win(tmp_path):
    nlgcl = demo_recipes(["nlgcl"])[0]
    plan = DemoPlan.build([nlgcl], "smoke", {"nlgcl": {"epochs": 2}})
    assert plan.overrides["nlgcl"] == {**nlgcl.smoke_settings, "epochs": 2}
    plan.save(tmp_path)
    again = DemoPlan.load(tmp_path)
    assert again == plan
    with pytest.raises(PolymodalError, match="not a demo folder"):
        DemoPlan.load(tmp_path / "nowhere")
    (tmp_path / "demo.json").write_text("{not json")
    with pytest.raises(PolymodalError, match="not a valid demo plan"):
        DemoPlan.load(tmp_path)
    assert read_status(tmp_path / "nlgcl") == {"status": "pending"}
