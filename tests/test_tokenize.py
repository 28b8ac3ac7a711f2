import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastner.tokenize import split_sentences, tokenize


@pytest.mark.parametrize("text,tokens", [
    ("EU rejects German call to boycott British lamb.",
     ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]),
    ("I don't think the U.S. will.", ["I", "do", "n't", "think", "the", "U.S.", "will", "."]),
    ("Mr. Smith's firm, Acme-Globex Inc., paid $1,000.50 on 1996-08-22 (3.5%).",
     ["Mr.", "Smith", "'s", "firm", ",", "Acme-Globex", "Inc.", ",", "paid", "$", "1,000.50",
      "on", "1996-08-22", "(", "3.5", "%", ")", "."]),
    ("See https://example.org/a?b=1, or mail ann@example.org!",
     ["See", "https://example.org/a?b=1", ",", "or", "mail", "ann@example.org", "!"]),
    ("a 10-year-old O'Neill...", ["a", "10-year-old", "O'Neill", "..."]),
    ("Zoe\u0301 in 東京 😀 a\u200bb", ["Zoe\u0301", "in", "東京", "😀", "a", "b"]),
    ("", []),
])
def test_tokens(text, tokens):
    assert [t for t, _, _ in tokenize(text)] == tokens


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_offsets_always_index_the_text(text):
    previous_end = 0
    for token, start, end in tokenize(text):
        assert text[start:end] == token and token and not token.isspace()
        assert start >= previous_end
        previous_end = end


# white space str.split() knows, digits str.isdecimal() knows and letters of several
# scripts, so the C scan's character classes are compared with Python's own
_CLASSES = list("aZéß東Ⅷ١٣1²½_.,'-$ \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2000\u2028\u3000\u0301😀")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(_CLASSES + ["U.S.", "n't", "1,000"]))
                 .map("".join)))
def test_c_scan_equals_its_python_twin(text):
    from fastner.tokenize import _tokenize_python
    if "\u200b" not in text and "\ufeff" not in text and "\u2060" not in text \
            and not any("\u200b" <= ch <= "\u200d" for ch in text):
        assert tokenize(text) == _tokenize_python(text)


def test_c_scan_splits_a_recurring_chunk_once_and_places_each_copy():
    # scan splits each distinct chunk once per call: every copy keeps its own offsets
    from fastner.tokenize import _tokenize_python
    text = "U.S. x U.S.  don't\nU.S. don't 1996-08-31 (1996-08-31) 1996-08-31"
    got = tokenize(text)
    assert got == _tokenize_python(text)
    assert [start for token, start, _ in got if token == "U.S."] == [0, 7, 19]


def test_boundary_positions_in_c_equal_the_list_comprehension():
    from fastner._text import positions_in
    tokens = ["Why", "?", "''", "He", "left", ".", "...", ")", "x"] * 3
    wanted = frozenset((".", "?", "''", ")"))
    assert positions_in(tokens, wanted) == [i for i, t in enumerate(tokens) if t in wanted]
    # the screen by length and first character, and the sets it must not screen with
    # (an empty string or a non-string in them): tokens of every length, first
    # characters shared with a wanted string, non-BMP characters, non-strings
    tokens = ["", ".", "..", "...", "....", "?!", "'", "''", "'" * 3, ")", "x", "\U0001F600",
              "\U0001F600.", 7, None, "\u2019", "\u2019\u2019", "a.", ".a"] * 2
    for wanted in (frozenset((".", "!", "?", "...", "'", '"', ")", "''", "]", "\u2019", "\u201d")),
                   frozenset(("", ".")), frozenset((7, ".")), frozenset(("\U0001F600",)),
                   frozenset(("..", "\u2019\u2019")), frozenset(),
                   frozenset(chr(c) for c in range(33, 80))):      # too many to screen
        assert positions_in(tokens, wanted) == [i for i, t in enumerate(tokens) if t in wanted]
    with pytest.raises(TypeError):
        positions_in(tuple(tokens), wanted)
    with pytest.raises(TypeError):
        positions_in(tokens, set(wanted))


def test_c_scan_refuses_what_is_not_a_string():
    from fastner._text import scan_spans
    from fastner.tokenize import _TOKEN_RE
    for bad in (b"bytes", None):
        with pytest.raises(TypeError):
            scan_spans(bad, _TOKEN_RE.finditer, {}, 64)
    with pytest.raises(TypeError):
        scan_spans("text", _TOKEN_RE.finditer, None, 64)


