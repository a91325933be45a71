"""How faithful a compressed encoder's vectors stay to the original's.

For sentence encoders the quality that matters is not a label but the
geometry of the output vectors: `embedding_fidelity` compares the vectors
of the original and of the compressed model on the same inputs by

- the cosine of each pair (mean and minimum);
- NN@1 agreement: the share of inputs whose nearest neighbour (by cosine,
  among the other inputs) is the same in both spaces;
- NN@k overlap: the mean share of the `k` nearest neighbours found in both
  spaces (semantic search returns a top k).

Numpy only: this module must not touch a model.
"""

import numpy as np


def embedding_fidelity(reference, compressed, k=10):
    """Fidelity figures of `compressed` vectors to the `reference` ones.

    Args:
        reference: `(n, d)` vectors of the original model.
        compressed: `(n, d)` vectors of the compressed model, same inputs.
        k: neighbours compared by the overlap figure (at most `n - 1`).

    Returns:
        A dict: `mean_cosine`, `min_cosine`, `nn1_agreement`,
        `nn{k}_overlap` (floats) and `examples` (n).

    Example:

    ```python
    figures = embedding_fidelity(original_vectors, small_vectors)
    figures["mean_cosine"], figures["nn10_overlap"]
    ```
    """
    reference = _unit(np.asarray(reference, np.float64).reshape(len(reference), -1))
    compressed = _unit(np.asarray(compressed, np.float64).reshape(len(compressed), -1))
    if reference.shape != compressed.shape:
        raise ValueError(
            f"Expected vectors of the same shape, received: {reference.shape} and {compressed.shape}"
        )
    n = len(reference)
    cosines = np.sum(reference * compressed, axis=1)
    out = {"examples": int(n), "mean_cosine": float(np.mean(cosines)), "min_cosine": float(np.min(cosines))}
    k = int(min(k, n - 1))
    if k < 1:
        return out
    ours, theirs = _neighbours(compressed, k), _neighbours(reference, k)
    out["nn1_agreement"] = float(np.mean(ours[:, 0] == theirs[:, 0]))
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ours, theirs)]
    out[f"nn{k}_overlap"] = float(np.mean(overlap))
    return out


def _unit(vectors):
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _neighbours(unit, k, chunk=2048):
    """Indices of each row's `k` most similar other rows, most similar first (ties: lower index)."""
    out = np.empty((len(unit), k), np.int64)
    for start in range(0, len(unit), chunk):
        similarity = unit[start : start + chunk] @ unit.T
        rows = np.arange(start, min(start + chunk, len(unit)))
        similarity[rows - start, rows] = -np.inf  # never its own neighbour
        # A stable sort on -similarity: ties go to the lower index.
        out[start : start + len(rows)] = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return out
