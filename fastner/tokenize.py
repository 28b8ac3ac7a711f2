"""A tokenizer for raw English text that yields CoNLL-2003-like tokens with
character offsets (Python code-point indices, end exclusive).

It follows the conventions the tagger was trained on: punctuation split off,
clitics split PTB-style ("don't" → "do" "n't", "EU's" → "EU" "'s"), hyphenated
words, numbers with separators ("1,000", "3.5", "1996-08-22"), abbreviations
("U.S.", "Mr.") and URLs/e-mail addresses kept whole. Zero-width characters
separate tokens and are never part of one; combining marks stay with their
base letter, so offsets always index the original string.
"""
import re

import numpy as np

from fastner._text import positions_in, scan_spans, spans_in, token_strings

# Letters and digits plus combining marks (which belong to the preceding letter).
_L = r"[^\W_]"
_MARK = r"[\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u0610-\u061a\u064b-\u065f\u0900-\u0903" \
        r"\u093a-\u094f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
_W = f"(?:{_L}{_MARK}*)"
# The zero-width characters that separate tokens like white space. Tokenizing looks
# for them with str's own search first: a regex scanned valid's 276k characters in
# 0.82 ms, five `in` tests take 0.03 ms (and none at all in a text of only Latin-1,
# which cannot hold them).
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
_ZW = "".join(_ZERO_WIDTH)           # for the patterns' character classes
_ABBREVIATIONS = (
    "Mr Mrs Ms Dr Prof Sr Jr St Mt Gen Col Lt Sgt Capt Gov Sen Rep Rev Inc Corp Ltd Co Bros "
    "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec vs etc No Nos Ave Blvd Dept Univ"
).split()

_TOKEN_RE = re.compile(
    "|".join([
        rf"(?:https?://|www\.)[^\s<>\"{_ZW}]+"
        rf"[^\s<>\".,;:!?)\]'}}{_ZW}]",                                  # URLs
        # e-mail addresses. The local part and each label are bounded (64 and 63
        # characters, RFC 5321's limits): unbounded, a failed attempt rescans to the
        # end of the run from every start position, quadratic on "a+a+a+...".
        r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+",
        r"(?:[A-Za-z]\.){2,}(?![A-Za-z])",                              # U.S. U.N. a.m.
        r"(?:" + "|".join(_ABBREVIATIONS) + r")\.(?!\w)",                 # Mr. Jan. Inc.
        r"[+-]?\d+(?:[.,:/-]\d+)*(?:-" + _W + "+)*",                    # 1,000 3.5 1996-08-22 10-year
        rf"{_W}+(?=n't\b)",                                             # do|n't
        r"n't\b",
        rf"['’](?:s|re|ve|ll|d|m|S|RE|VE|LL|D|M)\b(?!{_W})",                # 's 're 've ...
        rf"{_W}+(?=['’](?:s|re|ve|ll|d|m|S|RE|VE|LL|D|M)\b(?!{_W}))",   # EU|'s
        rf"{_W}+(?:[-'’&.]{_W}+)*",                                     # words, mid-word - ' & .
        r"\.\.\.|--|``|''",                                             # multi-char punctuation
        rf"[^\s{_ZW}]{_MARK}*",                                          # any other single character
    ])
)


# A valid pre-tokenised token (the service's "tokens" input): non-empty, with no
# character that Python's str.isspace() accepts. The characters are listed, not
# written \s, so that the OpenAPI document's pattern means the same in JavaScript,
# whose \s differs (U+FEFF is in it; U+001C-U+001F and U+0085 are not).
WHITESPACE_RANGES = r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028" \
                    r"\u2029\u202f\u205f\u3000"
TOKEN_PATTERN = f"^[^{WHITESPACE_RANGES}]+$"
_TOKEN_RE_FULL = re.compile(f"[^{WHITESPACE_RANGES}]+")


def is_valid_token(token):
    """Whether ``token`` is non-empty and free of white space (TOKEN_PATTERN)."""
    return _TOKEN_RE_FULL.fullmatch(token) is not None


# Runs of characters between separators (white space and zero-width characters).
_CHUNK_RE = re.compile(rf"[^\s{_ZW}]+")


def tokenize(text):
    """List of (token, start, end) for ``text``; ``text[start:end] == token``.

    No rule matches across a separator, so each white-space-delimited chunk is
    tokenized on its own; the common chunk of one character, only letters or only
    digits is a token as it stands, and only the rest goes through the full
    pattern. The scan over chunks runs in C (fastner._text.scan_spans; its Python
    twin is _tokenize_python); text holding a zero-width separator, which str.split
    does not split on, takes _tokenize_chunks.
    """
    tokens, starts, ends = tokenize_columns(text)
    return list(zip(tokens, starts.tolist(), ends.tolist()))


