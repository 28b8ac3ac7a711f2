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
