"""The trainer: vocabulary and features from the training data, GloVe
initialisation, shuffled mini-batches, an optimiser with row-sparse embedding
updates, learning-rate schedule, gradient clipping, early stopping on dev
entity F1, per-epoch atomic checkpoints with resume, a JSON-lines log and a
training-curve plot.
"""
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from fastner import __version__, _kernels, io
from fastner.evaluate import entity_scores, scores_from_counts
from fastner.features import PAD, UNK, GazetteerFeature, Vocab, make_features, normalize_word
from fastner.gcpause import frozen_heap, paused_gc
from fastner.inference import InferenceScorer
from fastner.model import WindowTagger, window_columns
from fastner.modelfile import model_arrays, model_from_arrays, save_model
from fastner.tags import TagSet, spans

OPTIMIZERS = ("sgd", "adagrad", "adam")


def _option(default, help):
    """A TrainConfig field with the help text `fastner train --help` shows."""
    # runs when TrainConfig is defined, at import, where mutmut's switch cannot reach;
    # tests/test_cli_help.py checks every default and help text it makes
    return field(default=default, metadata={"help": help})  # pragma: no mutate


@dataclass
class TrainConfig:
    epochs: int = _option(25, "most epochs to train")
    batch_size: int = _option(32, "windows per batch (whole sentences up to this many for crf)")
    optimizer: str = _option("adam", "adam, adagrad or sgd")
    lr: float = _option(1e-3, "learning rate")
    lr_decay: float = _option(0.8, "learning rate multiplied by this after every epoch")
    momentum: float = _option(0.9, "sgd only")
    emb_lr_scale: float = _option(1.0, "embedding tables learn at lr times this (0 freezes "
                                       "them)")
    clip: float = _option(5.0, "global gradient-norm clip (0 disables)")
    patience: int = _option(5, "epochs without a better dev F1 before stopping; 0: no early "
                               "stopping, train every epoch and keep the last (a final fit "
                               "on train + dev, whose dev score then says nothing)")
    seed: int = _option(0, "random seed: same seed, data and build give the same model")
    hidden: int = _option(300, "hidden units")
    half_window: int = _option(2, "words each side of the centre word (window 2h+1)")
    activation: str = _option("tanh", "tanh, hardtanh, relu or sigmoid")
    loss: str = _option("crf", "crf (sentence-level likelihood) or softmax (per token)")
    dropout: float = _option(0.0, "dropout on the hidden layer")
    word_dropout: float = _option(0.1, "chance of replacing a training word by UNK")
    features: str = _option("caps:5", "feature embeddings besides the word, KIND:DIM,... "
                                      "(caps, suffixN, prefixN, shape, doccase, "
                                      "gazetteers, gaz_LIST, chars: DIM character-CNN "
                                      "filters) or none")
    glove_words: int = _option(400000, "most frequent GloVe words kept (0: random word "
                                       "vectors, no GloVe)")
    word_dim: int = _option(50, "word vector size (50 with GloVe)")
    case_lower: float = _option(0.15, "chance that a training sentence is seen all lower-case "
                                      "in an epoch (case-robust training; 0 turns it off)")
    case_upper: float = _option(0.05, "chance that a training sentence is seen all upper-case "
                                      "in an epoch")
    gazetteer_dropout: float = _option(0.0, "chance that a gazetteer match in a training "
                                            "window is hidden (the network learns not to "
                                            "trust the lists blindly)")
    first_stage: str = _option("", "a second stage (--features ...,docvote): the first-stage "
                                   "model (name or file) whose tags elsewhere in the "
                                   "document it reads")
    folds: int = _option(2, "a second stage: document folds of the jackknifed first pass "
                            "over the training data")

    @classmethod
    def from_saved(cls, settings):
        """The TrainConfig a card or checkpoint saved (``asdict``'s dict); settings this
        version does not know are left out, those it adds take their defaults."""
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})

    @property
    def second_stage(self):
        """Whether the features make this a second stage (docvote)."""
        names = [item.partition(":")[0].strip() for item in self.features.split(",")]
        return "docvote" in names

    @property
    def cases(self):
        """The re-cased copies of the training data this configuration draws from."""
        return [case for case, share in (("lower", self.case_lower), ("upper", self.case_upper))
                if share > 0]

    def validate(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0; got {self.patience}")
        if self.half_window < 0:
            raise ValueError(f"half_window must be >= 0; got {self.half_window}")
        for name in ("lr", "lr_decay", "momentum", "emb_lr_scale", "clip", "dropout",
                     "word_dropout", "case_lower", "case_upper", "gazetteer_dropout"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number; got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1); got {self.word_dropout}")
        if not 0.0 <= self.gazetteer_dropout < 1.0:
            raise ValueError(f"gazetteer_dropout must be in [0, 1); got "
                             f"{self.gazetteer_dropout}")
        if not (0.0 <= self.case_lower and 0.0 <= self.case_upper
                and self.case_lower + self.case_upper <= 1.0):
            raise ValueError(f"case_lower and case_upper must be chances summing to at most 1; "
                             f"got {self.case_lower} and {self.case_upper}")
        if self.glove_words and self.word_dim != 50:
            raise ValueError("GloVe 6B vectors are 50-d: use --word-dim 50 or --glove-words 0")
        if self.second_stage and not self.first_stage:
            raise ValueError("a docvote model is a second stage: name its first stage with "
                             "--first-stage (e.g. --first-stage fast)")
        if self.first_stage and not self.second_stage:
            raise ValueError("--first-stage is for a second stage: add docvote to --features")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2; got {self.folds}")


def artifact_paths(out):
    """Files written beside the model ``out`` (e.g. models/x.npz)."""
    stem = out[:-4] if out.endswith(".npz") else out
    return {"model": out, "card": stem + ".json", "checkpoint": stem + ".checkpoint.npz",
            "log": stem + ".train.jsonl", "plot": stem + ".train.png"}


# -- data ------------------------------------------------------------------

class EncodedSentences:
    """Tagged sentences as the network sees them: per-feature window ids, gold tag ids
    and sentence lengths (made once per run for the training and the dev data).
    ``cases`` adds the window ids of the same sentences written all lower-case
    and/or all upper-case, for case-robust training (train_epoch). With character
    features, one Spellings numbers the spellings of all of them."""

    def __init__(self, model, sentences, cases=(), first_pass=None):
        # first_pass: a second stage's first-pass labels of the tokens as written
        # ("as-is") and of each re-cased copy, laid end to end (two_stage.jackknife_labels);
        # None: the model's first stage tags them
        first_pass = first_pass or {}
        self.sentences = sentences
        self.lengths = np.array([len(s.tokens) for s in sentences], dtype=np.int32)
        docs = [s.doc for s in sentences]
        self.spellings = model.new_spellings()
        tokens = [t for s in sentences for t in s.tokens]
        # (tokens, K, columns) window ids, as the epoch takes them, and per column, as
        # the dev forward pass takes them; every sentence's tokens in one call
        self.windows_bkc = model.stacked_sentence_windows(tokens, self.lengths, docs,
                                                          self.spellings,
                                                          first_pass.get("as-is"))
        self.ids = window_columns(self.windows_bkc)
        self.cased_bkc = {case: model.stacked_sentence_windows(
            [getattr(t, case)() for t in tokens], self.lengths, docs, self.spellings,
            first_pass.get(case)) for case in cases}
        self.y = (np.concatenate([model.tagset.encode(s.tags) for s in sentences])
                  if sentences else np.zeros(0, np.int32))
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @property
    def tokens(self):
        return int(self.lengths.sum())

    def gold_spans(self, tagset):
        """The gold entities as flat arrays (start, end, type index into
        tagset.entity_types), by the conlleval definition (fastner.tags.spans); made
        once, on first use."""
        if getattr(self, "_gold_spans", None) is None:
            index = {kind: k for k, kind in enumerate(tagset.entity_types)}
            found = [(at + a, at + b, index[kind]) for sent, at in zip(self.sentences,
                                                                       self.starts.tolist())
                     for kind, a, b in spans(sent.tags)]
            self._gold_spans = tuple(np.array(column, np.int64).reshape(-1)
                                     for column in (zip(*found) if found else ((), (), ())))
        return self._gold_spans


def build_model(cfg, train_sentences, log=print):
    """A freshly initialised model whose vocabulary covers GloVe's top words and the training words."""
    rng = np.random.default_rng(cfg.seed)
    train_words = []
    seen = set()
    for sent in train_sentences:
        for tok in sent.tokens:
            key = normalize_word(tok)
            if key not in seen:
                seen.add(key)
                train_words.append(key)
    glove_words, glove_vectors = [], None
    if cfg.glove_words:
        from fastner.glove import load_glove
        glove_words, glove_vectors = load_glove(cfg.glove_words)
        log(f"GloVe: {len(glove_words)} words x {glove_vectors.shape[1]}")
    glove_set = set(glove_words)
    vocab = Vocab(glove_words + [w for w in train_words if w not in glove_set])
    features = make_features(cfg.features, train_sentences, vocab, cfg.word_dim)
    tagset = TagSet.from_sequences(s.tags for s in train_sentences)
    model = WindowTagger(features, tagset, half_window=cfg.half_window, hidden=cfg.hidden,
                         activation=cfg.activation, loss=cfg.loss, dropout=cfg.dropout)
    word_init = None
    if glove_vectors is not None:
        rows = np.array([vocab.index[w] for w in glove_words], dtype=np.int64)
        word_init = (rows, glove_vectors)
    model.init_params(rng, word_init)
    log(f"vocabulary: {len(vocab)} words ({len(glove_words)} from GloVe); features: "
        + ", ".join(f"{f.name}:{f.dim}x{f.size}" for f in features)
        + f"; tags: {len(tagset)}; parameters: {model.flat.size}")
    return model


def epoch_arrays(data, cfg, rng, model):
    """The batches of one epoch, assembled in one vectorised pass before the first:
    shuffle, take every window's ids at once, then re-case, drop words and hide
    gazetteer matches over the whole epoch. Returns the windows' ids (B, K, columns),
    gold tags (B,) and the batches' bounds in them (0, then each batch's end); for
    the CRF loss also the sentence lengths and the batches' bounds in those (whole
    sentences until a batch holds batch_size tokens), for the softmax loss, whose
    batches are batch_size windows from anywhere, None and None."""
    if cfg.loss == "softmax":
        rows = rng.permutation(data.tokens)
        bounds = list(range(0, len(rows), cfg.batch_size)) + [len(rows)]
        sentence_bounds, lengths = None, None
        per_draw = np.ones(len(rows), dtype=np.int64)      # re-cased window by window
    else:
        order = rng.permutation(len(data.lengths))
        order = order[data.lengths[order] > 0]
        lengths = data.lengths[order]
        firsts = np.cumsum(lengths) - lengths              # each sentence's first row here
        rows = (np.repeat(data.starts[order] - firsts, lengths)
                + np.arange(int(lengths.sum())))
        bounds, sentence_bounds, count = [0], [0], 0
        for i, n in enumerate(lengths.tolist()):
            count += n
            if count >= cfg.batch_size or i == len(lengths) - 1:
                bounds.append(bounds[-1] + count)
                sentence_bounds.append(i + 1)
                count = 0
        per_draw = lengths                                 # re-cased sentence by sentence
    ids = data.windows_bkc[rows]
    if cfg.cases:
        _recase(ids, rows, np.repeat(rng.random(len(per_draw)), per_draw), data, cfg)
    if cfg.word_dropout > 0:                               # derivations §U4
        words = ids[:, :, 0]
        words[(rng.random(words.shape) < cfg.word_dropout) & (words > UNK)] = UNK
    if cfg.gazetteer_dropout > 0:
        _hide_gazetteer_matches(ids, model, cfg.gazetteer_dropout, rng)
    return ids, data.y[rows], bounds, lengths, sentence_bounds


def epoch_batches(data, cfg, rng, model):
    """epoch_arrays one batch at a time: its windows' ids (B, K, columns) as one
    contiguous slice, gold tags (B,) and sentence lengths (None for the softmax loss)."""
    ids, y, bounds, lengths, sentence_bounds = epoch_arrays(data, cfg, rng, model)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        yield (ids[a:b], y[a:b], None if lengths is None
               else lengths[sentence_bounds[i]:sentence_bounds[i + 1]])


# -- optimiser -------------------------------------------------------------

# The state each optimiser keeps per parameter, by name.
SLOTS = {"sgd": ("momentum",), "adagrad": ("sum_sq",), "adam": ("m", "v")}
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


class TableSlots(NamedTuple):
    """One embedding table's parameter, gradient and optimiser slots (views)."""
    param: np.ndarray
    grad: np.ndarray
    slots: dict


class Optimizer:
    """SGD with momentum, AdaGrad or Adam over the flat parameter buffer.

    Dense parameters (W, b, U, c, transitions) are updated as one slice; the
    embedding tables only at the rows the batch touched ("lazy" sparse
    updates: untouched rows and their optimiser state do not move; derivations
    §U2). ``ops`` supplies the Adam kernels (fastner._kernels, or
    fastner.reference for its NumPy twin).
    """

    def __init__(self, model, cfg, ops=_kernels):
        self.model, self.cfg, self.ops = model, cfg, ops
        self.grad = np.zeros_like(model.flat)
        self.grads = model.views(self.grad)
        self.slots = {name: np.zeros_like(model.flat) for name in SLOTS[cfg.optimizer]}
        self.t = 0
        self.dense = slice(0, model.dense_size)
        slot_tables = {name: model.tables(model.views(buf)) for name, buf in self.slots.items()}
        self.tables = [TableSlots(param, grad, {name: slot_tables[name][i] for name in self.slots})
                       for i, (param, grad) in enumerate(zip(model.tables(),
                                                             model.tables(self.grads)))]

    def _update(self, param, grad, slots, lr):
        """SGD with momentum or AdaGrad on one slice (Adam goes through the kernels)."""
        if self.cfg.optimizer == "sgd":
            momentum = slots["momentum"]
            momentum *= self.cfg.momentum
            momentum += grad
            param -= lr * momentum
        else:
            sum_sq = slots["sum_sq"]
            sum_sq += grad * grad
            param -= lr * grad / (np.sqrt(sum_sq) + 1e-8)

    def clip_scale(self, touched):
        """min(1, clip/‖g‖) over the dense gradient and the touched table rows (§U3)."""
        if self.cfg.clip <= 0:
            return 1.0
        dense_g = self.grad[self.dense]
        sq = float(np.dot(dense_g, dense_g))
        for table, rows in zip(self.tables, touched):
            sq += float(np.sum(table.grad[rows] ** 2))
        norm = np.sqrt(sq)
        return self.cfg.clip / norm if norm > self.cfg.clip else 1.0

    def step(self, touched, lr):
        """Apply the accumulated gradient, then zero it. touched: unique ids per table."""
        self.t += 1
        scale = self.clip_scale(touched)
        if self.cfg.optimizer == "adam":
            self._adam_step(touched, lr, scale)
            return
        dense_g = self.grad[self.dense]
        if scale != 1.0:
            dense_g *= scale
            for table, rows in zip(self.tables, touched):
                table.grad[rows] *= scale
        self._update(self.model.flat[self.dense], dense_g,
                     {name: buf[self.dense] for name, buf in self.slots.items()}, lr)
        dense_g[...] = 0.0
        for table, rows in zip(self.tables, touched):
            if self.cfg.emb_lr_scale > 0:
                row_slots = {name: slot[rows] for name, slot in table.slots.items()}
                p_rows = table.param[rows]
                self._update(p_rows, table.grad[rows], row_slots, lr * self.cfg.emb_lr_scale)
                table.param[rows] = p_rows
                for name, slot in table.slots.items():
                    slot[rows] = row_slots[name]
            table.grad[rows] = 0.0

    def adam_step_size(self, lr):
        """Adam's step size at step t with the bias corrections folded in (§U2)."""
        return lr * np.sqrt(1 - ADAM_BETA2 ** self.t) / (1 - ADAM_BETA1 ** self.t)

    def _adam_step(self, touched, lr, scale):
        """Adam in one pass per slice (the ops' adam_update kernels): the dense
        parameters, then each table at its touched rows; gradients are consumed."""
        step = self.adam_step_size

        dense, m, v = self.dense, self.slots["m"], self.slots["v"]
        self.ops.adam_update(self.model.flat[dense], self.grad[dense], m[dense], v[dense],
                             step(lr), ADAM_BETA1, ADAM_BETA2, ADAM_EPS, scale)
        for table, rows in zip(self.tables, touched):
            rows = np.ascontiguousarray(rows, dtype=np.int32)
            if self.cfg.emb_lr_scale > 0:
                self.ops.adam_update_rows(table.param, table.grad, table.slots["m"],
                                          table.slots["v"], rows,
                                          step(lr * self.cfg.emb_lr_scale), ADAM_BETA1,
                                          ADAM_BETA2, ADAM_EPS, scale)
            else:
                table.grad[rows] = 0.0


# -- training --------------------------------------------------------------

# a word table this tall or taller is checkpointed at the rows training changes only
CHECKPOINT_ALL_ROWS_BELOW = 4096


def fused_sgd_step(model, cfg):
    """The fused SGDStep kernel for this model, when the configuration is exactly what
    it computes (plain SGD on the softmax loss: no momentum, clipping, hidden dropout
    or embedding rate; derivations §U1), else None. Word dropout and re-casing change
    the ids before the step, so they combine with it."""
    if not (cfg.optimizer == "sgd" and cfg.loss == "softmax" and cfg.momentum == 0
            and cfg.clip == 0 and cfg.dropout == 0 and cfg.emb_lr_scale == 1.0
            and model.chars is None and model.ops is _kernels and model.dtype == np.float32):
        return None
    p = model.params
    return _kernels.SGDStep(model.tables(), p["W"], p["b"], p["U"], p["c"], model.activation,
                            model.offsets, model.K)


def fused_adam_crf_step(model, opt, cfg):
    """The fused AdamCRFStep kernel for this model and optimiser when the configuration
    is what it computes (Adam on the CRF loss, no hidden dropout, no character
    features: the shipped configuration; derivations §U5), else None."""
    if not (cfg.optimizer == "adam" and cfg.loss == "crf" and cfg.dropout == 0
            and model.chars is None and model.ops is _kernels and model.dtype == np.float32):
        return None
    return _kernels.AdamCRFStep(model.flat, opt.grad, opt.slots["m"], opt.slots["v"],
                                model.layout, model.dense_size,
                                model.mask_trans.astype(np.float32),
                                model.mask_start.astype(np.float32), model.activation,
                                model.offsets, model.K, cfg.clip, cfg.emb_lr_scale,
                                ADAM_BETA1, ADAM_BETA2, ADAM_EPS)


def train_epoch(model, opt, data, cfg, lr, rng, bar=None, fused=True):
    """One pass over the training data in shuffled batches; returns (summed loss, tokens).
    Through a fused step kernel where one applies (``fused``): SGDStep for plain SGD on
    the softmax loss, AdamCRFStep for Adam on the CRF; else the model's backward and
    the Optimizer."""
    fused_step = fused_sgd_step(model, cfg) if fused else None
    adam_step = fused_adam_crf_step(model, opt, cfg) if fused else None
    if adam_step is not None:
        return _adam_crf_epoch(adam_step, opt, data, cfg, lr, rng, bar, model)
    total_loss, seen = 0.0, 0
    for ids, y, lengths in epoch_batches(data, cfg, rng, model):
        if fused_step is not None:
            loss = fused_step.step(ids, y, lr)
        else:
            columns = [np.ascontiguousarray(ids[:, :, f]) for f in range(ids.shape[2])]
            loss = model.loss_and_backward(columns, y, lengths, opt.grads, rng,
                                           data.spellings)
            opt.step([np.unique(f) for f in columns[:len(model.features)]], lr)
        total_loss += loss * len(y)
        seen += len(y)
        if bar is not None:
            bar.update(len(y))
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
    return total_loss, seen


STEPS_PER_CALL = 256     # fused steps per kernel call (~11k tokens): the bar still moves


def _adam_crf_epoch(adam_step, opt, data, cfg, lr, rng, bar, model):
    """train_epoch through AdamCRFStep.steps, STEPS_PER_CALL batches per call: the
    same steps in the same order as one ``step`` call per batch, without a Python
    round trip per batch."""
    ids, y, bounds, lengths, sentence_bounds = epoch_arrays(data, cfg, rng, model)
    ends = np.asarray(bounds[1:], dtype=np.int32)
    sentence_ends = np.asarray(sentence_bounds[1:], dtype=np.int32)
    total_loss, seen = 0.0, 0
    for first in range(0, len(ends), STEPS_PER_CALL):
        last = min(first + STEPS_PER_CALL, len(ends))
        sizes = np.empty((2, last - first), dtype=np.float32)   # as step() rounds them
        for i in range(last - first):
            opt.t += 1
            sizes[0, i] = opt.adam_step_size(lr)
            sizes[1, i] = opt.adam_step_size(lr * cfg.emb_lr_scale)
        a, b = bounds[first], bounds[last]
        sa, sb = sentence_bounds[first], sentence_bounds[last]
        losses = adam_step.steps(ids[a:b], y[a:b], lengths[sa:sb], ends[first:last] - a,
                                 sentence_ends[first:last] - sa, sizes[0], sizes[1])
        for loss, lo, hi in zip(losses.tolist(), bounds[first:last], bounds[first + 1:]):
            total_loss += loss * (hi - lo)     # summed per batch, as train_epoch does
        seen += b - a
        if bar is not None:
            bar.update(b - a)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
    return total_loss, seen


def _hide_gazetteer_matches(ids_bkc, model, share, rng):
    """Show each matched position of a gazetteer feature in the windows (B, K, columns)
    as unmatched (NONE) with chance ``share``: the lists miss names and hold common
    words, so the network should not lean on them alone (Collobert et al. 2011)."""
    for f, feature in enumerate(model.features):
        if feature.kind == "gazetteer":
            column = ids_bkc[:, :, f]
            hide = rng.random(column.shape) < share
            column[hide & (column > GazetteerFeature.NONE)] = GazetteerFeature.NONE


def _recase(ids_bkc, rows, draw, data, cfg):
    """Show some windows all lower-case or all upper-case, by ``draw`` (one uniform
    number per window; a sentence's windows share theirs under the CRF loss): their
    ids are taken from the re-cased copies. Mayhew et al. (2019) found such
    mixed-case training keeps cased accuracy and recovers most uncased accuracy."""
    for case, chosen in (("lower", draw < cfg.case_lower),
                         ("upper", (draw >= cfg.case_lower)
                          & (draw < cfg.case_lower + cfg.case_upper))):
        if chosen.any():
            ids_bkc[chosen] = data.cased_bkc[case][rows[chosen]]


def evaluate(model, data):
    """Entity scores of the model on EncodedSentences (IOB-constrained Viterbi; the
    CRF's marginals are not computed).

    Scored through the inference scorer with no cache (derivations §I1, §I2): the first
    layer as each window's sum of its rows' products W_k · table[v], made once per
    distinct row of every SCORER_CHUNK windows, in float32. Equal to the plain
    product X Wᵀ up to float rounding (the sum runs in another order), and a third of
    its arithmetic on CoNLL-2003 valid, which is scored every epoch."""
    if data.tokens == 0:
        return entity_scores([], [])
    S = InferenceScorer(model, budget_mb=0).scores(data.ids, data.spellings)
    tags, _ = model.decode(S, data.lengths, confidence=False)
    return _flat_entity_scores(model.tagset, tags, data)


def _flat_entity_scores(tagset, tags, data):
    """entity_scores of the flat predicted tag ids against EncodedSentences' gold tags,
    with arrays instead of a Python pass over every tag (dev is scored each epoch). The
    decoder's tags are valid IOB2 within each sentence (no I-X opens one), so the
    entity_runs kernel's runs over the flat array are each sentence's conlleval spans."""
    n_types = len(tagset.entity_types)
    g_start, g_end, g_kind = data.gold_spans(tagset)
    p_start, p_end, p_kind, _ = tagset.entity_runs(tags, np.zeros(len(tags), np.float32))
    p_start, p_end, p_kind = (np.asarray(a, np.int64) for a in (p_start, p_end, p_kind))
    width = data.tokens + 1
    gold_keys = (g_start * width + g_end) * n_types + g_kind
    pred_keys = (p_start * width + p_end) * n_types + p_kind
    correct = np.isin(pred_keys, gold_keys)
    tally = [np.bincount(kinds, minlength=n_types).tolist()
             for kinds in (p_kind[correct], p_kind, g_kind)]
    counts = {tagset.entity_types[k]: [tally[0][k], tally[1][k], tally[2][k]]
              for k in range(n_types) if tally[1][k] or tally[2][k]}
    return scores_from_counts(counts, data.tokens, int(np.count_nonzero(tags == data.y)))


def plot_history(history, path):
    """Loss and dev F1 per epoch as a PNG (skipped with a note if matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [h["epoch"] for h in history]
    # pragma: no mutate start  (the figure's looks are not behaviour; its file is)
    fig, ax1 = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["dev_f1"] for h in history], "s-", color="tab:red", label="dev F1")
    ax2.set_ylabel("dev entity F1 (%)", color="tab:red")
    fig.tight_layout()
    # pragma: no mutate end
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return True


@dataclass
class RunState:
    """Where a training run stands: what a checkpoint saves and a resume restores,
    plus the encoded dev data and the trained word rows that ``finish`` needs."""
    rng: np.random.Generator             # batch order, word and hidden dropout
    best_flat: np.ndarray                # parameters of the best epoch so far
    epoch: int = 0                       # epochs completed
    best_f1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0                  # epochs since dev F1 last improved
    history: list = field(default_factory=list)    # one log record per epoch
    train_seconds: float = 0.0
    dev: EncodedSentences | None = None  # not checkpointed: rebuilt from the data
    trained_rows: np.ndarray | None = None   # word rows training updates (precise in the file)

    CHECKPOINTED = ("epoch", "best_f1", "best_epoch", "bad_epochs", "history", "train_seconds")

    def to_meta(self):
        meta = {name: getattr(self, name) for name in self.CHECKPOINTED}
        meta["rng"] = self.rng.bit_generator.state
        return meta

    @classmethod
    def from_meta(cls, meta, best_flat):
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        return cls(rng, best_flat, **{name: meta[name] for name in cls.CHECKPOINTED})


def trained_word_rows(train, vocab_size):
    """The word-table rows training can change, ascending: every word id of the
    EncodedSentences' windows, of its re-cased copies too (a spelling may lower-case to
    another word once upper-cased: "Straße" → "STRASSE"), and PAD and UNK (word
    dropout). Marked in a mask, not sorted out of the 3M ids (np.union1d: 10× slower)."""
    seen = np.zeros(vocab_size, bool)
    for windows_bkc in [train.windows_bkc, *train.cased_bkc.values()]:
        seen[windows_bkc[:, :, 0]] = True
    seen[[PAD, UNK]] = True
    return np.flatnonzero(seen)


def _copy_trained(model, src, dst, trained_rows):
    """dst[...] = src for flat parameter buffers whose word tables differ at most in
    ``trained_rows`` (the others keep their initial values in both): the dense part and
    those rows, not the whole 80 MB table, when the best epoch so far is kept."""
    if model.tables()[0].shape[0] < CHECKPOINT_ALL_ROWS_BELOW:
        dst[...] = src
        return
    targets = model.views(dst)
    for name, view in model.views(src).items():
        if name == "table.word":
            targets[name][trained_rows] = view[trained_rows]
        else:
            targets[name][...] = view


def _checkpoint_buffers(model, opt, best_flat):
    """The flat buffers a checkpoint holds, by the prefix of their arrays' names."""
    return {"param": model.flat, "best": best_flat,
            **{f"opt.{name}": buf for name, buf in opt.slots.items()}}


