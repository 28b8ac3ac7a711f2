"""The first pass a second-stage (docvote) model trains on: jackknifed predictions.

A second stage learns how far to trust what a first pass said about a word elsewhere
in its document (fastner.features.DocVoteFeature). Trained on the first stage's own
predictions for its own training data, it would learn to trust them blindly: there
they are nearly the gold tags. So the training data's first pass comes from models
that did not see it: the documents are split into ``folds``; for each fold a model
trained like the first stage on the other folds (early stopping on the same dev data)
tags it (Krishnan & Manning 2006 did the same). At tagging time, and on the dev data,
the first pass is the first stage itself.
"""
import dataclasses
import os
import tempfile

import numpy as np


def document_folds(sentences, folds):
    """Each sentence's fold: whole documents, dealt out in turn in document order."""
    order = {}
    return [order.setdefault(s.doc, len(order)) % folds for s in sentences]


def first_stage_config(first_stage, TrainConfig):
    """The TrainConfig the first stage was trained with (its card's), refusing a first
    stage that is itself a second stage."""
    card = first_stage.metadata or {}
    settings = card.get("train_config")
    if not isinstance(settings, dict):
        raise ValueError(f"the first stage {first_stage.name} has no train_config in its card: "
                         f"its folds cannot be trained like it")
    cfg = TrainConfig.from_saved(settings)
    if cfg.second_stage:
        raise ValueError("a first stage cannot itself be a second stage (docvote)")
    return cfg


def jackknife_labels(model, sentences, dev_sentences, cfg, folds, cases, log):
    """{case: labels} — the docvote labels (model.labels_of_tags) of every token of
    ``sentences`` laid end to end, as written ("as-is") and re-cased (``cases``), each
    from the fold model that did not train on its document. ``cfg``: the first stage's
    TrainConfig; fold f trains with seed cfg.seed + 1000 + f."""
    from fastner.inference import InferenceScorer
    from fastner.tagger import Tagger
    from fastner.train import Trainer
    if folds < 2:
        raise ValueError(f"folds must be at least 2; got {folds}")
    fold_of = np.array(document_folds(sentences, folds))
    if len(set(fold_of.tolist())) < folds:
        raise ValueError(f"the training data has fewer documents than --folds ({folds})")
    lengths = np.array([len(s.tokens) for s in sentences])
    starts = np.concatenate([[0], np.cumsum(lengths)])
    labels = {case: np.zeros(int(lengths.sum()), np.int32) for case in ("as-is", *cases)}
    with tempfile.TemporaryDirectory(prefix="fastner-folds-") as where:
        for f in range(folds):
            rest = [s for s, k in zip(sentences, fold_of) if k != f]
            held = [i for i, k in enumerate(fold_of) if k == f]
            log(f"first pass, fold {f + 1}/{folds}: training on {len(rest)} sentences")
            trainer = Trainer(dataclasses.replace(cfg, seed=cfg.seed + 1000 + f),
                              os.path.join(where, f"fold{f}.npz"), quiet=True,
                              log=lambda msg: None)
            fold_model, _ = trainer.run(rest, dev_sentences)
            tagger = Tagger(fold_model, f"fold{f}", scorer=InferenceScorer(fold_model))
            for case in labels:
                texts = [[getattr(t, case)() for t in sentences[i].tokens] if case != "as-is"
                         else sentences[i].tokens for i in held]
                found = model.labels_of_tags(tagger.flat_tags(texts, [sentences[i].doc
                                                                      for i in held]))
                at = 0
                for i in held:
                    n = lengths[i]
                    labels[case][starts[i]:starts[i] + n] = found[at:at + n]
                    at += n
    return labels
