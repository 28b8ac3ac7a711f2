"""An ensemble of window networks as one wider window network (derivations §E1).

k models trained alike from different seeds share their inputs' ids (the same
vocabulary and features) and differ in their parameters. Their average emission
scores, (1/k) Σᵢ (Uᵢ hᵢ + cᵢ) with hᵢ = f(Wᵢ xᵢ + bᵢ), are the scores of one
network whose tables hold the k members' vectors side by side, whose first layer is
block-diagonal (member i's kH hidden units see only member i's columns), whose
output layer is [U₁ … U_k] / k with bias mean(cᵢ), and whose CRF transitions are
the members' mean. So an ensemble runs through every path a single model does —
the inference cache, the service, the CLI — with no code of its own.
"""
import numpy as np

from fastner import io
from fastner.features import build_feature
from fastner.model import WindowTagger


def _shared_inputs(models):
    """Refuse members whose inputs differ; the first member's configuration."""
    if len(models) < 2:
        raise ValueError(f"an ensemble needs at least 2 models; got {len(models)}")
    first = models[0].config()
    for i, model in enumerate(models[1:], 1):
        if model.config() != first:
            raise ValueError(f"model {i} is configured unlike model 0 (features, window, "
                             f"hidden units, loss and entity types must be the same)")
        if model.features[0].vocab.words != models[0].features[0].vocab.words:
            raise ValueError(f"model {i} has another vocabulary than model 0")
        for a, b in zip(model.features, models[0].features):
            if getattr(a, "strings", dict)() != getattr(b, "strings", dict)():
                raise ValueError(f"model {i}'s {a.name} feature holds other entries")
    if models[0].chars is not None:
        raise ValueError("ensembles of models with character features are not supported")
    return first


def stack(models):
    """One WindowTagger whose scores and transitions are ``models``' averages."""
    config = _shared_inputs(models)
    k, first = len(models), models[0]
    vocab = first.features[0].vocab
    strings = {}
    for f in first.features:
        strings.update(getattr(f, "strings", dict)())
    features = [build_feature(dict(c, dim=c["dim"] * k), vocab, strings)
                for c in config["features"]]
    H = first.hidden
    out = WindowTagger(features, first.tagset, half_window=first.half_window, hidden=H * k,
                       activation=first.activation, loss=first.loss, dropout=first.dropout)
    p = out.params
    p["W"][...] = 0.0
    for i, member in enumerate(models):
        q = member.params
        units = slice(i * H, (i + 1) * H)
        for f, feature in enumerate(member.features):
            d = feature.dim
            p[f"table.{feature.name}"][:, i * d:(i + 1) * d] = q[f"table.{feature.name}"]
            for position in range(member.K):
                src = position * member.E + member.offsets[f]
                dst = position * out.E + out.offsets[f] + i * d
                p["W"][units, dst:dst + d] = q["W"][:, src:src + d]
        p["b"][units] = q["b"]
        p["U"][:, units] = q["U"] / k
    for name in ("c", "trans", "start", "end"):
        p[name][...] = np.mean([m.params[name] for m in models], axis=0, dtype=np.float64)
    out.word_tile = k             # the file stores the members' shared rows once
    # second stages (docvote) share their first stage (the configurations are equal)
    out.first_stage_file, out.first_stage = first.first_stage_file, first.first_stage
    return out


def trained_rows(paths):
    """The word rows that any of the model files ``paths`` keeps precisely (the rows its
    training changed, fastner.modelfile), for the ensemble's file to keep; None if none."""
    rows = []
    for path in paths:
        arrays, _ = io.load_npz(path, io.MODEL_FORMAT)
        if "param.table.word.f16_rows" in arrays:
            rows.append(arrays["param.table.word.f16_rows"])
    return np.unique(np.concatenate(rows)) if rows else None
