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
