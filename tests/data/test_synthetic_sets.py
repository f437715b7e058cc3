"""Synthetic training sets and cores: the files on disk match the truth tables."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from foramflow.data.synthetic import (
    MORPHOTYPES,
    climate_index,
    make_core,
    true_abundance,
    write_training_set,
)


def test_training_set_has_the_requested_classes_and_counts(tmp_path):
    truth = write_training_set(
        tmp_path, classes=["spherical", "biserial"], n_per_class=3, image_size=48, seed=1
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["biserial", "spherical"]
    for name in ("spherical", "biserial"):
        files = sorted((tmp_path / name).glob("*.png"))
        assert len(files) == 3
        with Image.open(files[0]) as image:
            assert image.size == (48, 48) and image.mode == "L"
    assert truth["class"].value_counts().to_dict() == {"spherical": 3, "biserial": 3}
    assert all((tmp_path / p).is_file() for p in truth["path"])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "truth.csv"), truth)


def test_training_set_is_deterministic_and_grows_without_changing(tmp_path):
    write_training_set(tmp_path / "a", classes=["planispiral"], n_per_class=2, seed=9)
    write_training_set(tmp_path / "b", classes=["double", "planispiral"], n_per_class=3, seed=9)
    for i in range(2):
        name = f"planispiral/planispiral_{i:05d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_colour_training_set_is_rgb(tmp_path):
    write_training_set(tmp_path, classes=["fragment"], n_per_class=1, image_size=32, colour=True)
    with Image.open(next((tmp_path / "fragment").glob("*.png"))) as image:
        assert image.mode == "RGB"


def test_unknown_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown classes"):
        write_training_set(tmp_path, classes=["ammonite"], n_per_class=1)


def test_abundance_is_smooth_varies_and_sums_to_one():
    depth = np.linspace(0, 10, 401)
    climate = climate_index(depth)
    assert climate.min() >= -1 and climate.max() <= 1
    assert climate.max() - climate.min() > 1.2  # glacial and interglacial both present
    abundance = true_abundance(depth)
    assert list(abundance.columns) == list(MORPHOTYPES)
    np.testing.assert_allclose(abundance.sum(axis=1), 1)
    assert np.abs(np.diff(abundance.to_numpy(), axis=0)).max() < 0.03  # smooth at 2.5 cm
    swing = abundance.max() - abundance.min()
    assert swing["trochospiral"] > 0.1 and swing["planispiral"] > 0.1
    # Warm and cold morphotypes move against each other.
    assert np.corrcoef(abundance["trochospiral"], abundance["planispiral"])[0, 1] < -0.5


def test_core_of_crops(tmp_path):
    truth = make_core(tmp_path, n_samples=3, particles_per_sample=6, image_size=32, seed=0)
    abundance = pd.read_csv(tmp_path / "truth_abundance.csv")
    human = pd.read_csv(tmp_path / "human_counts.csv")
    particles = pd.read_csv(tmp_path / "truth_particles.csv")
    assert list(abundance["sample"]) == ["S1", "S2", "S3"]
    np.testing.assert_allclose(abundance[list(MORPHOTYPES)].sum(axis=1), 1)
    assert (human[list(MORPHOTYPES)].sum(axis=1) == 300).all()
    assert particles.groupby("sample").size().to_dict() == {"S1": 6, "S2": 6, "S3": 6}
    assert all((tmp_path / f).is_file() for f in particles["file"])
    assert len(list((tmp_path / "samples" / "S2").glob("*.png"))) == 6
    pd.testing.assert_frame_equal(particles, truth.particles, check_dtype=False)


def test_core_of_slides(tmp_path):
    truth = make_core(
        tmp_path, n_samples=2, particles_per_sample=8, depths_m=[1.0, 2.5], as_slides=True
    )
    particles = truth.particles
    assert set(particles["file"]) == {"samples/S1/slide_01.png", "samples/S2/slide_01.png"}
    assert particles.groupby("sample").size().to_dict() == {"S1": 8, "S2": 8}
    assert {"x", "y", "radius_px", "radius_um"} <= set(particles.columns)
    assert list(truth.abundance["depth_m"]) == [1.0, 2.5]
    with Image.open(tmp_path / "samples/S1/slide_01.png") as image:
        assert image.width > 100


def test_human_counts_are_draws_from_the_truth(tmp_path):
    truth = make_core(tmp_path, n_samples=40, particles_per_sample=1, image_size=16, seed=2)
    observed = truth.human_counts[list(MORPHOTYPES)].to_numpy() / 300
    expected = truth.abundance[list(MORPHOTYPES)].to_numpy()
    # Binomial standard error of a proportion from 300 specimens is at most 0.029.
    assert np.abs(observed - expected).max() < 5 * 0.029
    assert np.abs((observed - expected).mean(axis=0)).max() < 0.02
    assert not np.allclose(observed, expected)
