"""Entity-level precision, recall and F1 with the conlleval definition: an
entity counts as correct only when its span and type both match exactly.
Scores are percentages."""
from fastner.tags import spans


def _prf(correct, predicted, gold):
    p = 100.0 * correct / predicted if predicted else 0.0
    r = 100.0 * correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def entity_scores(gold_sequences, predicted_sequences):
    """Overall and per-type scores: {"precision", "recall", "f1", "per_type", counts...}."""
    if len(gold_sequences) != len(predicted_sequences):
        raise ValueError(f"got {len(gold_sequences)} gold and {len(predicted_sequences)} "
                         f"predicted sentences")
    counts = {}   # type -> [correct, predicted, gold]
    tokens = correct_tokens = 0
    for i, (gold, pred) in enumerate(zip(gold_sequences, predicted_sequences)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {i}: {len(gold)} gold tags but {len(pred)} predicted")
        gold_spans, pred_spans = set(spans(gold)), set(spans(pred))
        for kind, _, _ in gold_spans:
            counts.setdefault(kind, [0, 0, 0])[2] += 1
        for span in pred_spans:
            c = counts.setdefault(span[0], [0, 0, 0])
            c[1] += 1
            c[0] += span in gold_spans
        tokens += len(gold)
        correct_tokens += sum(g == p for g, p in zip(gold, pred))
    return scores_from_counts(counts, tokens, correct_tokens)


def scores_from_counts(counts, tokens, correct_tokens):
    """entity_scores' result from its counts: {type: [correct, predicted, gold]} over the
    types seen in either, and the number of tokens and of correctly tagged ones."""
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    p, r, f = _prf(*total)
    per_type = {}
    for kind in sorted(counts):
        tp, tr, tf = _prf(*counts[kind])
        per_type[kind] = {"precision": tp, "recall": tr, "f1": tf, "support": counts[kind][2],
                          "predicted": counts[kind][1], "correct": counts[kind][0]}
    return {"precision": p, "recall": r, "f1": f, "per_type": per_type,
            "gold_entities": total[2], "predicted_entities": total[1],
            "correct_entities": total[0],
            "token_accuracy": 100.0 * correct_tokens / tokens if tokens else 0.0}


def format_scores(scores):
    lines = [f"{'':8s} {'precision':>9s} {'recall':>9s} {'f1':>9s} {'support':>8s}"]
    for kind, s in scores["per_type"].items():
        lines.append(f"{kind:8s} {s['precision']:9.2f} {s['recall']:9.2f} {s['f1']:9.2f} "
                     f"{s['support']:8d}")
    lines.append(f"{'overall':8s} {scores['precision']:9.2f} {scores['recall']:9.2f} "
                 f"{scores['f1']:9.2f} {scores['gold_entities']:8d}")
    return "\n".join(lines)
