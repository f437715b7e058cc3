import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foramflow.classify.runner import classify_folder
from interrupting import InterruptAt


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


def test_local_cluster_gives_the_same_table_as_a_local_run(cluster, bundle, kit, tmp_path):
    from distributed import Client

    images = kit.write_tree(tmp_path / "images")
    (images / "S3" / "empty.png").write_bytes(b"")
    local = classify_folder(bundle, images, tmp_path / "local", workers=0, chunk_size=4)
    with Client(cluster) as client:
        remote = classify_folder(bundle, images, tmp_path / "dask", chunk_size=4, scheduler=client)
    pd.testing.assert_frame_equal(local.counts, remote.counts)
    a = pd.read_parquet(tmp_path / "local" / "predictions.parquet")
    b = pd.read_parquet(tmp_path / "dask" / "predictions.parquet")
    pd.testing.assert_frame_equal(
        a.drop(columns=["score", *kit.prob_columns]), b.drop(columns=["score", *kit.prob_columns])
    )
    np.testing.assert_allclose(a[kit.prob_columns], b[kit.prob_columns], atol=1e-6)


def test_scheduler_address_string_resumes_a_local_run(cluster, bundle, tree, tmp_path):
    out = tmp_path / "out"

    with pytest.raises(KeyboardInterrupt):  # after the first chunk is written
        classify_folder(bundle, tree, out, workers=0, chunk_size=5, progress=InterruptAt(2))
    result = classify_folder(bundle, tree, out, chunk_size=5, scheduler=cluster.scheduler_address)
    assert result.n_resumed == 5
    assert result.counts["bright"].tolist() == [1, 2, 4]
    assert pd.read_parquet(result.predictions_path)["path"].is_unique


def test_cluster_uses_an_int8_model_kept_outside_a_zipped_bundle(cluster, bundle, tree, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in bundle.iterdir():
            zipped.write(path, path.name)
    local = classify_folder(archive, tree, tmp_path / "local", precision="int8", workers=0)
    assert Path(local.run.model_file).is_absolute()  # in the user cache, not in the zip
    remote = classify_folder(
        archive, tree, tmp_path / "dask", precision="int8", scheduler=cluster.scheduler_address
    )
    assert remote.run.model_file == local.run.model_file
    pd.testing.assert_frame_equal(local.counts, remote.counts)