def tokenize_columns(text):
    """tokenize() as columns: (tokens, starts, ends), a list and two int64 arrays."""
    starts, ends = tokenize_spans(text)
    return token_strings(text, starts, ends), starts, ends


# The token pattern's matches in each chunk it split, kept across calls as spaCy's
# tokenizer keeps its cache: the same chunks recur from text to text ("'s", "U.S.",
# dates, scores), and each costs 1.4 µs through the pattern. Only chunks of at most
# PIECES_LONGEST characters are kept (a URL fits; a client's 100 KB run of symbols is
# split afresh each time), at most PIECES_LIMIT of them: emptied past the limit.
_PIECES = {}
PIECES_LIMIT = 20_000
PIECES_LONGEST = 64


def tokenize_spans(text):
    """tokenize()'s offsets only: (starts, ends), two int64 arrays, no token strings
    (fastner._text.token_strings makes them)."""
    if not text.isascii() and any(zero_width in text for zero_width in _ZERO_WIDTH):
        triples = _tokenize_chunks(text)
        return (np.array([t[1] for t in triples], np.int64),
                np.array([t[2] for t in triples], np.int64))
    if len(_PIECES) > PIECES_LIMIT:
        _PIECES.clear()
    return scan_spans(text, _TOKEN_RE.finditer, _PIECES, PIECES_LONGEST)


def _tokenize_python(text):
    """tokenize() for text without zero-width separators, in Python: the twin of
    fastner._text.scan_spans (chunks from str.split(), whose white space is the regex's \\s)."""
    out = []
    append = out.append
    find = text.find
    end = 0
    for word in text.split():
        start = find(word, end)          # the chunk: only white space lies before it
        end = start + len(word)
        if len(word) == 1 or word.isalpha() or word.isdecimal():
            append((word, start, end))
        else:
            out.extend([(m.group(), start + m.start(), start + m.end())
                        for m in _TOKEN_RE.finditer(word)])
    return out


def _tokenize_chunks(text):
    """tokenize() for text with zero-width separators: chunks from _CHUNK_RE."""
    out = []
    for chunk in _CHUNK_RE.finditer(text):
        word = chunk.group()
        base = chunk.start()
        if len(word) == 1 or word.isalpha() or word.isdecimal():
            out.append((word, base, chunk.end()))
        else:
            out.extend([(m.group(), base + m.start(), base + m.end())
                        for m in _TOKEN_RE.finditer(word)])
    return out


_ENDERS = frozenset((".", "!", "?", "..."))
_CLOSERS = frozenset(("'", '"', ")", "''", "]", "’", "”"))
_BOUNDARY = _ENDERS | _CLOSERS


def sentence_ends(tokens, starts, ends):
    """Where each sentence of a text's tokens ends (exclusive indices; the last is
    len(tokens)), given each token's start and end offsets. A sentence ends at . ! ? or
    ...; a quote or bracket that touches the end mark (no space between) closes the
    same sentence ("Why?" stays whole); one after a space opens the next. Only the few
    tokens that can end a sentence are looked at."""
    marks = {i: tokens[i] for i in positions_in(tokens, _BOUNDARY)}
    return _ends_at_marks(marks, len(tokens), starts, ends)


def sentence_ends_of_spans(text, starts, ends):
    """sentence_ends for tokens given as spans of ``text`` (tokenize_spans' offsets)."""
    return _ends_at_marks(spans_in(text, starts, ends, _BOUNDARY), len(starts), starts, ends)


def _ends_at_marks(marks, n, starts, ends):
    """sentence_ends from ``marks``, {index: token} of the n tokens that are end marks
    or closers."""
    out, first = [], 0
    for i, token in marks.items():
        if token not in _ENDERS:         # a closer ends a sentence right after an ender
            if not (i > first and marks.get(i - 1) in _ENDERS and ends[i - 1] == starts[i]):
                continue
        if marks.get(i + 1) in _CLOSERS and starts[i + 1] == ends[i]:
            continue                     # the closer after it ends the sentence instead
        out.append(i + 1)
        first = i + 1
    if first < n:
        out.append(n)
    return out


def split_sentences(tokens):
    """Group (token, start, end) triples into sentences (see sentence_ends)."""
    bounds = [0, *sentence_ends([t[0] for t in tokens], [t[1] for t in tokens],
                                [t[2] for t in tokens])]
    return [tokens[a:b] for a, b in zip(bounds, bounds[1:])]
