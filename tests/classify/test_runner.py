import json
import math
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from foramflow.classify.runner import RunMismatchError, classify_folder
from foramflow.classify.samples import SampleRule
from interrupting import InterruptAt


def run(bundle, images, out, **options):
    options.setdefault("workers", 0)
    return classify_folder(bundle, images, out, **options)


def test_three_samples_give_exact_counts_and_tables(kit, bundle, tree, tmp_path):
    out = tmp_path / "out"
    result = run(bundle, tree, out, batch_size=3, chunk_size=4)

    counts = pd.read_csv(out / "counts.csv", index_col="sample")
    assert list(counts.columns) == ["depth", *kit.labels, "unsure", "error"]
    assert counts.pop("depth").isna().all()  # none known
    for sample, expected in kit.expected_counts.items():
        assert tuple(counts.loc[sample]) == expected
    pd.testing.assert_frame_equal(counts, result.counts, check_names=False)

    shares = pd.read_csv(out / "relative_abundance.csv", index_col="sample")
    assert list(shares.columns) == ["depth", *kit.labels]
    shares = shares.drop(columns="depth")
    assert shares.loc["S1"].tolist() == [0.75, 0.25]
    assert shares.loc["S2"].tolist() == [0.5, 0.5]  # the unsure image is left out

    info = json.loads((out / "run.json").read_text())
    assert info["bundle"] == str(bundle.resolve())
    assert info["images_dir"] == str(tree.resolve())
    assert (info["threshold"], info["n_images"], info["n_errors"]) == (0.8, 13, 0)
    assert len(info["bundle_hash"]) == 64
    assert not (out / "chunks").exists()


def test_predictions_follow_the_output_contract(kit, bundle, tree, tmp_path):
    run(bundle, tree, tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "predictions.parquet")
    assert table.schema.names == [
        "path", "sample", "depth", "class", "score", "prob_dark", "prob_bright", "status", "error"
    ]  # fmt: skip
    assert str(table.schema.field("score").type) == "float"
    assert str(table.schema.field("prob_dark").type) == "float"
    frame = table.to_pandas().set_index("path")
    assert len(frame) == 13
    mid = frame.loc["S2/nested/img_004.png"]  # recursion, POSIX separators
    assert mid[["sample", "class", "status", "error"]].tolist() == ["S2", "unsure", "unsure", ""]
    assert mid["prob_bright"] == pytest.approx(kit.p_bright(kit.mid), abs=1e-5)
    dark = frame.loc["S1/img_000.png"]
    assert (dark["class"], dark["status"]) == ("dark", "ok")
    assert dark["score"] == pytest.approx(1 - kit.p_bright(kit.dark), abs=1e-6)
    assert math.isnan(dark["depth"])
    np.testing.assert_allclose(frame["prob_dark"] + frame["prob_bright"], 1, atol=1e-6)


def test_threshold_boundary_end_to_end(kit, tmp_path):
    level = 150  # P(bright) = sigmoid(20 · (300/255 − 1)) ≈ 0.9713
    images = kit.write_grey_png(tmp_path / "images" / "S" / "x.png", level).parent.parent
    bundle = kit.write_bundle(tmp_path / "bundle")
    assert run(bundle, images, tmp_path / "a").counts.loc["S", "bright"] == 1
    at = float(pd.read_parquet(tmp_path / "a" / "predictions.parquet")["score"][0])
    assert at == pytest.approx(kit.p_bright(level), abs=1e-6)
    assert run(bundle, images, tmp_path / "b", threshold=at).counts.loc["S", "unsure"] == 1
    below = float(np.nextafter(np.float32(at), np.float32(0)))
    assert run(bundle, images, tmp_path / "c", threshold=below).counts.loc["S", "bright"] == 1


def test_threshold_outside_range_is_refused(bundle, tree, tmp_path):
    with pytest.raises(ValueError, match=r"\(0.5, 1.0\]"):
        run(bundle, tree, tmp_path / "out", threshold=0.5)


