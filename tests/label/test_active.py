"""Label next, possible mislabels and near duplicates on images with known structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from foramflow.label import active
from foramflow.label.store import LabelStore


def test_label_next_prefers_uncertain_and_skips_validated(store: LabelStore):
    # Images 1-10 predicted; 3 and 4 uncertain (small margin); 11 and 12 validated.
    store.set_predictions(
        [(i, "dark", 0.99, 0.98) for i in range(1, 11) if i not in (3, 4)]
        + [(3, "dark", 0.55, 0.1), (4, "bright", 0.6, 0.2)],
        model="m",
    )
    store.set_labels([11, 12], "dark", user="anna")
    chosen = active.label_next(store, n=2, pool_factor=1)
    assert chosen == [3, 4]
    chosen = active.label_next(store, n=4)
    assert len(chosen) == 4 and set(chosen).isdisjoint({11, 12})
    assert chosen[:2] == [3, 4]


def test_label_next_spreads_over_different_images(tmp_path: Path, make_image):
    """Without predictions, one image per visual cluster rather than near copies."""
    rng = np.random.default_rng(1)
    root = tmp_path / "imgs"
    kinds = {"a": np.tile(np.linspace(0, 1, 24), (24, 1)), "b": np.full((24, 24), 0.2)}
    kinds["c"] = kinds["a"].T
    for kind, base in kinds.items():
        for i in range(8):
            make_image(root / "s" / f"{kind}{i}.png", base + rng.normal(0, 0.01, base.shape))
    store = LabelStore(tmp_path / "p")
    store.add_images(root)
    chosen = active.label_next(store, n=3)
    names = {row["relpath"][2] for row in store.rows(chosen)}
    assert names == {"a", "b", "c"}


def test_possible_mislabels_finds_the_odd_one(store: LabelStore):
    ids = {row["relpath"]: row["id"] for row in store.page(limit=100)}
    for relpath, image_id in ids.items():
        bright = int(relpath[-6:-4]) % 2 == 1
        store.set_labels([image_id], "bright" if bright else "dark", user="anna")
    wrong = ids["S1_10cm/p02.png"]  # a dark image labelled bright
    store.set_labels([wrong], "bright", user="anna")
    found = active.possible_mislabels(store, k=3)
    assert [item["id"] for item in found] == [wrong]
    assert found[0]["suggested"] == "dark"


def test_near_duplicates_groups_copies(store: LabelStore, image_root: Path, make_image):
    """The fixture repeats each image in both samples; add an exact and a brighter copy."""
    original = np.asarray(Image.open(image_root / "S1_10cm/p03.png"), dtype=np.float32) / 255
    make_image(image_root / "S2_20cm" / "copy.png", original)
    make_image(image_root / "S2_20cm" / "brighter.png", original + 0.03)
    store.add_images(image_root)
    groups = active.near_duplicates(store)
    names = sorted(sorted(row["relpath"] for row in store.rows(group)) for group in groups)
    expected = [[f"S1_10cm/p{i:02d}.png", f"S2_20cm/p{i:02d}.png"] for i in range(6)]
    expected[3] = ["S1_10cm/p03.png", "S2_20cm/brighter.png", "S2_20cm/copy.png", "S2_20cm/p03.png"]
    assert names == expected
