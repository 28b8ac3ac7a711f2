"""The per-token work between raw text and the kernels, in C: the tokenizer's scan over
white space, the candidate positions of sentence ends, the memo of each token's feature
ids and the building of entities and tokens. Each has a Python twin (named in its docstring) that
tests/test_tokenize.py, tests/test_model.py and tests/test_api.py compare it with.

fastner.tokenize.tokenize splits text into white-space-delimited chunks and runs the
token pattern only over chunks that are not one character, all letters or all digits;
in news text nearly every chunk is one of those. scan_spans() does the same with the
same character classes as Python's str methods (str.split's white space is
Py_UNICODE_ISSPACE, str.isalpha's letters Py_UNICODE_ISALPHA, str.isdecimal's digits
Py_UNICODE_ISDECIMAL), without an interpreter step per character or per chunk.

Raw text is tagged from spans (start, end offsets) without a string per token: the
memo (TokenRows) finds a span's ids by its code points, and sentence ends are looked
for among the few spans that can be one (spans_in). Strings are made for the tokens
the memo lacks, and for all only when the caller asks for tokens.
"""
from cpython.unicode cimport (Py_UNICODE_ISALPHA, Py_UNICODE_ISDECIMAL, Py_UNICODE_ISSPACE,
                              PyUnicode_DATA, PyUnicode_KIND, PyUnicode_READ)

from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

import os

import numpy as np


def scan_spans(str text not None, finditer, dict pieces not None, Py_ssize_t longest):
    """(starts, ends): two int64 arrays, each token's offsets in ``text``. Each chunk
    between white space is a token as it stands when it is one character, all letters
    or all digits, else the matches of ``finditer`` (the token pattern's finditer) over
    it, shifted to the chunk. ``pieces`` memoizes those for chunks of at most
    ``longest`` characters: chunk → its matches' (start, end) pairs, worked out once
    per distinct chunk for as long as the caller keeps the dict (the same ones recur:
    "'s", "U.S.", dates, scores; CoNLL-2003 valid's 3,139 have 1,434 spellings). A
    longer chunk is split each time it comes: what the memo holds stays small, whatever
    the text. No token string is made."""
    cdef Py_ssize_t n = len(text), i = 0, start, count = 0
    cdef unsigned int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_UCS4 ch
    cdef bint alpha, decimal
    # a token holds at least one character: n slots are enough
    starts_buf = np.empty(n, dtype=np.int64)
    ends_buf = np.empty(n, dtype=np.int64)
    cdef long long[::1] starts = starts_buf
    cdef long long[::1] ends = ends_buf
    cdef tuple found
    while i < n:
        ch = PyUnicode_READ(kind, data, i)
        if Py_UNICODE_ISSPACE(ch):
            i += 1
            continue
        start = i
        alpha = decimal = True
        while i < n:
            ch = PyUnicode_READ(kind, data, i)
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
            starts[count], ends[count] = start, i
            count += 1
            continue
        chunk = text[start:i]
        found = pieces.get(chunk) if i - start <= longest else None
        if found is None:
            found = tuple([(m.start(), m.end()) for m in finditer(chunk)])
            if i - start <= longest:
                pieces[chunk] = found
        for a, b in found:
            starts[count], ends[count] = start + <Py_ssize_t>a, start + <Py_ssize_t>b
            count += 1
    return starts_buf[:count].copy(), ends_buf[:count].copy()


def token_strings(str text not None, const long long[::1] starts not None,
                  const long long[::1] ends not None):
    """[text[a:b] for a, b in zip(starts, ends)] (its Python twin), for spans within
    the text."""
    _check_spans("token_strings", len(text), starts, ends)
    return [text[starts[i]:ends[i]] for i in range(starts.shape[0])]


