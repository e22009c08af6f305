"""Affective tasks from the NRC lexicon and the GoEmotions / MELD loaders."""

import pytest

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.llm.affect_tasks import (
    EKMAN6,
    PLUTCHIK8,
    build_task,
    load_goemotions_tsv,
    load_meld_csv,
    load_nrc_lexicon,
    load_task,
)


def _words(task, examples):
    from polymodal.llm.affect_tasks import TEMPLATES

    out = set()
    for ex in examples:
        for t in TEMPLATES:
            pre, post = t.split("{w}")
            if ex.text.startswith(pre) and ex.text.endswith(post):
                out.add(ex.text[len(pre):len(ex.text) - len(post)])
                break
    return out


@pytest.mark.parametrize("name,labels", [("plutchik8", PLUTCHIK8), ("ekman6", EKMAN6),
                                         ("sentiment2", ("positive", "negative")),
                                         ("sentiment3", ("positive", "negative", "neutral"))])
def test_build_task_balanced_heldout_words(name, labels):
    task = build_task(name, n_train=160, n_test=48, seed=3)
    assert task.labels == labels and len(task.train) == 160 and len(task.test) == 48
    counts = [sum(e.label == k for e in task.test) for k in range(len(labels))]
    assert max(counts) - min(counts) <= 1
    assert not (_words(task, task.train) & _words(task, task.test))  # held-out words
    lex = load_nrc_lexicon()
    if name in ("plutchik8", "ekman6"):
        for ex in task.test[:20]:
            (w,) = _words(task, [ex])
            assert labels[ex.label] in lex[w]
    assert build_task(name, 160, 48, seed=3).test == task.test  # seeded
    assert task.prompt("x").endswith(":") and task.target(0) == " " + labels[0]


def test_unknown_task_and_bad_sizes():
    with pytest.raises(ConfigError, match="tasks"):
        build_task("valence9")
    with pytest.raises(ConfigError, match="n_train"):
        build_task("ekman6", n_train=0)
    with pytest.raises(ConfigError, match="tasks"):
        load_task("emotions.json")


def test_goemotions_tsv(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_text("I love it\t0\tid1\nso sad\t25\tid2\nmixed\t0,25\tid3\nok\t27\tid4\nyay\t17\tid5\n")
    task = load_goemotions_tsv(p, test_share=0.25)
    assert len(task.train) + len(task.test) == 4  # the multi-label row is skipped
    assert task.labels[25] == "sadness"
    bad = tmp_path / "bad.tsv"
    bad.write_text("fine\t1\tx\nbroken\tjoy\tx\n")
    with pytest.raises(DataFormatError, match=r"bad.tsv, line 2"):
        load_goemotions_tsv(bad)
    bad.write_text("fine\t99\tx\n")
    with pytest.raises(DataFormatError, match="line 1"):
        load_goemotions_tsv(bad)


def test_meld_csv(tmp_path):
    p = tmp_path / "train_sent_emo.csv"
    p.write_text('Sr No.,Utterance,Speaker,Emotion,Sentiment\n1,"Oh, really?",Joey,surprise,positive\n'
                 "2,I hate this,Ross,anger,negative\n3,Okay,Rachel,neutral,neutral\n")
    task = load_meld_csv(p, p)
    assert [e.label for e in task.test] == [2, 3, 0] and task.labels[3] == "anger"
    sent = load_meld_csv(p, p, target="sentiment")
    assert [sent.labels[e.label] for e in sent.test] == ["positive", "negative", "neutral"]
    bad = tmp_path / "bad.csv"
    bad.write_text("Utterance,Emotion\nhi,happy\n")
    with pytest.raises(DataFormatError, match=r"bad.csv, line 2"):
        load_meld_csv(bad)
    bad.write_text("Text,Emotion\nhi,joy\n")
    with pytest.raises(DataFormatError, match="Utterance"):
        load_meld_csv(bad)