class Trainer:
    def __init__(self, cfg, out, quiet=False, log=None):
        cfg.validate()
        self.cfg, self.paths, self.quiet = cfg, artifact_paths(out), quiet
        self.log = log or (lambda msg: print(msg, file=sys.stderr))

    def _save_checkpoint(self, model, opt, state):
        """Everything a resume needs, unquantized, per buffer (the parameters, the best
        epoch's, each optimiser slot) and named part. Of a word table of
        CHECKPOINT_ALL_ROWS_BELOW rows or more only the rows training can change
        (``state.trained_rows``) are kept: the others still hold their initial values
        (GloVe's, or the seeded random ones) and zero moments, which a resume rebuilds,
        so an epoch writes ~20 MB where the whole 400k-row table made it ~320 MB."""
        arrays = model_arrays(model)
        sparse = model.tables()[0].shape[0] >= CHECKPOINT_ALL_ROWS_BELOW
        for prefix, buf in _checkpoint_buffers(model, opt, state.best_flat).items():
            for name, view in model.views(buf).items():
                arrays[f"{prefix}.{name}"] = view[state.trained_rows] if (
                    sparse and name == "table.word") else view
        if sparse:
            arrays["rows.table.word"] = state.trained_rows
        meta = {"config": model.config(), "train": asdict(self.cfg), "state": state.to_meta(),
                "opt_t": opt.t}
        io.save_npz(self.paths["checkpoint"], io.CHECKPOINT_FORMAT, arrays, meta, compress=False)

    def _load_checkpoint(self, train_sentences):
        path = self.paths["checkpoint"]
        arrays, meta = io.load_npz(path, io.CHECKPOINT_FORMAT)
        saved = meta["train"]
        changed = {k: (saved[k], v) for k, v in asdict(self.cfg).items()
                   if k in saved and saved[k] != v and k != "epochs"}
        if changed:
            self.log("resume: keeping the checkpoint's settings; ignoring "
                     + ", ".join(f"{k}={new!r} (checkpoint has {old!r})"
                                 for k, (old, new) in changed.items()))
        epochs = self.cfg.epochs
        self.cfg = TrainConfig.from_saved(saved)
        self.cfg.epochs = epochs
        rows = arrays.get("rows.table.word")
        if rows is None:                          # every row stored
            model = model_from_arrays(arrays, meta, path)
            self._attach_first_stage(model)
        else:
            # the rows not stored keep their initial values: rebuild the initial model
            model = build_model(self.cfg, train_sentences, self.log)
            self._attach_first_stage(model)
            if (model.config() != meta["config"]
                    or not np.array_equal(arrays.get("vocab"), model_arrays(model)["vocab"])):
                raise io.ModelFileError(f"{path}: this checkpoint was made from other training "
                                        f"data (its vocabulary or features differ); resume "
                                        f"with the same data, or train afresh")
        opt = Optimizer(model, self.cfg)
        best_flat = model.flat.copy()
        for prefix, buf in _checkpoint_buffers(model, opt, best_flat).items():
            for name, view in model.views(buf).items():
                stored = arrays.get(f"{prefix}.{name}")
                expected = (len(rows), view.shape[1]) if (
                    rows is not None and name == "table.word") else view.shape
                if stored is None or stored.shape != expected:
                    raise io.ModelFileError(f"{path}: {prefix}.{name} is missing or misshapen")
                if rows is not None and name == "table.word":
                    view[rows] = stored
                else:
                    view[...] = stored
        opt.t = meta["opt_t"]
        return model, opt, RunState.from_meta(meta["state"], best_flat)

    def run(self, train_sentences, dev_sentences, resume=False):
        """Train; returns (best model, RunState). Writes the log, plot and checkpoints;
        ``finish`` then writes the model and its card."""
        paths = self.paths
        if not train_sentences:
            raise ValueError("the training data has no sentences")
        for path in paths.values():          # what a killed run left half-written
            removed = io.remove_stale_temps(path)
            if removed:
                self.log(f"removed {removed} unfinished temporary file(s) of {path}")
        with paused_gc():                    # the vocabulary and the encoded corpora
            model, opt, state, train = self._start(train_sentences, dev_sentences, resume)
        cfg = self.cfg                       # the checkpoint's settings when resuming
        self.log(f"train: {len(train_sentences)} sentences, {train.tokens} tokens; "
                 f"dev: {len(dev_sentences)} sentences, {state.dev.tokens} tokens")
        with frozen_heap():                  # the corpora, vocabulary and encoded data
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                if cfg.patience and state.bad_epochs >= cfg.patience:
                    break
                self._epoch(model, opt, train, state, epoch)
            model.flat[...] = state.best_flat
            plot_history(state.history, paths["plot"])
        return model, state

    def _start(self, train_sentences, dev_sentences, resume):
        """The model, optimiser and RunState to train from (fresh, or the checkpoint's)
        and the encoded training data."""
        paths = self.paths
        if resume and os.path.exists(paths["checkpoint"]):
            model, opt, state = self._load_checkpoint(train_sentences)
            self.log(f"resuming from {paths['checkpoint']} after epoch {state.epoch}")
        else:
            if resume:
                self.log(f"no checkpoint at {paths['checkpoint']}; starting afresh")
            model = build_model(self.cfg, train_sentences, self.log)
            self._attach_first_stage(model)
            opt = Optimizer(model, self.cfg)
            state = RunState(np.random.default_rng(self.cfg.seed + 1), model.flat.copy())
            if os.path.exists(paths["log"]):
                os.unlink(paths["log"])
        first_pass = None
        if model.needs_first_pass:
            from fastner.two_stage import first_stage_config, jackknife_labels
            first_pass = jackknife_labels(
                model, train_sentences, dev_sentences,
                first_stage_config(model.first_stage, TrainConfig), self.cfg.folds,
                self.cfg.cases, self.log)
        train = EncodedSentences(model, train_sentences, self.cfg.cases, first_pass)
        state.dev = EncodedSentences(model, dev_sentences)
        state.trained_rows = trained_word_rows(train, model.tables()[0].shape[0])
        return model, opt, state, train

    def _attach_first_stage(self, model):
        """A second stage's first stage (cfg.first_stage): loaded for tagging the dev data,
        and named with its digest in the model's configuration; its file goes beside the
        model's (finish), where Tagger.load looks for it."""
        if not model.needs_first_pass:
            return
        from fastner.tagger import MODEL_NAMES, Tagger, model_path
        path = model_path(self.cfg.first_stage)
        model.first_stage = Tagger.load(path)
        digest = io.file_sha256(path)
        if self.cfg.first_stage in MODEL_NAMES:       # found by name, where fastner keeps it
            model.first_stage_file = {"model": self.cfg.first_stage, "sha256": digest}
            return
        model.first_stage_file = {"file": os.path.basename(path), "sha256": digest}
        beside = os.path.join(os.path.dirname(os.path.abspath(self.paths["model"])),
                              os.path.basename(path))
        if (os.path.exists(beside) and not os.path.samefile(beside, path)
                and io.file_sha256(beside) != digest):
            raise ValueError(f"{beside} exists and is not the first stage {path}: write the "
                             f"model to another folder")
        self._first_stage_source = path

    def _epoch(self, model, opt, train, state, epoch):
        """Train one epoch, score dev, then commit the checkpoint and the log."""
        cfg = self.cfg
        lr = cfg.lr * cfg.lr_decay ** (epoch - 1)
        started = time.perf_counter()
        bar = tqdm(total=train.tokens, unit="tok", unit_scale=True,  # pragma: no mutate (looks)
                   disable=True if self.quiet else None,   # None: only on a terminal
                   desc=f"epoch {epoch}/{cfg.epochs}", leave=False, file=sys.stderr)
        total_loss, seen = train_epoch(model, opt, train, cfg, lr, state.rng,
                                       None if bar.disable else bar)
        bar.close()
        seconds = time.perf_counter() - started
        if not np.all(np.isfinite(model.flat)):
            raise FloatingPointError(f"epoch {epoch}: parameters became NaN/inf; "
                                     f"lower --lr or enable --clip")
        scores = evaluate(model, state.dev)
        state.train_seconds += seconds
        record = {"epoch": epoch, "train_loss": total_loss / max(seen, 1),
                  "dev_precision": scores["precision"], "dev_recall": scores["recall"],
                  "dev_f1": scores["f1"], "lr": lr, "seconds": seconds,
                  "tokens_per_second": seen / seconds if seconds else 0.0}
        state.history.append(record)
        improved = scores["f1"] > state.best_f1
        if improved or cfg.patience == 0:          # patience 0 keeps the last epoch
            state.best_f1, state.best_epoch, state.bad_epochs = scores["f1"], epoch, 0
            _copy_trained(model, model.flat, state.best_flat, state.trained_rows)
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        self.log(f"epoch {epoch}: loss {record['train_loss']:.4f}  dev F1 {scores['f1']:.2f}"
                 f"{' *' if improved else ''}  ({seen / seconds:,.0f} tok/s, {seconds:.1f}s)")
        self._save_checkpoint(model, opt, state)
        # after the checkpoint: the log holds exactly the epochs a resume continues from
        io.write_lines_atomically(self.paths["log"], state.history)

    def finish(self, model, state, test_sentences=None, provenance=None):
        """Score the best model of ``run`` on its dev data (and ``test_sentences``), write
        it with its card; returns the card."""
        card = {"name": os.path.basename(self.paths["model"])[:-4],
                "fastner_version": __version__, "train_config": asdict(self.cfg),
                "model_config": model.config(),
                "best_epoch": state.best_epoch, "epochs_run": state.epoch,
                "training_seconds": round(state.train_seconds, 1),
                "history": state.history,
                "dev": evaluate(model, state.dev),
                "versions": {"python": platform.python_version(), "numpy": np.__version__},
                "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
        if test_sentences is not None:
            card["test"] = evaluate(model, EncodedSentences(model, test_sentences))
        card.update(provenance or {})
        if model.needs_first_pass and "file" in model.first_stage_file:
            beside = os.path.join(os.path.dirname(os.path.abspath(self.paths["model"])),
                                  model.first_stage_file["file"])
            if not os.path.exists(beside):
                io.copy_atomically(self._first_stage_source, beside)
        save_model(model, self.paths["model"], card, precise_rows=state.trained_rows)
        io.write_json_atomically(self.paths["card"], card)
        return card