cdef int _check_spans(str where, Py_ssize_t n, const long long[::1] starts,
                      const long long[::1] ends) except -1:
    """ValueError unless starts and ends are as long as each other and every span lies
    within a text of n characters."""
    if starts.shape[0] != ends.shape[0]:
        raise ValueError(f"{where}: starts and ends differ in length "
                         f"({starts.shape[0]} and {ends.shape[0]})")
    cdef Py_ssize_t i
    for i in range(starts.shape[0]):
        if not (0 <= starts[i] <= ends[i] <= n):
            raise ValueError(f"{where}: span {i} is [{starts[i]}, {ends[i]}); "
                             f"the text has {n} characters")
    return 0


cdef struct _Screen:
    # a set of strings' longest length and first characters: a token longer, or
    # starting with another character, is not in the set
    Py_ssize_t longest
    int n_firsts
    Py_UCS4 firsts[32]


cdef bint _screen_of(frozenset wanted, _Screen* screen):
    """Fill ``screen`` for ``wanted``; False when it cannot screen (a non-string or an
    empty string in the set, or more than 32 first characters)."""
    cdef Py_ssize_t j, length
    cdef Py_UCS4 first
    cdef str word
    screen.longest = 0
    screen.n_firsts = 0
    for item in wanted:
        if type(item) is not str or screen.n_firsts == 32:
            return False
        word = item
        length = len(word)
        if length == 0:
            return False
        screen.longest = length if length > screen.longest else screen.longest
        first = word[0]
        for j in range(screen.n_firsts):
            if screen.firsts[j] == first:
                break
        else:
            screen.firsts[screen.n_firsts] = first
            screen.n_firsts += 1
    return True


cdef inline bint _may_be_in(const _Screen* screen, Py_ssize_t length, Py_UCS4 first) noexcept:
    cdef int j
    if length == 0 or length > screen.longest:
        return False
    for j in range(screen.n_firsts):
        if screen.firsts[j] == first:
            return True
    return False


def positions_in(list tokens not None, frozenset wanted not None):
    """Indices of the tokens that are in ``wanted`` (Python twin: the list
    comprehension [i for i, t in enumerate(tokens) if t in wanted]).

    When ``wanted`` holds only strings, a token string longer than the longest of
    them, or not starting with one of their first characters, is passed over without
    the set lookup: sentence_ends' few end marks and closers against valid's 52k
    tokens, most of which would be hashed only to miss (a third of the time)."""
    cdef _Screen screen
    cdef Py_ssize_t i, length
    if not _screen_of(wanted, &screen):
        return [i for i in range(len(tokens)) if tokens[i] in wanted]
    out = []
    for i in range(len(tokens)):
        token = tokens[i]
        if type(token) is str:
            length = len(<str>token)
            if not _may_be_in(&screen, length, (<str>token)[0] if length else 0):
                continue
        if token in wanted:
            out.append(i)
    return out


def spans_in(str text not None, const long long[::1] starts not None,
             const long long[::1] ends not None, frozenset wanted not None):
    """{i: token} for the spans whose text ``token`` is in ``wanted``, a set of strings
    (Python twin: {i: text[a:b] for i, (a, b) in enumerate(zip(starts, ends)) if
    text[a:b] in wanted}). Screened as in positions_in: a string is made only for the
    spans that pass."""
    _check_spans("spans_in", len(text), starts, ends)
    if any(type(item) is not str for item in wanted):
        raise TypeError("spans_in: wanted must hold strings only")
    cdef _Screen screen
    cdef Py_ssize_t i, length
    cdef bint screened = _screen_of(wanted, &screen)
    cdef unsigned int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    out = {}
    for i in range(starts.shape[0]):
        length = ends[i] - starts[i]
        if screened and not _may_be_in(&screen, length,
                                       PyUnicode_READ(kind, data, starts[i]) if length else 0):
            continue
        token = text[starts[i]:ends[i]]
        if token in wanted:
            out[i] = token
    return out


cdef struct _Key:
    uint64_t hash
    Py_ssize_t at               # its first code point in TokenRows.chars
    Py_ssize_t length


cdef inline uint64_t _hash_chars(uint64_t seed, unsigned int kind, const void* data,
                                 Py_ssize_t start, Py_ssize_t length) noexcept:
    # FNV-1a over the code points from a random start, then MurmurHash3's finalizer
    # (the table's slot comes from the low bits)
    cdef uint64_t h = seed
    cdef Py_ssize_t i
    for i in range(start, start + length):
        h = (h ^ <uint64_t>PyUnicode_READ(kind, <void*>data, i)) * 0x100000001b3ULL
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    return h ^ (h >> 33)


