"""Which images to look at next: informative ones, possible mislabels, near duplicates.

* **Label next** (uncertainty with diversity): the unvalidated images the model is least sure
  of (smallest margin between its two best scores; images without a prediction count as
  least sure), spread over the image space by k-means on features, one per cluster.
* **Possible mislabels**: validated images whose nearest validated neighbours in feature
  space mostly carry another label.
* **Near duplicates**: images whose difference hashes differ in at most a few bits; the
  paper names duplicates in the training set as a source of error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from foramflow.label.features import FEATURE_SOURCE, image_features
from foramflow.label.store import LabelStore


def features_for(store: LabelStore, ids: Sequence[int]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Feature vectors and hashes of ``ids``, computed once and kept in the store.

    Returns the ids that have features (unreadable images are left out), their vectors
    (N, D) and their hashes (N,) as uint64.
    """
    ids = list(ids)
    stored = store.stored_features(ids, FEATURE_SOURCE)
    missing = [i for i in ids if i not in stored]
    if missing:
        paths = store.image_paths(missing)
        new_rows = []
        for start in range(0, len(missing), 512):
            chunk = missing[start : start + 512]
            for image_id, feature in zip(
                chunk, image_features([paths[i] for i in chunk]), strict=True
            ):
                if feature is not None:
                    new_rows.append((image_id, feature[0].tobytes(), feature[1]))
        store.save_features(new_rows, FEATURE_SOURCE)
        stored.update({i: (v, h) for i, v, h in new_rows})
    kept = [i for i in ids if i in stored]
    if not kept:
        return [], np.zeros((0, 0), np.float32), np.zeros(0, np.uint64)
    vectors = np.stack([np.frombuffer(stored[i][0], dtype=np.float32) for i in kept])
    hashes = np.array([stored[i][1] for i in kept], dtype=np.int64).view(np.uint64)
    return kept, vectors, hashes


def label_next(
    store: LabelStore, n: int = 50, *, pool_factor: int = 10, seed: int = 0
) -> list[int]:
    """Up to ``n`` unvalidated images to label next, most informative first."""
    rows = store.query("SELECT id, pred_margin FROM images WHERE label IS NULL")
    if not rows:
        return []
    rng = np.random.default_rng(seed)
    ids = np.array([row[0] for row in rows])
    uncertainty = 1.0 - np.array([0.0 if row[1] is None else row[1] for row in rows])
    # Random tie-break, so that images without predictions come in a random, not folder, order.
    order = np.lexsort((rng.random(len(ids)), -uncertainty))
    pool = ids[order[: max(n * pool_factor, n)]]
    kept, vectors, _ = features_for(store, pool.tolist())
    if len(kept) <= n:
        return kept
    from sklearn.cluster import KMeans

    clusters = KMeans(n_clusters=n, n_init=1, random_state=seed).fit_predict(vectors)
    unc = dict(zip(ids.tolist(), uncertainty.tolist(), strict=True))
    best: dict[int, int] = {}
    for image_id, cluster in zip(kept, clusters, strict=True):
        if cluster not in best or unc[image_id] > unc[best[cluster]]:
            best[cluster] = image_id
    return sorted(best.values(), key=lambda i: -unc[i])


def possible_mislabels(
    store: LabelStore, *, k: int = 5, min_disagreement: float = 0.6
) -> list[dict]:
    """Validated images most of whose ``k`` nearest validated neighbours disagree.

    Each result holds the image id, its label, the neighbours' majority label and the
    fraction of neighbours that disagree; the strongest disagreements come first.
    """
    rows = store.query("SELECT id, label FROM images WHERE label IS NOT NULL ORDER BY id")
    labels = {row[0]: row[1] for row in rows}
    kept, vectors, _ = features_for(store, list(labels))
    if len(kept) <= k:
        return []
    from sklearn.neighbors import NearestNeighbors

    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(vectors).kneighbors(vectors)
    out = []
    for row, image_id in enumerate(kept):
        others = [labels[kept[j]] for j in neighbours[row] if j != row][:k]
        disagree = sum(label != labels[image_id] for label in others) / len(others)
        if disagree >= min_disagreement:
            majority = Counter(others).most_common(1)[0][0]
            out.append(
                {
                    "id": image_id,
                    "label": labels[image_id],
                    "suggested": majority,
                    "disagreement": disagree,
                }
            )
    return sorted(out, key=lambda item: (-item["disagreement"], item["id"]))


def near_duplicates(store: LabelStore, *, max_bits: int = 4) -> list[list[int]]:
    """Groups of images whose 64-bit hashes differ in at most ``max_bits`` bits."""
    all_ids = [row[0] for row in store.query("SELECT id FROM images ORDER BY id")]
    kept, _, hashes = features_for(store, all_ids)
    if len(kept) < 2:
        return []
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import radius_neighbors_graph

    bits = np.unpackbits(hashes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1).astype(bool)
    graph = radius_neighbors_graph(bits, radius=max_bits / 64, metric="hamming")
    _, component = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for image_id, group in zip(kept, component, strict=True):
        groups.setdefault(int(group), []).append(image_id)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