def test_chunk_pieces_are_kept_across_calls_and_bounded(monkeypatch):
    # a chunk the pattern split is split once while the memo holds it; past the limit
    # the memo starts over, and the tokens are the same either way
    import fastner.tokenize as tk
    calls = []
    pattern = tk._TOKEN_RE

    class Counting:
        def finditer(self, chunk):
            calls.append(chunk)
            return pattern.finditer(chunk)
    monkeypatch.setattr(tk, "_TOKEN_RE", Counting())
    monkeypatch.setattr(tk, "_PIECES", {})
    monkeypatch.setattr(tk, "PIECES_LIMIT", 3)
    text = "U.S. don't 1996-08-31 U.S."
    expected = [(m.group(), m.start(), m.end()) for m in pattern.finditer(text)]
    assert tokenize(text) == expected and calls == ["U.S.", "don't", "1996-08-31"]
    assert tokenize(text) == expected and len(calls) == 3          # all three kept
    assert tokenize("a-b c-d") == [("a-b", 0, 3), ("c-d", 4, 7)]    # 5 chunks held now
    assert len(tk._PIECES) == 5 and len(calls) == 5
    assert tokenize(text) == expected and len(calls) == 8          # over 3: started over
    # a chunk longer than PIECES_LONGEST is split every time and never kept
    tk._PIECES.clear()
    calls.clear()
    long_chunk = "a-" * 40 + "b"
    assert tokenize(long_chunk) == tokenize(long_chunk) == [(long_chunk, 0, 81)]
    assert calls == [long_chunk, long_chunk] and not tk._PIECES


def test_token_strings_and_spans_in_refuse_bad_spans():
    import numpy as np

    from fastner._text import spans_in, token_strings
    one = np.array([1], np.int64)
    for call in (lambda s, e: token_strings("abc", s, e),
                 lambda s, e: spans_in("abc", s, e, frozenset("."))):
        with pytest.raises(ValueError, match=r"span 0 is \[1, 5\); the text has 3"):
            call(one, one + 4)
        with pytest.raises(ValueError, match=r"span 0 is \[1, 0\)"):
            call(one, one - 1)
        with pytest.raises(ValueError, match="differ in length"):
            call(one, np.array([1, 2], np.int64))
        with pytest.raises(ValueError):                   # int32 offsets
            call(one.astype(np.int32), one.astype(np.int32))
    with pytest.raises(TypeError, match="strings only"):
        spans_in("abc", one, one, frozenset((".", 7)))
    with pytest.raises(TypeError):
        spans_in("abc", one, one, {"."})
    assert token_strings("abc", one - 1, one + 1) == ["ab"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["He", "left", ".", "?", "!", "...", "''", '"', ")", "]",
                                 "\u2019", "\u201d", "'", "x.", "..", "", "Why"]), max_size=30),
       st.lists(st.booleans(), min_size=30, max_size=30))
def test_sentence_ends_of_spans_equal_sentence_ends(pieces, spaced):
    # the same ends from spans of a text as from its token strings, with marks that
    # touch (no space between) and marks that do not; spans_in equals its twin
    import numpy as np

    from fastner._text import spans_in
    from fastner.tokenize import _BOUNDARY, sentence_ends, sentence_ends_of_spans
    text, starts, ends = "", [], []
    for piece, space in zip(pieces, spaced):
        text += " " if space and text else ""
        starts.append(len(text))
        text += piece
        ends.append(len(text))
    starts, ends = np.array(starts, np.int64), np.array(ends, np.int64)
    tokens = [text[a:b] for a, b in zip(starts, ends)]
    assert spans_in(text, starts, ends, _BOUNDARY) == \
        {i: t for i, t in enumerate(tokens) if t in _BOUNDARY}
    assert sentence_ends_of_spans(text, starts, ends) == sentence_ends(tokens, starts, ends)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(list("aZé1.,'-$%:/ \n\u200b\u0301😀東") +
                                ["n't", "'s", "U.S.", "Mr.", "http://x.y/z", "don"])).map("".join))
