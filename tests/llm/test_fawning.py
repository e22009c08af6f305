"""Fawning data (polymodal.llm.fawning): induction paradigms, the neutral transform, loaders; ccd recipe helpers."""

import json

import pytest

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.llm.fawning import (
    DECEPTIVE_TEMPLATES,
    MISLEADING_TEMPLATES,
    PARADIGMS,
    FawningItem,
    induce,
    load_embedded,
    load_items,
    load_sst2_tsv,
    load_truthfulqa_csv,
    neutral_prompt,
    neutralize,
)


@pytest.fixture(scope="module")
def items():
    return load_embedded()


def test_embedded_benchmark_has_200_items_over_two_tasks_with_sources(items):
    assert len(items) >= 200
    assert {i.task for i in items} == {"sentiment", "factual"}
    assert len({i.id for i in items}) == len(items)
    factual = [i for i in items if i.task == "factual"]
    assert len(factual) >= 40 and all(i.source for i in factual)
    sentiment = [i for i in items if i.task == "sentiment"]
    assert {i.gold for i in sentiment} == {0, 1}
    assert {i.gold_option for i in factual} == {"Yes", "No"}


def test_neutralize_of_induce_is_the_neutral_prompt_for_every_template(items):
    n_templates = {"deceptive": len(DECEPTIVE_TEMPLATES), "misleading": len(MISLEADING_TEMPLATES)}
    for item in items:
        for p in PARADIGMS:
            for t in range(n_templates[p]):
                induced = induce(item, p, t)
                assert induced != neutral_prompt(item)
                assert neutralize(induced) == neutral_prompt(item)


def test_paradigms_carry_the_claim_and_the_wrong_option(items):
    item = items[0]
    assert item.claim in induce(item, "deceptive").split("\n")[0]
    assert induce(item, "misleading").split("\n")[-1].endswith(f"{item.wrong_option}.")
    balanced = neutralize(induce(item, "misleading"), mode="balanced")
    assert balanced.startswith(neutral_prompt(item)) and balanced.endswith("It could be Yes or No.")
    assert neutralize(neutral_prompt(item)) == neutral_prompt(item)  # nothing to strip


def test_bad_paradigm_template_and_item_fail_clearly(items):
    with pytest.raises(ConfigError, match="paradigm"):
        induce(items[0], "flattery")
    with pytest.raises(ConfigError, match="template"):
        induce(items[0], "deceptive", 7)
    with pytest.raises(ValueError, match="distinct"):
        FawningItem("x", "factual", "q?", ("Yes", "No"), 0, 0, "a claim")


def test_truthfulqa_csv_loader(tmp_path):
    p = tmp_path / "TruthfulQA.csv"
    p.write_text('Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n'
                 'Adversarial,Misc,Do cats have nine lives?,No; cats have one life,No,"Yes, cats have nine lives.; '
                 'Cats have seven lives",https://example.org/cats\n'
                 'Adversarial,Misc,Is the sky green?,No,No,Yes the sky is green,https://example.org/sky\n')
    got = load_truthfulqa_csv(p)
    assert len(got) == 2 and got[0].gold == 0 and got[1].gold == 1
    assert got[0].options == ("No; cats have one life", "Yes, cats have nine lives")
    assert got[0].claim == "yes, cats have nine lives"
    assert neutralize(induce(got[1], "deceptive")) == neutral_prompt(got[1])
    bad = tmp_path / "bad.csv"
    bad.write_text("Question,Answer\nq,a\n")
    with pytest.raises(DataFormatError, match="bad.csv, line 1"):
        load_truthfulqa_csv(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("Question,Best Answer,Incorrect Answers\nq,,x\n")
    with pytest.raises(DataFormatError, match="line 2"):
        load_truthfulqa_csv(empty)


def test_sst2_tsv_loader(tmp_path):
    p = tmp_path / "dev.tsv"
    p.write_text("sentence\tlabel\na gorgeous , witty film \t1\nflat and lifeless\t0\n")
    got = load_items(p)
    assert [i.gold_option for i in got] == ["Positive", "Negative"]
    assert [i.wrong_option for i in got] == ["Negative", "Positive"]
    p.write_text("sentence\tlabel\nfine\t1\nmeh\tmaybe\n")
    with pytest.raises(DataFormatError, match="dev.tsv, line 3"):
        load_sst2_tsv(p)
    p.write_text("text\tlabel\nx\t1\n")
    with pytest.raises(DataFormatError, match="line 1"):
        load_sst2_tsv(p)


def test_json_items_and_load_items_errors(tmp_path, items):
    p = tmp_path / "items.json"
    p.write_text(json.dumps({"items": [{"id": "a", "task": "factual", "question": "Q?", "options": ["Yes", "No"],
                                        "gold": 1, "claim": "it is so"}]}))
    got = load_items(p)
    assert got[0].wrong == 0
    p.write_text('{"items": [{"id": "a"}]}')
    with pytest.raises(DataFormatError, match="missing"):
        load_items(p)
    with pytest.raises(ConfigError, match="data"):
        load_items(tmp_path / "nope.json")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="format"):
        load_items(tmp_path / "x.txt")


def test_nrclex_reviews_are_generated_at_run_time():
    import importlib.util

    if importlib.util.find_spec("nrclex") is None:
        pytest.skip("nrclex not installed")
    from polymodal.llm.fawning import nrclex_sentiment_items

    got = nrclex_sentiment_items(6, seed=1)
    assert len(got) == 6 and [i.gold for i in got] == [0, 1] * 3
    assert got == nrclex_sentiment_items(6, seed=1)


def test_recipe_config_selection_and_metrics(items):
    from polymodal.core.config import build_config
    from polymodal.llm.ccd_recipe import ROWS, CCDConfig, row_metrics, select_items

    with pytest.raises(ConfigError, match="paradigms"):
        build_config(CCDConfig, {"paradigms": ["flattery"]})
    with pytest.raises(ConfigError, match="beta"):
        build_config(CCDConfig, {"beta": 2})
    sel = select_items(items, 10, seed=0)
    assert len(sel) == 10 and sum(i.task == "factual" for i in sel) == 5
    assert [i.id for i in sel] == [i.id for i in select_items(items, 10, seed=0)]
    # two items, one paradigm: clean right on both; induced flips one to the wrong option; ccd recovers it
    recs = [{"id": "a", "task": "factual", "gold": 0, "wrong": 1,
             "by": {"deceptive": {"greedy-clean": 0, "greedy-induced": 1, "system-prompt": 1, "cd-no-apc": 0,
                                  "ccd": 0}}},
            {"id": "b", "task": "sentiment", "gold": 1, "wrong": 0,
             "by": {"deceptive": {"greedy-clean": 1, "greedy-induced": 1, "system-prompt": 1, "cd-no-apc": 0,
                                  "ccd": 1}}}]
    m = {r: row_metrics(recs, r) for r in ROWS}
    assert m["greedy-clean"]["accuracy"] == 1.0 and m["greedy-induced"]["accuracy"] == 0.5
    assert m["greedy-induced"]["fawning_rate"] == 0.5 and m["greedy-clean"]["fawning_rate"] == 0.0
    assert m["ccd"]["accuracy_recovered"] == 1.0 and m["cd-no-apc"]["accuracy_recovered"] == 0.0
    assert m["ccd"]["accuracy/factual/deceptive"] == 1.0
