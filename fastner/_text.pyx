"""The per-token work between raw text and the kernels, in C: the tokenizer's scan over
white space, the candidate positions of sentence ends, and the memo lookup of each
token's feature ids. Each has a Python twin (named in its docstring) that
tests/test_tokenize.py and tests/test_model.py compare it with.

fastner.tokenize.tokenize splits text into white-space-delimited chunks and runs the
token pattern only over chunks that are not one character, all letters or all digits;
in news text nearly every chunk is one of those. scan() does the same with the same
character classes as Python's str methods (str.split's white space is
Py_UNICODE_ISSPACE, str.isalpha's letters Py_UNICODE_ISALPHA, str.isdecimal's digits
Py_UNICODE_ISDECIMAL), without an interpreter step per character or per chunk.
"""
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.unicode cimport Py_UNICODE_ISALPHA, Py_UNICODE_ISDECIMAL, Py_UNICODE_ISSPACE

import numpy as np


def scan(str text not None, finditer):
    """(tokens, starts, ends) of ``text``: a list of strings and two int64 arrays. Each
    chunk between white space is a token as it stands when it is one character, all
    letters or all digits, else the matches of ``finditer`` (the token pattern's
    finditer) over it, shifted to the chunk, worked out once per distinct chunk."""
    cdef Py_ssize_t n = len(text), i = 0, start, count = 0
    cdef Py_UCS4 ch
    cdef bint alpha, decimal
    # a token holds at least one character: n slots are enough
    starts_buf = np.empty(n, dtype=np.int64)
    ends_buf = np.empty(n, dtype=np.int64)
    cdef long long[::1] starts = starts_buf
    cdef long long[::1] ends = ends_buf
    tokens = []
    # each distinct chunk goes through the pattern once per call: the same ones recur
    # ("'s", "U.S.", dates, scores: CoNLL-2003 valid's 3,139 have 1,434 spellings)
    cdef dict split = {}
    while i < n:
        ch = text[i]
        if Py_UNICODE_ISSPACE(ch):
            i += 1
            continue
        start = i
        alpha = decimal = True
        while i < n:
            ch = text[i]
            if Py_UNICODE_ISSPACE(ch):
                break
            if ch < 128:        # ASCII: the same classes without a call per character
                alpha = alpha and (c'a' <= ch <= c'z' or c'A' <= ch <= c'Z')
                decimal = decimal and c'0' <= ch <= c'9'
            else:
                alpha = alpha and Py_UNICODE_ISALPHA(ch)
                decimal = decimal and Py_UNICODE_ISDECIMAL(ch)
            i += 1
        if i - start == 1 or alpha or decimal:
            tokens.append(text[start:i])
            starts[count], ends[count] = start, i
            count += 1
        else:
            chunk = text[start:i]
            pieces = split.get(chunk)
            if pieces is None:
                pieces = split[chunk] = [(m.group(), m.start(), m.end())
                                         for m in finditer(chunk)]
            for piece, a, b in pieces:
                tokens.append(piece)
                starts[count], ends[count] = start + a, start + b
                count += 1
    return tokens, starts_buf[:count].copy(), ends_buf[:count].copy()


def positions_in(list tokens not None, frozenset wanted not None):
    """Indices of the tokens that are in ``wanted`` (Python twin: the list
    comprehension [i for i, t in enumerate(tokens) if t in wanted]).

    When ``wanted`` holds only strings, a token string longer than the longest of
    them, or not starting with one of their first characters, is passed over without
    the set lookup: sentence_ends' few end marks and closers against valid's 52k
    tokens, most of which would be hashed only to miss (1.9 → 1.2 ms)."""
    cdef Py_ssize_t i, j, length, longest = 0
    cdef Py_UCS4 firsts[32]
    cdef Py_UCS4 first
    cdef int n_firsts = 0
    cdef bint screen = True
    cdef str word
    for item in wanted:
        if type(item) is not str or n_firsts == 32:
            screen = False
            break
        word = item
        length = len(word)
        if length == 0:
            screen = False
            break
        longest = length if length > longest else longest
        first = word[0]
        for j in range(n_firsts):
            if firsts[j] == first:
                break
        else:
            firsts[n_firsts] = first
            n_firsts += 1
    if not screen:
        return [i for i in range(len(tokens)) if tokens[i] in wanted]
    out = []
    for i in range(len(tokens)):
        token = tokens[i]
        if type(token) is str:
            length = len(<str>token)
            if length == 0 or length > longest:
                continue
            for j in range(n_firsts):
                if firsts[j] == (<str>token)[0]:
                    break
            else:
                continue
        if token in wanted:
            out.append(i)
    return out


