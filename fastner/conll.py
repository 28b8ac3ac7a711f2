"""Read and write CoNLL files.

One token per line, whitespace-separated columns: the token first and the
NER tag last (``token POS chunk NER`` in CoNLL-2003, ``token NER`` in
two-column files). ``-DOCSTART-`` lines open documents, blank lines end
sentences. IOB1 and IOB2 input are both accepted and normalised to IOB2.
"""
from dataclasses import dataclass, field

from fastner.gcpause import paused_gc
from fastner.tags import is_valid_tag, to_iob2


class ConllFormatError(ValueError):
    """A malformed line; the message names the file and line."""


@dataclass
class Sentence:
    tokens: list
    tags: list = None          # IOB2 tags, or None when the file has no tag column
    doc: int = 0               # index of the -DOCSTART- document this sentence belongs to
    extra: list = field(default_factory=list)   # middle columns (POS, chunk) per token,
    # a tuple each: the cyclic collector stops tracking tuples of strings, so a corpus
    # read does not add a tracked object per token to every later full collection


MAX_LINE_BYTES = 1 << 20      # a CoNLL line is one token and a few tags


def read_conll(path, tagged=True):
    """Sentences of a CoNLL file. With ``tagged=False`` a single column (tokens) is allowed."""
    with open(path, "rb") as f, paused_gc():
        return parse_conll(f, name=str(path), tagged=tagged)


def _quote(line, limit=80):
    """A line for an error message: repr, cut to ``limit`` characters."""
    return repr(line) if len(line) <= limit else f"{line[:limit]!r}... ({len(line):,} characters)"


BLOCK_BYTES = 1 << 20


def read_blocks(f, name, block_bytes=None):
    """The lines of a binary file, a block of whole lines at a time: (number of the
    block's first line, list of lines without their line ends). UTF-8, a leading
    byte-order mark dropped, each line at most MAX_LINE_BYTES; otherwise a
    ConllFormatError naming the file, line and byte offset, in a short message.
    Memory stays bounded whatever the file holds. ``block_bytes``: BLOCK_BYTES unless
    given."""
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    offset, first_line = 0, 1
    while True:
        raw = f.read(block_bytes)
        if not raw:
            return
        if not raw.endswith(b"\n"):              # complete the block's last line
            rest = f.readline(MAX_LINE_BYTES + 1)
            if len(rest) > MAX_LINE_BYTES:
                # the long line is the block's last, after the block's whole lines
                line = first_line + raw.count(b"\n")
                raise ConllFormatError(f"{name}:{line}: line longer than {MAX_LINE_BYTES:,} "
                                       f"bytes; not a CoNLL file?")
            raw += rest
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = first_line + raw.count(b"\n", 0, err.start)
            raise ConllFormatError(f"{name}:{line}: not UTF-8 text (byte "
                                   f"{offset + err.start:,} of the file: {err.reason})") from None
        if offset == 0 and text.startswith("\ufeff"):
            text = text[1:]
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()                         # the text ended with a line end
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        longest = max(map(len, lines), default=0)
        if longest > MAX_LINE_BYTES:             # characters; a byte-exact check would cost more
            at = next(i for i, line in enumerate(lines) if len(line) == longest)
            raise ConllFormatError(f"{name}:{first_line + at}: line longer than "
                                   f"{MAX_LINE_BYTES:,} bytes; not a CoNLL file?")
        yield first_line, lines
        offset += len(raw)
        first_line += len(lines)


def decoded_lines(f, name):
    """(line number, line) of each line of a binary file, checked as read_blocks does."""
    for first_line, lines in read_blocks(f, name):
        yield from enumerate(lines, first_line)


def parse_conll(f, name="<input>", tagged=True):
    """Sentences from a binary file object (see decoded_lines)."""
    sentences, tokens, tags, extra = [], [], [], []
    doc, columns, saw_docstart = 0, None, False
    valid_tags = set()          # a file has a handful of distinct tags: check each once

    def flush():
        if tokens:
            sentences.append(Sentence(list(tokens), to_iob2(tags) if tagged else None, doc,
                                      list(extra)))
            tokens.clear(), tags.clear(), extra.clear()

    for lineno, line in decoded_lines(f, name):
        fields = line.split()
        if not fields:
            flush()
            continue
        if fields[0] == "-DOCSTART-":
            flush()
            if saw_docstart or sentences:
                doc += 1
            saw_docstart = True
            continue
        if columns is None:
            columns = len(fields)
            if tagged and columns < 2:
                raise ConllFormatError(f"{name}:{lineno}: expected at least 2 columns "
                                       f"(token ... NER-tag); got {_quote(line.rstrip())}")
        elif len(fields) != columns:
            raise ConllFormatError(f"{name}:{lineno}: expected {columns} columns like the "
                                   f"lines before; got {len(fields)}: {_quote(line.rstrip())}")
        tokens.append(fields[0])
        if tagged:
            if fields[-1] not in valid_tags:
                if not is_valid_tag(fields[-1]):
                    raise ConllFormatError(f"{name}:{lineno}: {_quote(fields[-1])} is not an "
                                           f"IOB tag (expected O, B-TYPE or I-TYPE)")
                valid_tags.add(fields[-1])
            tags.append(fields[-1])
            extra.append(tuple(fields[1:-1]))
        else:
            extra.append(tuple(fields[1:]))
    flush()
    return sentences


def write_conll(f, sentences, predicted=None):
    """Write sentences as CoNLL: token, middle columns, gold tag (if any), predicted tag (if given)."""
    last_doc = None
    for i, sent in enumerate(sentences):
        if sent.doc != last_doc and last_doc is not None:
            # as many fields as a token line: conlleval refuses lines of unequal width
            middle = len(sent.extra[0]) if sent.extra else 0
            tags = (sent.tags is not None) + (predicted is not None)
            f.write(" ".join(["-DOCSTART-"] + ["-X-"] * middle + ["O"] * tags) + "\n\n")
        last_doc = sent.doc
        for j, token in enumerate(sent.tokens):
            cols = [token]
            if sent.extra and j < len(sent.extra):
                cols += sent.extra[j]
            if sent.tags is not None:
                cols.append(sent.tags[j])
            if predicted is not None:
                cols.append(predicted[i][j])
            f.write(" ".join(cols) + "\n")
        f.write("\n")
