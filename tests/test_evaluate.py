import random

import pytest

from fastner.evaluate import entity_scores


def test_hand_computed_example():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-MISC"]]
    s = entity_scores(gold, pred)
    assert (s["correct_entities"], s["predicted_entities"], s["gold_entities"]) == (2, 4, 3)
    assert s["precision"] == pytest.approx(50.0)
    assert s["recall"] == pytest.approx(200 / 3)
    assert s["f1"] == pytest.approx(2 * 50 * (200 / 3) / (50 + 200 / 3))
    assert s["per_type"]["LOC"]["recall"] == 0.0 and s["per_type"]["PER"]["f1"] == 100.0


def test_partial_span_is_wrong():
    s = entity_scores([["B-PER", "I-PER"]], [["B-PER", "O"]])
    assert s["f1"] == 0.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="sentence 0"):
        entity_scores([["O", "O"]], [["O"]])


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_conlleval(seed):
    """Cross-check against conlleval (a line-for-line Python port of CoNLL's conlleval.pl)
    on random, often ill-formed, tag sequences."""
    conlleval = pytest.importorskip("conlleval")
    rng = random.Random(seed)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    gold, pred, lines = [], [], []
    for _ in range(200):
        n = rng.randint(1, 15)
        g = [rng.choice(tags) for _ in range(n)]
        p = [t if rng.random() < 0.7 else rng.choice(tags) for t in g]
        gold.append(g)
        pred.append(p)
        lines += [f"w {a} {b}" for a, b in zip(g, p)] + [""]
    ours = entity_scores(gold, pred)
    theirs = conlleval.evaluate(lines)
    overall = theirs["overall"]["chunks"]
    assert ours["correct_entities"] == overall["stats"]["correct"]
    assert ours["predicted_entities"] == overall["stats"]["pred"]
    assert ours["gold_entities"] == overall["stats"]["gold"]
    assert ours["precision"] == pytest.approx(100 * overall["evals"]["prec"])
    assert ours["recall"] == pytest.approx(100 * overall["evals"]["rec"])
    assert ours["f1"] == pytest.approx(100 * overall["evals"]["f1"])
    for kind, s in ours["per_type"].items():
        assert s["f1"] == pytest.approx(100 * theirs["slots"]["chunks"][kind]["evals"]["f1"])
        assert s["support"] == theirs["slots"]["chunks"][kind]["stats"]["gold"]


def test_every_count_and_score_of_a_hand_example():
    from fastner.evaluate import format_scores
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-MISC", "O"]]
    s = entity_scores(gold, pred)
    assert s["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0,
                "correct": 0},
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 1,
                 "correct": 0},
        "ORG": {"precision": 50.0, "recall": 100.0, "f1": pytest.approx(200 / 3),
                "support": 1, "predicted": 2, "correct": 1},
        "PER": {"precision": 100.0, "recall": 100.0, "f1": 100.0, "support": 1,
                "predicted": 1, "correct": 1}}
    assert s["token_accuracy"] == pytest.approx(100 * 5 / 7)      # both sentences counted
    assert format_scores(s).splitlines() == [
        "         precision    recall        f1  support",
        "LOC           0.00      0.00      0.00        1",
        "MISC          0.00      0.00      0.00        0",
        "ORG          50.00    100.00     66.67        1",
        "PER         100.00    100.00    100.00        1",
        "overall      50.00     66.67     57.14        3"]


def test_nothing_predicted_or_nothing_to_find_scores_zero_not_an_error():
    none_predicted = entity_scores([["B-PER", "O"]], [["O", "O"]])
    assert (none_predicted["precision"], none_predicted["recall"], none_predicted["f1"]) == \
        (0.0, 0.0, 0.0)
    nothing_to_find = entity_scores([["O"]], [["B-PER"]])
    assert (nothing_to_find["precision"], nothing_to_find["recall"]) == (0.0, 0.0)
    empty = entity_scores([], [])
    assert empty["f1"] == 0.0 and empty["token_accuracy"] == 0.0 and empty["per_type"] == {}


def test_a_different_number_of_sentences_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="^got 2 gold and 1 predicted sentences$"):
        entity_scores([["O"], ["O"]], [["O"]])