def memo_rows(list tokens not None, dict memo not None, int columns):
    """(ids, missed): int32 (len(tokens), columns) holding each token's tuple of
    ``columns`` ids from ``memo``, and the indices of the tokens not in it, whose rows
    are left 0 for the caller to fill (Python twin: WindowTagger._feature_ids_python).
    A memo value that is not a tuple of ``columns`` ints raises TypeError/ValueError
    (its length is checked before any item is read)."""
    if columns < 1:
        raise ValueError(f"memo_rows: columns must be at least 1; got {columns}")
    cdef Py_ssize_t n = len(tokens), i, j
    out = np.zeros((n, columns), dtype=np.int32)
    cdef int[:, ::1] ids = out
    cdef PyObject* found
    cdef tuple row
    missed = []
    for i in range(n):
        found = PyDict_GetItem(memo, tokens[i])
        if found == NULL:
            missed.append(i)
            continue
        row = <tuple?><object>found
        if len(row) != columns:
            raise ValueError(f"memo_rows: the memo holds {len(row)} ids for "
                             f"{tokens[i]!r}; expected {columns}")
        for j in range(columns):
            ids[i, j] = row[j]
    return out, missed


def entities_per_text(list texts not None, type entity not None, groups, starts, ends,
                      list labels not None, token_starts, token_ends, list scores not None):
    """Per text, the tuple of its entities: ``entity`` (a tuple subclass of seven
    fields) made of (text[start:end], label, start, end, token_start, token_end,
    score) for each entity, whose text is texts[groups[i]]; groups ascending, as
    entities come in token order (Python twin: fastner.tagger._entities_per_text).
    The int columns are int64 arrays, the offsets relative to their own text."""
    columns = (groups, starts, ends, labels, token_starts, token_ends, scores)
    if any(len(column) != len(labels) for column in columns):
        raise ValueError("entities_per_text: every column needs one entry per entity")
    if not issubclass(entity, tuple):
        raise TypeError(f"entities_per_text: {entity.__name__} is not a tuple type")
    if not labels:            # most one-sentence requests: no arrays to take views of
        return [()] * len(texts)
    return _entities_from_views(texts, entity, groups, starts, ends, labels, token_starts,
                                token_ends, scores)


cdef list _entities_from_views(list texts, type entity, const long long[::1] g,
                               const long long[::1] a, const long long[::1] b, list labels,
                               const long long[::1] ta, const long long[::1] tb,
                               list scores):
    cdef Py_ssize_t n = g.shape[0], n_texts = len(texts), i, d, at
    cdef str text
    for i in range(n):
        if not (0 <= g[i] < n_texts) or (i > 0 and g[i] < g[i - 1]):
            raise ValueError(f"entities_per_text: groups must ascend within 0..{n_texts - 1}; "
                             f"groups[{i}] = {g[i]}")
    out = [()] * n_texts
    i = 0
    while i < n:
        d = g[i]
        at = i
        while at < n and g[at] == d:
            at += 1
        text = texts[d]                      # TypeError if it is not a str
        out[d] = tuple([tuple.__new__(entity, (text[a[i + j]:b[i + j]], labels[i + j],
                                               a[i + j], b[i + j], ta[i + j], tb[i + j],
                                               scores[i + j]))
                        for j in range(at - i)])
        i = at
    return out