def test_chunked_tokenizer_equals_the_pattern_on_the_whole_text(text):
    from fastner.tokenize import _TOKEN_RE
    assert tokenize(text) == [(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def test_sentence_split():
    toks = tokenize('He left. "Why?" she asked. Fine')
    assert [[t[0] for t in s] for s in split_sentences(toks)] == \
        [["He", "left", "."], ['"', "Why", "?", '"'], ["she", "asked", "."], ["Fine"]]


# Shapes that make a backtracking tokenizer rescan from every start position
# (the unbounded e-mail branch took 30 s on "a+" * 100000); 1 MB without a space.
PATHOLOGICAL = ["a+", "a.", "a@", "a-", "'a", "a_", "+a", "1,", "1.a", "a1", "a@b", "a@b.",
                "x" * 60 + "+@", "a+@" + "b" * 70 + ".", "http://.", "www.", "a.b+c@d",
                "an't", "a's", "a\u0301+", "1-a"]


@pytest.mark.parametrize("unit", PATHOLOGICAL)
def test_time_is_linear_on_pathological_input(unit):
    """Each 1 MB input in its own process, killed at the bound: a quadratic case
    fails here instead of hanging the suite. Linear cases take 0.01-1.5 s."""
    import subprocess
    import sys
    code = ("import sys, time; from fastner.tokenize import tokenize; "
            "text = sys.argv[1] * (1_000_000 // len(sys.argv[1])); "
            "t = time.perf_counter(); tokens = tokenize(text); "
            "assert ''.join(text[a:b] for _, a, b in tokens) == text.replace(' ', ''); "
            "print(time.perf_counter() - t)")
    try:
        done = subprocess.run([sys.executable, "-c", code, unit], capture_output=True,
                              text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tokenizing {unit!r} * {1_000_000 // len(unit)} took over 15 s")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 8


def test_long_email_parts_are_not_one_token():
    # RFC 5321 bounds: local part 64 characters, labels 63
    assert [t for t, _, _ in tokenize("ann.lee+x@mail.example.org")] == \
        ["ann.lee+x@mail.example.org"]
    assert len(tokenize("x" * 65 + "@example.org")) > 1


def test_token_pattern_is_str_isspace():
    import re

    from fastner.tokenize import TOKEN_PATTERN, is_valid_token
    pattern = re.compile(TOKEN_PATTERN)
    for code in range(0x110000):
        ch = chr(code)
        assert is_valid_token(ch) == (not ch.isspace()), hex(code)
        assert (pattern.search(ch) is not None) == (not ch.isspace()), hex(code)
    assert not is_valid_token("") and not is_valid_token("a\n") and is_valid_token("\ufeffa")


def _split_one_token_at_a_time(tokens):
    """The plain per-token loop split_sentences replaced: kept as its specification."""
    enders, closers = (".", "!", "?", "..."), ("'", '"', ")", "''", "]", "’", "”")
    sentences, current = [], []
    for i, tok in enumerate(tokens):
        current.append(tok)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        closes_here = nxt is not None and nxt[0] in closers and nxt[1] == tok[2]
        ends = tok[0] in enders or (tok[0] in closers and len(current) > 1
                                    and current[-2][0] in enders and current[-2][2] == tok[1])
        if ends and not closes_here:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["a", "B", ".", "!", "?", "...", "'", '"', ")", "''", "]", "’",
                                 "”", " ", "  ", "\n", "(", "U.S."])).map("".join))
def test_sentence_split_equals_the_per_token_loop(text):
    tokens = tokenize(text)
    assert split_sentences(tokens) == _split_one_token_at_a_time(tokens)


@pytest.mark.parametrize("separator", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"])
def test_every_zero_width_separator_splits_like_a_space(separator):
    # inside a chunk, and alone between spaces (where the scan over white-space chunks,
    # which texts without one take, would keep it as a one-character token)
    assert tokenize(f"Maria{separator}Lopez é") == [("Maria", 0, 5), ("Lopez", 6, 11),
                                                    ("é", 12, 13)]
    assert tokenize(f"Maria {separator} Lopez") == [("Maria", 0, 5), ("Lopez", 8, 13)]


def test_every_zero_width_separator_splits_even_all_together():
    from fastner.tokenize import _ZERO_WIDTH, tokenize
    text = "a" + "".join(f"{zw}{chr(ord('b') + i)}" for i, zw in enumerate(_ZERO_WIDTH))
    assert [t for t, _, _ in tokenize(text)] == ["a", "b", "c", "d", "e", "f"]
    assert all(text[s:e] == t for t, s, e in tokenize(text))


@pytest.mark.parametrize("text", ["a a a", "the cat and the hat", "U.S. U.S. U.S.",
                                  "  x  x\tx\n", "Paris, Paris. Paris!"])
def test_the_python_twin_finds_repeated_chunks_at_their_own_offsets(text):
    from fastner.tokenize import _tokenize_python, tokenize
    assert _tokenize_python(text) == tokenize(text)


def test_sentence_ends_close_the_last_sentence_without_an_end_mark():
    from fastner.tokenize import sentence_ends
    assert sentence_ends(["a", "b"], [0, 2], [1, 3]) == [2]
    assert sentence_ends(["a", "."], [0, 1], [1, 2]) == [2]
    assert sentence_ends(["a", ".", "b"], [0, 1, 3], [1, 2, 4]) == [2, 3]
    assert sentence_ends([], [], []) == []
