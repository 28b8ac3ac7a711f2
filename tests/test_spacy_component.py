"""The spaCy pipeline component, registered through spaCy's entry points."""
import pytest

spacy = pytest.importorskip("spacy")


@pytest.fixture(scope="module")
def nlp(tiny_model_path):
    pipeline = spacy.blank("en")
    pipeline.add_pipe("fastner_ner", config={"model": tiny_model_path})
    return pipeline


def test_entities_on_spacy_tokens(nlp, tiny_model_path):
    import fastner
    text = "Maria Lopez visited Lisbon on Monday."
    doc = nlp(text)
    ours = fastner.load(tiny_model_path)(text)
    assert [(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents] == \
        [(e.text, e.label, e.start, e.end) for e in ours.ents]


def test_pipe_equals_call_and_keeps_order(nlp):
    texts = [f"Maria Lopez visited Lisbon {i} times." for i in range(7)] + ["", "Hi."]
    piped = [[(e.text, e.label_) for e in d.ents] for d in nlp.pipe(texts, batch_size=3)]
    assert piped == [[(e.text, e.label_) for e in nlp(t).ents] for t in texts]


def test_entity_inside_a_spacy_token_grows_to_the_token(tiny_model_path):
    """spaCy keeps "Lisbon-based" as one token where fastner may see "Lisbon":
    the span expands to whole spaCy tokens instead of being dropped."""
    pipeline = spacy.blank("en")
    pipeline.add_pipe("fastner_ner", config={"model": tiny_model_path})
    doc = pipeline("Maria Lopez joined a Lisbon-based firm.")
    for ent in doc.ents:
        assert ent.start_char == ent[0].idx and ent.end_char == ent[-1].idx + len(ent[-1])
