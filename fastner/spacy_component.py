"""fastner as a spaCy pipeline component (``pip install 'fastner[spacy]'``):

    import spacy
    nlp = spacy.blank("en")
    nlp.add_pipe("fastner_ner")                     # or config={"model": "my-model.npz"}
    doc = nlp("EU rejects German call to boycott British lamb.")
    [(ent.text, ent.label_) for ent in doc.ents]

spaCy finds the factory through the ``spacy_factories`` entry point in
pyproject.toml. fastner tokenizes and tags ``doc.text`` itself and maps each
entity's character offsets onto whatever tokens the spaCy pipeline made
(an entity that ends inside a spaCy token grows to cover it).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from spacy.language import Language
from spacy.tokens import Doc as SpacyDoc
from spacy.util import filter_spans

import fastner


@Language.factory("fastner_ner", default_config={"model": None, "batch_size": 256})
def make_fastner_ner(nlp: Language, name: str, model: str | None, batch_size: int):
    return FastnerNER(model, batch_size)


class FastnerNER:
    """Sets ``doc.ents`` from fastner's entities; the shipped model unless ``model``."""

    def __init__(self, model: str | None = None, batch_size: int = 256):
        self.tagger = fastner.load(model)
        self.batch_size = batch_size

    def __call__(self, doc: SpacyDoc) -> SpacyDoc:
        return self._set_entities(doc, self.tagger(doc.text))

    def pipe(self, docs: Iterable[SpacyDoc], batch_size: int | None = None) -> Iterator[SpacyDoc]:
        batch = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == (batch_size or self.batch_size):
                yield from self._tag(batch)
                batch = []
        yield from self._tag(batch)

    def _tag(self, docs):
        for doc, result in zip(docs, self.tagger.tag_texts([d.text for d in docs])):
            yield self._set_entities(doc, result)

    @staticmethod
    def _set_entities(doc, result):
        spans = [doc.char_span(e.start, e.end, label=e.label, alignment_mode="expand")
                 for e in result.ents]
        doc.ents = filter_spans([s for s in spans if s is not None])
        return doc
