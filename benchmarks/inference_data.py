"""What the inference benchmarks time, in one place: a CoNLL file encoded for the
shipped model, and ids -> tags through the inference cache's scorer and Viterbi.
Used by test_inference_bench.py and by portable_ratio.py's child processes."""
import numpy as np

from fastner.conll import read_conll


def encoded(tagger, path):
    """(sentences, window ids, sentence lengths, spellings) of ``path`` for ``tagger``."""
    sentences = read_conll(path)
    model = tagger.model
    spellings = model.new_spellings()            # None unless the model has chars
    ids = model.windows([model.token_ids(s.tokens, spellings=spellings) for s in sentences])
    lengths = np.array([len(s.tokens) for s in sentences], np.int32)
    return sentences, ids, lengths, spellings


def viterbi(model, S, lengths):
    """The model's tags from its scores S (tokens × tags) of sentences of ``lengths``."""
    trans, start, end = model.transitions()
    return model.ops.viterbi_decode(np.ascontiguousarray(S), lengths, trans, start, end)


def cached_ids_to_tags(tagger, ids, lengths, spellings):
    """Tags of encoded sentences: the inference cache's scores, then Viterbi."""
    return viterbi(tagger.model, tagger.scorer.scores(ids, spellings), lengths)