cdef class TokenRows:
    """A memo from token strings to their rows of ``columns`` int32 ids (a model's ids
    under its per-token features), looked up by the token's code points: a token given
    as a span of a text is found without a string of its own (rows_of_spans), one given
    as a string the same way (rows_of_tokens). Python twin: a dict from token to row.

    An open-addressing table whose lookups and insertions look at ``probes`` slots at
    most: a token past them is a miss (the caller computes its row again), so the work
    per token is bounded whatever the tokens, and crafted collisions cost no more than
    misses. Holds ``limit`` tokens of at most ``longest`` characters (a longer one is
    never remembered: a miss each time), so at most limit × longest code points; adding
    to a full memo empties it first.
    Nothing here calls back into Python between reading and writing the table, so
    threads sharing a model see it whole."""
    cdef readonly int columns
    cdef readonly Py_ssize_t limit, longest
    cdef readonly int probes
    cdef Py_ssize_t count, capacity, key_capacity, chars_used, chars_capacity
    cdef uint64_t seed
    cdef int* slots             # capacity entries: a key's index, or -1 for none
    cdef _Key* keys             # key_capacity entries, count in use
    cdef int* rows              # key_capacity × columns ids
    cdef Py_UCS4* chars         # the keys' code points, end to end

    def __cinit__(self, int columns, Py_ssize_t limit, Py_ssize_t longest=32, int probes=32,
                  seed=None):
        if columns < 1:
            raise ValueError(f"TokenRows: columns must be at least 1; got {columns}")
        if not (1 <= limit < 2 ** 30) or longest < 1 or probes < 1:
            raise ValueError(f"TokenRows: limit must be in 1..2**30 - 1, longest and probes "
                             f"at least 1; got {limit}, {longest} and {probes}")
        self.columns, self.limit, self.longest, self.probes = columns, limit, longest, probes
        self.seed = (int.from_bytes(os.urandom(8), "little") if seed is None
                     else seed) & 0xFFFFFFFFFFFFFFFF
        self._reset()

    def __dealloc__(self):
        free(self.slots)
        free(self.keys)
        free(self.rows)
        free(self.chars)

    cdef int _reset(self) except -1:
        free(self.slots)
        free(self.keys)
        free(self.rows)
        free(self.chars)
        self.slots, self.keys, self.rows, self.chars = NULL, NULL, NULL, NULL
        self.count, self.capacity, self.key_capacity = 0, 64, 32
        self.chars_used, self.chars_capacity = 0, 256
        self.slots = <int*>malloc(self.capacity * sizeof(int))
        self.keys = <_Key*>malloc(self.key_capacity * sizeof(_Key))
        self.rows = <int*>malloc(self.key_capacity * self.columns * sizeof(int))
        self.chars = <Py_UCS4*>malloc(self.chars_capacity * sizeof(Py_UCS4))
        if not (self.slots and self.keys and self.rows and self.chars):
            raise MemoryError()
        memset(self.slots, 0xFF, self.capacity * sizeof(int))
        return 0

    def __len__(self):
        return self.count

    def clear(self):
        """Forget every token."""
        self._reset()

    cdef Py_ssize_t _find(self, uint64_t h, unsigned int kind, const void* data,
                          Py_ssize_t start, Py_ssize_t length,
                          Py_ssize_t* free_slot) noexcept:
        # the key's index, or -1 with *free_slot the empty slot met (-1 if none within
        # the probes)
        cdef Py_ssize_t mask = self.capacity - 1, slot = <Py_ssize_t>(h & mask), j
        cdef int p, k
        cdef const _Key* key
        for p in range(self.probes):
            k = self.slots[slot]
            if k < 0:
                free_slot[0] = slot
                return -1
            key = &self.keys[k]
            if key.hash == h and key.length == length:
                for j in range(length):
                    if self.chars[key.at + j] != PyUnicode_READ(kind, <void*>data, start + j):
                        break
                else:
                    return k
            slot = (slot + 1) & mask
        free_slot[0] = -1
        return -1

    def rows_of_spans(self, str text not None, const long long[::1] starts not None,
                      const long long[::1] ends not None):
        """(ids, missed): int32 (len(starts), columns), the row of each span's token
        text[starts[i]:ends[i]], and an int64 array of the spans not in the memo,
        whose rows are left 0 for the caller to fill."""
        _check_spans("rows_of_spans", len(text), starts, ends)
        cdef Py_ssize_t n = starts.shape[0], i, k, m = 0, unused
        cdef unsigned int kind = PyUnicode_KIND(text)
        cdef const void* data = PyUnicode_DATA(text)
        out = np.zeros((n, self.columns), dtype=np.int32)
        missed_buf = np.empty(n, dtype=np.int64)
        cdef int[:, ::1] ids = out
        cdef long long[::1] missed = missed_buf
        for i in range(n):
            k = self._find(_hash_chars(self.seed, kind, data, starts[i], ends[i] - starts[i]),
                           kind, data, starts[i], ends[i] - starts[i], &unused)
            self._take(k, i, &ids[0, 0], &missed[0], &m)
        return out, missed_buf[:m].copy()

    def rows_of_tokens(self, list tokens not None):
        """rows_of_spans for a list of token strings (TypeError at the first that is
        not a str)."""
        cdef Py_ssize_t n = len(tokens), i, k, m = 0, unused, length
        out = np.zeros((n, self.columns), dtype=np.int32)
        missed_buf = np.empty(n, dtype=np.int64)
        cdef int[:, ::1] ids = out
        cdef long long[::1] missed = missed_buf
        cdef unsigned int kind
        cdef const void* data
        for i in range(n):
            token = tokens[i]
            if type(token) is not str:
                raise TypeError(f"rows_of_tokens: tokens[{i}] is {type(token).__name__}, "
                                f"not a str")
            kind, data, length = PyUnicode_KIND(token), PyUnicode_DATA(token), len(<str>token)
            k = self._find(_hash_chars(self.seed, kind, data, 0, length), kind, data, 0,
                           length, &unused)
            self._take(k, i, &ids[0, 0], &missed[0], &m)
        return out, missed_buf[:m].copy()

    cdef inline void _take(self, Py_ssize_t k, Py_ssize_t i, int* ids, long long* missed,
                           Py_ssize_t* m) noexcept:
        # key k's row into row i of ids, or (k < 0: not held) i onto the missed list
        if k < 0:
            missed[m[0]] = i
            m[0] += 1
        else:
            memcpy(&ids[i * self.columns], &self.rows[k * self.columns],
                   self.columns * sizeof(int))

    def add(self, list tokens not None, const int[:, ::1] rows not None):
        """Remember row i of ``rows`` (int32 (len(tokens), columns)) for tokens[i], a
        str. A token already held keeps its row; one longer than ``longest`` or that
        finds no slot within the probes is not remembered. A memo that would pass its
        limit is emptied first."""
        if rows.shape[0] != len(tokens) or rows.shape[1] != self.columns:
            raise ValueError(f"TokenRows.add: rows must be ({len(tokens)}, {self.columns}); "
                             f"got ({rows.shape[0]}, {rows.shape[1]})")
        for i, token in enumerate(tokens):
            if type(token) is not str:
                raise TypeError(f"TokenRows.add: tokens[{i}] is {type(token).__name__}, "
                                f"not a str")
        if self.count + len(tokens) > self.limit:
            self._reset()
        cdef Py_ssize_t i_, j, k, slot, length, n = min(len(tokens), self.limit)
        cdef unsigned int kind
        cdef const void* data
        cdef uint64_t h
        for i_ in range(n):
            token = tokens[i_]
            kind, data, length = PyUnicode_KIND(token), PyUnicode_DATA(token), len(<str>token)
            if length > self.longest:
                continue
            h = _hash_chars(self.seed, kind, data, 0, length)
            k = self._find(h, kind, data, 0, length, &slot)
            if k >= 0 or slot < 0:
                continue
            self._reserve(length)
            k = self.count
            self.keys[k].hash, self.keys[k].at, self.keys[k].length = h, self.chars_used, length
            for j in range(length):
                self.chars[self.chars_used + j] = PyUnicode_READ(kind, <void*>data, j)
            self.chars_used += length
            memcpy(&self.rows[k * self.columns], &rows[i_, 0], self.columns * sizeof(int))
            self.slots[slot] = <int>k
            self.count += 1
            if 2 * self.count > self.capacity:      # at most half full
                self._grow_slots()

    cdef int _reserve(self, Py_ssize_t length) except -1:
        # room for one more key of ``length`` code points
        cdef void* grown
        if self.count == self.key_capacity:
            grown = realloc(self.keys, 2 * self.key_capacity * sizeof(_Key))
            if grown == NULL:
                raise MemoryError()
            self.keys = <_Key*>grown
            grown = realloc(self.rows, 2 * self.key_capacity * self.columns * sizeof(int))
            if grown == NULL:
                raise MemoryError()
            self.rows = <int*>grown
            self.key_capacity *= 2
        if self.chars_used + length > self.chars_capacity:
            grown = realloc(self.chars, 2 * (self.chars_capacity + length) * sizeof(Py_UCS4))
            if grown == NULL:
                raise MemoryError()
            self.chars = <Py_UCS4*>grown
            self.chars_capacity = 2 * (self.chars_capacity + length)
        return 0

    cdef int _grow_slots(self) except -1:
        # twice the slots, every key placed again (one that finds no slot within the
        # probes stays stored but unreachable: a miss from then on)
        cdef Py_ssize_t capacity = 2 * self.capacity, mask = capacity - 1, slot, k
        cdef int p
        cdef int* slots = <int*>malloc(capacity * sizeof(int))
        if slots == NULL:
            raise MemoryError()
        memset(slots, 0xFF, capacity * sizeof(int))
        for k in range(self.count):
            slot = <Py_ssize_t>(self.keys[k].hash & mask)
            for p in range(self.probes):
                if slots[slot] < 0:
                    slots[slot] = <int>k
                    break
                slot = (slot + 1) & mask
        free(self.slots)
        self.slots, self.capacity = slots, capacity
        return 0


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


