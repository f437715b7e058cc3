"""A faster precision is chosen by "auto" only on enough evidence, for the very network
and int8 file that were checked; a cached int8 model that is not that file is made again."""

import json
import zipfile

import pandas as pd
import pytest

from foramflow.bundle import Bundle, update_bundle_meta
from foramflow.bundle.engine import MIN_CHECK_IMAGES, faithful, resolve_precision
from foramflow.bundle.schema import PrecisionCheck
from foramflow.classify.runner import classify_folder
from foramflow.progress import Recorded


def run(bundle, images, out, **options):
    options.setdefault("workers", 0)
    return classify_folder(bundle, images, out, **options)


def grey_folder(kit, root, n):
    """``n`` images in one sample folder, alternately dark and bright."""
    for i in range(n):
        kit.write_grey_png(root / "S1" / f"{i:04d}.png", kit.dark if i % 2 else kit.bright)
    return root


def zipped(bundle, archive):
    """The bundle as a .zip: its precision records can only go to the user cache."""
    with zipfile.ZipFile(archive, "w") as packed:
        for path in bundle.iterdir():
            packed.write(path, f"bundle/{path.name}")
    return archive


def test_auto_needs_a_check_on_enough_images():
    check = {"top1_agreement": 1.0, "rechecked_agreement": 1.0}
    assert not faithful(PrecisionCheck(check_images=1, **check))
    assert not faithful(PrecisionCheck(check_images=MIN_CHECK_IMAGES - 1, **check))
    assert faithful(PrecisionCheck(check_images=MIN_CHECK_IMAGES, **check))
    assert not faithful(PrecisionCheck(check_images=10_000, top1_agreement=0.99))


def test_an_int8_check_on_two_images_is_reported_but_never_used_by_auto(
    kit, bundle, tmp_path, user_cache
):
    """Issue 39, probe 5: a copy of the same bundle (same hash) must not run int8 under
    "auto" because someone once classified a tiny folder with --precision int8."""
    archive = zipped(bundle, tmp_path / "bundle.zip")
    tiny = grey_folder(kit, tmp_path / "tiny", 2)
    progress = Recorded()
    messages = progress.messages
    asked = run(archive, tiny, tmp_path / "a", precision="int8", progress=progress)
    assert asked.run.precision == "int8"  # asked for: used, and said to be thin
    assert any("checked on 1 images, fewer than the 200" in m for m in messages)
    (kept,) = user_cache.glob("foramflow/bundles/*/model.json")
    assert json.loads(kept.read_text())["int8"]["check_images"] == 1

    copy = zipped(bundle, tmp_path / "copy.zip")
    assert run(copy, tiny, tmp_path / "b").run.precision == "fp32"
    assert run(archive, tiny, tmp_path / "c").run.precision == "fp32"


def test_an_int8_check_on_200_unlabelled_images_is_kept_but_not_used_by_auto(kit, bundle, tmp_path):
    images = grey_folder(kit, tmp_path / "many", 2 * MIN_CHECK_IMAGES)
    progress = Recorded()
    messages = progress.messages
    run(bundle, images, tmp_path / "a", precision="int8", progress=progress)
    record = json.loads((bundle / "model.json").read_text())["int8"]
    assert record["check_images"] == MIN_CHECK_IMAGES
    assert not any("fewer than" in m for m in messages)
    assert resolve_precision(Bundle.load(bundle), "auto") == ("fp32", "model.onnx")
    assert run(bundle, images, tmp_path / "b").run.precision == "fp32"


def test_a_bf16_check_on_few_images_is_not_kept(bundle, tree, tmp_path, cpu_without_bf16):
    cpu_without_bf16(True)
    progress = Recorded()
    messages = progress.messages
    result = run(bundle, tree, tmp_path / "a", precision="bf16", progress=progress)
    assert result.run.precision == "bf16"
    assert "bf16" not in json.loads((bundle / "model.json").read_text())
    assert any("bf16: checked on 13 images, fewer than the 200" in m for m in messages)
    assert run(bundle, tree, tmp_path / "b").run.precision == "fp32"


def test_a_record_made_for_another_network_is_not_used_by_auto(
    bundle, cpu_without_bf16, network_hash, tmp_path, kit
):
    cpu_without_bf16(True)
    check = {"check_images": 512, "top1_agreement": 1.0, "rechecked_agreement": 1.0}
    update_bundle_meta(bundle, bf16={**check, "model_sha256": network_hash(bundle)})
    assert resolve_precision(Bundle.load(bundle), "auto")[0] == "bf16"
    update_bundle_meta(bundle, bf16={**check, "model_sha256": "0" * 64})
    assert resolve_precision(Bundle.load(bundle), "auto")[0] == "fp32"
    update_bundle_meta(bundle, bf16=check)  # no hash: made by an older version
    assert resolve_precision(Bundle.load(bundle), "auto")[0] == "fp32"


@pytest.mark.usefixtures("small_checks_suffice")
@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated: cannot be loaded
        lambda data: data.replace(b"probs", b"probz"),  # loads, but not the file checked
        None,  # removed
    ],
    ids=["truncated", "changed", "removed"],
)
def test_a_corrupt_cached_int8_model_is_rebuilt(kit, bundle, tree, tmp_path, user_cache, damage):
    archive = zipped(bundle, tmp_path / "bundle.zip")
    first = run(archive, tree, tmp_path / "a", precision="int8")
    (cached,) = user_cache.glob("foramflow/bundles/*/model.int8.onnx")
    good = cached.read_bytes()
    if damage is None:
        cached.unlink()
    else:
        cached.write_bytes(damage(good))
    for out in ("b", "c"):
        progress = Recorded()
        messages = progress.messages
        again = run(archive, tree, tmp_path / out, precision="int8", progress=progress)
        assert again.run.precision == "int8"
        assert any("calibrating one on images from this folder" in m for m in messages)
        assert cached.read_bytes() == good  # made again, the same way
        pd.testing.assert_frame_equal(again.counts, first.counts)
        cached.write_bytes(b"not onnx at all")


def test_int8_on_a_folder_of_one_image_is_refused_in_one_line(kit, bundle, tmp_path):
    from foramflow.errors import ForamflowError

    one = grey_folder(kit, tmp_path / "one", 1)
    with pytest.raises(ForamflowError, match=r"one/S1/0000\.png: 1 readable image\(s\)"):
        run(bundle, one, tmp_path / "out", precision="int8")
