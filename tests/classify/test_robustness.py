"""classify loses nothing and lets nothing in: odd inputs, stale chunks, read-only bundles,
and a main process that is killed."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pandas as pd
import psutil
import pytest

from foramflow.classify.runner import classify_folder
from foramflow.classify.store import RunStore
from foramflow.progress import Recorded
from interrupting import InterruptAt

pytestmark = pytest.mark.usefixtures("small_checks_suffice")

COMMAND = [sys.executable, "-c", "from foramflow.cli import app; app()", "classify"]


def run(bundle, images, out, **options):
    options.setdefault("workers", 0)
    return classify_folder(bundle, images, out, **options)


def predictions(out) -> pd.DataFrame:
    return pd.read_parquet(out / "predictions.parquet").set_index("path")


def interrupt_after_first_chunk(bundle, tree, out, chunk_size=3):
    """Leave a results folder as a run stopped after writing one chunk leaves it."""
    with pytest.raises(KeyboardInterrupt):
        run(bundle, tree, out, chunk_size=chunk_size, progress=InterruptAt(2))
    assert len(list((out / "chunks").glob("*.parquet"))) == 1


# --- inputs that are not plain image files -----------------------------------------------


def test_symlink_loop_and_dangling_link_are_error_rows_and_the_run_goes_on(bundle, tree, tmp_path):
    (tree / "S1" / "loop.png").symlink_to("loop.png")
    (tree / "S3" / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    result = run(bundle, tree, tmp_path / "out")

    frame = predictions(tmp_path / "out")
    assert len(frame) == result.run.n_images == 15
    loop, dangling = frame.loc["S1/loop.png"], frame.loc["S3/dangling.jpg"]
    assert (loop["status"], loop["class"]) == ("error", "")
    assert "symbolic link loop" in loop["error"]
    assert dangling["status"] == "error"
    assert "broken symbolic link" in dangling["error"]
    assert result.counts.loc["S1", "error"] == 1 and result.counts.loc["S3", "error"] == 1
    assert result.counts.loc["S1", "dark"] == 3  # the readable images are still classified
    assert result.run.n_errors == 2


def test_counts_add_up_to_the_images_found(bundle, tree, tmp_path):
    (tree / "S1" / "loop.png").symlink_to("loop.png")
    (tree / "S2" / "dangling.png").symlink_to("nowhere.png")
    result = run(bundle, tree, tmp_path / "out")
    counts = result.counts
    frame = predictions(tmp_path / "out")
    assert counts.to_numpy().sum() == result.run.n_images == len(frame)
    assert frame["status"].value_counts().to_dict() == {"ok": 12, "unsure": 1, "error": 2}


def test_folder_link_loop_is_listed_as_skipped_and_the_run_goes_on(bundle, tree, tmp_path):
    (tree / "S2" / "more").symlink_to("more")
    progress = Recorded()
    messages = progress.messages
    result = run(bundle, tree, tmp_path / "out", progress=progress)
    assert result.run.n_images == 13
    assert any("skipped S2/more" in m and "symbolic link loop" in m for m in messages)
    recorded = json.loads((tmp_path / "out" / "run.json").read_text())["skipped"]
    assert recorded == [{"path": "S2/more", "reason": "symbolic link loop"}]


def test_folder_named_like_an_image_is_searched_not_read(kit, bundle, tree, tmp_path):
    kit.write_grey_png(tree / "S3" / "x.jpg" / "inside.png", kit.dark)
    result = run(bundle, tree, tmp_path / "out", workers=1)
    frame = predictions(tmp_path / "out")
    assert "S3/x.jpg" not in frame.index
    assert frame.loc["S3/x.jpg/inside.png", "class"] == "dark"
    assert result.run.n_errors == 0 and result.run.n_images == 14


@pytest.fixture
def latin1_name(tree):
    """An image whose file name is not valid UTF-8 (café.png written in Latin-1)."""
    name = os.fsencode(tree / "S1") + b"/caf\xe9.png"
    try:
        with open(name, "wb") as handle:
            handle.write((tree / "S1" / "img_000.png").read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("this file system does not take non-UTF-8 names")
    return "S1/caf\\xe9.png"  # the printable name the results use


def test_non_utf8_file_name_is_an_error_row_with_a_printable_name(
    bundle, tree, latin1_name, tmp_path
):
    result = run(bundle, tree, tmp_path / "out")
    frame = predictions(tmp_path / "out")
    assert len(frame) == result.run.n_images == 14
    row = frame.loc[latin1_name]
    assert (row["status"], row["sample"]) == ("error", "S1")
    assert "not valid UTF-8" in row["error"]
    counts = pd.read_csv(tmp_path / "out" / "counts.csv", index_col="sample")
    assert counts.loc["S1"].drop("depth").tolist() == [3, 1, 0, 1]
    assert result.errors["path"].tolist() == [latin1_name]


def test_non_utf8_folder_name_gives_a_printable_sample(kit, bundle, tree, tmp_path):
    folder = os.fsencode(tree) + b"/S\xe9"
    try:
        os.mkdir(folder)
    except (OSError, UnicodeError):
        pytest.skip("this file system does not take non-UTF-8 names")
    with open(folder + b"/a.png", "wb") as handle:
        handle.write((tree / "S1" / "img_000.png").read_bytes())
    result = run(bundle, tree, tmp_path / "out")
    row = predictions(tmp_path / "out").loc["S\\xe9/a.png"]
    assert (row["sample"], row["status"]) == ("S\\xe9", "error")
    assert row["error"].startswith("folder name is not valid UTF-8")
    assert result.counts.loc["S\\xe9", "error"] == 1


def test_non_utf8_file_name_is_listed_by_the_command(bundle, tree, latin1_name, tmp_path):
    done = subprocess.run(
        [*COMMAND, str(bundle), str(tree), "--out", str(tmp_path / "out"), "--workers", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    output = " ".join((done.stdout + done.stderr).split())
    assert f"{latin1_name}: file name is not valid UTF-8" in output
    assert "14 images, 1 unsure, 1 errors" in output


# --- chunks that cannot be proved to belong to this run -----------------------------------


def test_chunks_without_run_json_from_another_bundle_are_not_reused(kit, bundle, tree, tmp_path):
    out = tmp_path / "out"
    interrupt_after_first_chunk(bundle, tree, out)
    (out / "run.json").unlink()
    (out / "manifest.parquet").unlink()

    other = kit.write_bundle(tmp_path / "other", steepness=5.0)
    progress = Recorded()
    messages = progress.messages
    result = run(other, tree, out, chunk_size=3, progress=progress)
    assert result.n_resumed == 0
    assert not any("resuming" in m for m in messages)
    run(other, tree, tmp_path / "clean")
    pd.testing.assert_frame_equal(predictions(out), predictions(tmp_path / "clean"))


def test_chunks_without_run_json_from_another_threshold_are_not_reused(bundle, tree, tmp_path):
    out = tmp_path / "out"
    interrupt_after_first_chunk(bundle, tree, out)
    (out / "run.json").unlink()
    result = run(bundle, tree, out, chunk_size=3, threshold=1.0)
    assert result.n_resumed == 0
    assert set(predictions(out)["status"]) == {"unsure"}


def test_chunks_of_the_same_job_without_run_json_are_reused(bundle, tree, tmp_path):
    out = tmp_path / "out"
    interrupt_after_first_chunk(bundle, tree, out)
    (out / "run.json").unlink()
    result = run(bundle, tree, out, chunk_size=3)
    assert result.n_resumed == 3  # the fingerprint in the chunk proves it is this job's
    run(bundle, tree, tmp_path / "clean")
    pd.testing.assert_frame_equal(predictions(out), predictions(tmp_path / "clean"))


def test_overwrite_removes_run_json_last(bundle, tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    interrupt_after_first_chunk(bundle, tree, out)

    def crash(self):
        raise OSError("crashed while removing chunks")

    monkeypatch.setattr(RunStore, "remove_chunks", crash)
    with pytest.raises(OSError, match="crashed"):
        run(bundle, tree, out, overwrite=True, threshold=0.9)
    assert (out / "run.json").is_file()


# --- a bundle that cannot be written ------------------------------------------------------


@pytest.fixture
def read_only_bundle(bundle, monkeypatch):
    """The bundle folder and its files read-only, as on a shared lab server.

    chmod does not stop root, so there writes into the bundle fail as they would for any
    other user."""
    for path in bundle.iterdir():
        path.chmod(0o444)
    bundle.chmod(0o555)
    if os.geteuid() == 0:
        monkeypatch.setattr("foramflow.bundle.records.bundle_is_writable", lambda path: False)

        def refuse(path, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr("foramflow.bundle.folder.write_meta", refuse)
    yield bundle
    bundle.chmod(0o755)


def bundle_state(bundle):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(bundle.iterdir())}


def test_read_only_bundle_on_a_bf16_cpu_keeps_its_check_in_the_user_cache(
    read_only_bundle, tree, tmp_path, user_cache, cpu_without_bf16
):
    cpu_without_bf16(True)
    before = bundle_state(read_only_bundle)
    progress = Recorded()
    messages = progress.messages
    result = run(read_only_bundle, tree, tmp_path / "a", progress=progress)
    assert result.run.precision == "bf16"
    assert any("checking bf16" in m for m in messages)
    assert bundle_state(read_only_bundle) == before
    (record,) = user_cache.glob("foramflow/bundles/*/model.json")
    assert json.loads(record.read_text())["bf16"]["top1_agreement"] == 1.0

    messages.clear()
    again = run(read_only_bundle, tree, tmp_path / "b", progress=progress)
    assert again.run.precision == "bf16"
    assert not any("checking bf16" in m for m in messages)  # measured once per bundle


def test_bundle_write_refused_midway_falls_back_to_the_user_cache(
    bundle, tree, tmp_path, user_cache, cpu_without_bf16, monkeypatch
):
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("foramflow.bundle.folder.write_meta", refuse)
    cpu_without_bf16(True)
    result = run(bundle, tree, tmp_path / "out")
    assert result.run.precision == "bf16"
    assert "bf16" not in json.loads((bundle / "model.json").read_text())
    assert len(list(user_cache.glob("foramflow/bundles/*/model.json"))) == 1


def test_read_only_bundle_gets_its_int8_model_in_the_user_cache(
    read_only_bundle, tree, tmp_path, user_cache
):
    before = bundle_state(read_only_bundle)
    result = run(read_only_bundle, tree, tmp_path / "a", precision="int8")
    assert result.run.precision == "int8"
    assert bundle_state(read_only_bundle) == before
    (int8,) = user_cache.glob("foramflow/bundles/*/model.int8.onnx")
    assert result.run.model_file == str(int8)
    again = run(read_only_bundle, tree, tmp_path / "b", precision="int8")  # the kept copy
    assert again.run.precision == "int8" and again.run.model_file == str(int8)
    pd.testing.assert_frame_equal(result.counts, again.counts)


def test_zipped_bundle_keeps_its_bf16_check_in_the_user_cache(
    bundle, tree, tmp_path, user_cache, cpu_without_bf16
):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in bundle.iterdir():
            zipped.write(path, f"bundle/{path.name}")
    cpu_without_bf16(True)
    run(archive, tree, tmp_path / "a")
    progress = Recorded()
    messages = progress.messages
    result = run(archive, tree, tmp_path / "b", progress=progress)
    assert result.run.precision == "bf16"
    assert not any("checking bf16" in m for m in messages)


def test_records_go_beside_the_results_when_the_user_cache_cannot_be_written(
    read_only_bundle, tree, tmp_path, cpu_without_bf16, monkeypatch
):
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    cpu_without_bf16(True)
    result = run(read_only_bundle, tree, tmp_path / "out")
    assert result.run.precision == "bf16"
    (record,) = (tmp_path / "out").glob("bundle_records/*/model.json")
    assert "bf16" in json.loads(record.read_text())


# --- a main process that is killed ---------------------------------------------------------


def test_killed_classify_leaves_no_decoding_worker_behind(kit, bundle, tmp_path):
    images = tmp_path / "images"
    for i in range(300):
        kit.write_grey_png(images / f"S{i % 3}" / f"{i:04d}.png", kit.dark)
    out = tmp_path / "out"
    command = [*COMMAND, str(bundle), str(images), "--out", str(out)]
    command += ["--workers", "2", "--chunk-size", "2", "--batch-size", "1"]
    main = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and main.poll() is None:
            children = psutil.Process(main.pid).children(recursive=True)
            if len(children) >= 2 and list(out.glob("chunks/[0-9]*.parquet")):
                break
            time.sleep(0.01)
        assert main.poll() is None, "classify finished before it could be killed"
        assert len(children) >= 2
        main.send_signal(signal.SIGKILL)
        assert main.wait() == -signal.SIGKILL
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
    finally:
        for child in children:
            if child.is_running():
                child.kill()


def test_a_corrupt_run_json_is_refused_naming_it(bundle, tree, tmp_path):
    """Resuming reads run.json: a file cut short is named, in one line, before any work."""
    out = tmp_path / "out"
    run(bundle, tree, out)
    (out / "run.json").write_text('{"bundle":\n')
    done = subprocess.run(
        [*COMMAND, str(bundle), str(tree), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line]
    assert done.returncode != 0 and len(errors) == 1, errors
    assert errors[0].startswith(f"error: {out / 'run.json'}: invalid run.json (Expecting value")
    assert "Traceback" not in done.stderr