def tokens_per_text(str joined not None, type token not None, const long long[::1] first,
                    const long long[::1] bases, const long long[::1] starts,
                    const long long[::1] stops, list names not None):
    """Per text, the tuple of its tokens: ``token`` (a tuple subclass of four fields)
    made of (joined[a:b], a − base, b − base, name) for each token of the texts laid
    end to end in ``joined``, token i's span [starts[i], stops[i]) and tag name
    names[i]; text d holds tokens first[d] .. first[d + 1] − 1 and starts at
    bases[d] (Python twin: fastner.tagger._tokens_per_text)."""
    _check_spans("tokens_per_text", len(joined), starts, stops)
    cdef Py_ssize_t n = starts.shape[0], n_texts = bases.shape[0], d, i
    if first.shape[0] != n_texts + 1 or len(names) != n:
        raise ValueError("tokens_per_text: need one first token per text and the total, "
                         "and one name per token")
    if not issubclass(token, tuple):
        raise TypeError(f"tokens_per_text: {token.__name__} is not a tuple type")
    for d in range(n_texts):
        if not (0 <= first[d] <= first[d + 1] <= n):
            raise ValueError(f"tokens_per_text: first must ascend within 0..{n}; "
                             f"first[{d}] = {first[d]}")
    if n_texts and first[n_texts] != n:
        raise ValueError(f"tokens_per_text: first must end at the number of tokens, {n}")
    out = []
    cdef long long base
    for d in range(n_texts):
        base = bases[d]
        out.append(tuple([tuple.__new__(token, (joined[starts[i]:stops[i]], starts[i] - base,
                                                stops[i] - base, names[i]))
                          for i in range(first[d], first[d + 1])]))
    return out
