import math

import pytest

from polymodal.llm.choice import choice_from_scores, has_logprobs, score_options, softmax


class FakeScorer:
    """score_continuations only (the llama-cpp shape): the sequence path."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def score_continuations(self, prompt, conts):
        self.calls.append((prompt, list(conts)))
        return [self.table[c] for c in conts]


def test_sequence_path_picks_the_highest_and_softmaxes():
    b = FakeScorer({"walking": -2.0, "sitting": -0.5, "biking": -3.0})
    c = score_options(b, [{"role": "user", "content": "what is it"}], ["walking", "sitting", "biking"])
    assert c.label == "sitting" and c.method == "sequence"
    z = sum(math.exp(v) for v in (-2.0, -0.5, -3.0))
    assert c.probs["sitting"] == pytest.approx(math.exp(-0.5) / z, abs=1e-4)
    assert sum(c.probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert b.calls[0][0] == [{"role": "user", "content": "what is it"}]  # no render: the messages go as they are


def test_render_adds_the_prefix_and_a_space_before_options():
    class Rendering(FakeScorer):
        def render(self, messages):
            return "<chat>" + messages[-1]["content"]

    b = Rendering({" yes": -1.0, " no": -1.0})
    c = score_options(b, [{"role": "user", "content": "ok?"}], ["yes", "no"], answer_prefix="Answer:")
    assert b.calls[0] == ("<chat>ok?Answer:", [" yes", " no"])
    assert c.label == "yes"  # ties go to the earlier option


def test_guards():
    assert has_logprobs(FakeScorer({})) and not has_logprobs(object())
    with pytest.raises(ValueError, match="at least one option"):
        score_options(FakeScorer({}), [], [])
    with pytest.raises(ValueError, match="scoring returned"):
        choice_from_scores(["a", "b"], [0.0, float("nan")], "sequence")
    assert softmax([0.0, 0.0]) == [0.5, 0.5]
