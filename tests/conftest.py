import os

import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                           "shared", "data", "conll2003")


@pytest.fixture
def tiny_train_path():
    return os.path.join(FIXTURES, "tiny_train.txt")


@pytest.fixture
def tiny_dev_path():
    return os.path.join(FIXTURES, "tiny_dev.txt")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A small model trained once per test session on the fixtures (no GloVe)."""
    from fastner.conll import read_conll
    from fastner.train import TrainConfig, Trainer
    out = str(tmp_path_factory.mktemp("model") / "tiny.npz")
    cfg = TrainConfig(epochs=4, hidden=32, glove_words=0, word_dim=16, seed=1, patience=10)
    trainer = Trainer(cfg, out, quiet=True, log=lambda msg: None)
    train = read_conll(os.path.join(FIXTURES, "tiny_train.txt"))
    dev = read_conll(os.path.join(FIXTURES, "tiny_dev.txt"))
    model, state = trainer.run(train, dev)
    trainer.finish(model, state, dev)
    return out