def test_class_thresholds_from_the_bundle(kit, tree, tmp_path):
    bundle = kit.write_bundle(tmp_path / "strict", class_thresholds={"bright": 1.0})
    counts = run(bundle, tree, tmp_path / "out").counts
    assert counts["bright"].sum() == 0
    assert counts["dark"].sum() == 5
    assert counts["unsure"].sum() == 8


def test_bad_images_get_status_error_and_the_run_completes(bundle, tree, tmp_path):
    (tree / "S1" / "empty.png").write_bytes(b"")
    (tree / "S1" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (tree / "S3" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    result = run(bundle, tree, tmp_path / "out", workers=1)
    assert sorted(result.errors["path"]) == ["S1/corrupt.png", "S1/empty.png", "S3/truncated.jpg"]
    reasons = dict(zip(result.errors["path"], result.errors["error"], strict=True))
    assert "empty" in reasons["S1/empty.png"]
    frame = pd.read_parquet(tmp_path / "out" / "predictions.parquet").set_index("path")
    bad = frame.loc["S1/corrupt.png"]
    assert (bad["class"], bad["status"]) == ("", "error")
    assert math.isnan(bad["score"]) and math.isnan(bad["prob_dark"])
    assert result.counts.loc["S1", "error"] == 2
    assert result.counts.loc["S1", "dark"] == 3  # the good images are still counted
    assert result.run.n_errors == 3


def test_depths_from_a_table_are_in_every_output(bundle, tree, tmp_path):
    table = tmp_path / "depths.csv"
    table.write_text("sample,depth\nS1,30.5\nS2,10\nS3,20\n")
    result = run(bundle, tree, tmp_path / "out", samples=SampleRule(table=str(table)))
    counts = pd.read_csv(tmp_path / "out" / "counts.csv", index_col="sample")
    assert list(counts.index) == ["S2", "S3", "S1"]  # down-core order
    assert counts["depth"].tolist() == [10, 20, 30.5]
    assert "depth" in pd.read_csv(tmp_path / "out" / "relative_abundance.csv").columns
    frame = pd.read_parquet(result.predictions_path)
    assert set(frame.groupby("sample")["depth"].first().items()) == {
        ("S1", 30.5), ("S2", 10.0), ("S3", 20.0)
    }  # fmt: skip


def test_interrupted_run_resumes_without_loss_or_double_counting(bundle, tree, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # at the second chunk
        run(bundle, tree, out, chunk_size=3, progress=InterruptAt(2))
    assert len(list((out / "chunks").glob("*.parquet"))) == 1  # the second was never written
    result = run(bundle, tree, out, chunk_size=3)
    assert result.n_resumed == 3
    paths = pd.read_parquet(out / "predictions.parquet")["path"]
    assert paths.is_unique and len(paths) == 13
    reference = run(bundle, tree, tmp_path / "clean")
    pd.testing.assert_frame_equal(result.counts, reference.counts)


def test_changed_inputs_or_bundle_are_reported_not_mixed(kit, bundle, tree, tmp_path):
    out = tmp_path / "out"
    run(bundle, tree, out)
    again = run(bundle, tree, out)  # same job, complete: nothing to redo
    assert again.counts.loc["S3", "bright"] == 4

    changed = tree / "S1" / "img_000.png"
    os.utime(changed, ns=(0, changed.stat().st_mtime_ns + 10**9))
    with pytest.raises(RunMismatchError, match=r"1 modified \(e.g. S1/img_000.png\)"):
        run(bundle, tree, out)
    (tree / "S3" / "img_000.png").unlink()
    with pytest.raises(RunMismatchError, match="1 removed"):
        run(bundle, tree, out)

    other = kit.write_bundle(tmp_path / "other", steepness=5.0)
    with pytest.raises(RunMismatchError, match="the model differs"):
        run(other, tree, out)
    with pytest.raises(RunMismatchError, match=r"threshold was 0\.8, now 0\.9"):
        run(bundle, tree, out, threshold=0.9)

    result = run(bundle, tree, out, overwrite=True)
    assert result.run.n_images == 12
    assert result.counts.loc["S3", "bright"] == 3
