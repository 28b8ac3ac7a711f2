"""The tokenizer's scan over white space, in C (fastner.tokenize is the one entry point).

fastner.tokenize.tokenize splits text into white-space-delimited chunks and runs the
token pattern only over chunks that are not one character, all letters or all digits;
in news text nearly every chunk is one of those. This module does the same scan with
the same character classes as Python's str methods (str.split's white space is
Py_UNICODE_ISSPACE, str.isalpha's letters Py_UNICODE_ISALPHA, str.isdecimal's digits
Py_UNICODE_ISDECIMAL), without an interpreter step per character or per chunk.
fastner.tokenize._tokenize_python is its Python twin; tests/test_tokenize.py checks
they agree on generated text.
"""
from cpython.unicode cimport Py_UNICODE_ISALPHA, Py_UNICODE_ISDECIMAL, Py_UNICODE_ISSPACE


def scan(str text not None, finditer):
    """(tokens, starts, ends) of ``text`` as three lists: each chunk between white space
    as it stands when it is one character, all letters or all digits, else the matches
    of ``finditer`` (the token pattern's finditer) over it, shifted to the chunk."""
    cdef Py_ssize_t n = len(text), i = 0, start
    cdef Py_UCS4 ch
    cdef bint alpha, decimal
    tokens, starts, ends = [], [], []
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
            alpha = alpha and Py_UNICODE_ISALPHA(ch)
            decimal = decimal and Py_UNICODE_ISDECIMAL(ch)
            i += 1
        if i - start == 1 or alpha or decimal:
            tokens.append(text[start:i])
            starts.append(start)
            ends.append(i)
        else:
            for m in finditer(text[start:i]):
                tokens.append(m.group())
                starts.append(start + m.start())
                ends.append(start + m.end())
    return tokens, starts, ends
