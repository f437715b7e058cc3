"""The label commands, without serving."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from foramflow.cli import app
from foramflow.label.store import LabelStore

runner = CliRunner()


def test_add_predict_export(tmp_path: Path, image_root: Path, brightness_bundle: Path):
    project = tmp_path / "proj"
    result = runner.invoke(app, ["label", str(project), "--images", str(image_root), "--no-serve"])
    assert result.exit_code == 0, result.output
    assert LabelStore(project).count() == 12

    result = runner.invoke(app, ["label-predict", str(project), str(brightness_bundle)])
    assert result.exit_code == 0, result.output
    store = LabelStore(project)
    store.accept_predictions(label=None, min_score=0.9, user="anna")

    out = tmp_path / "train"
    result = runner.invoke(app, ["label-export", str(project), str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(len(list(p.iterdir())) for p in out.iterdir() if p.is_dir()) == [6, 6]


def test_clear_errors(tmp_path: Path):
    result = runner.invoke(
        app, ["label", str(tmp_path / "p"), "--images", "/no/such", "--no-serve"]
    )
    assert result.exit_code == 2
    assert "'--images'" in result.output and "'/no/such' does not exist" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["label-export", str(tmp_path / "empty"), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no label project" in " ".join(result.output.split())
    result = runner.invoke(app, ["label-export", str(tmp_path / "none"), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "'project_dir'" in result.output and "none' does not exist" in result.output


def test_awkward_entries_are_listed_as_skipped_and_the_rest_registered(
    tmp_path: Path, image_root: Path, make_image
):
    """A link loop, a dangling link, a non-UTF-8 name: each skipped by name, with its reason."""
    sample = image_root / "S1_10cm"
    os.symlink(sample / "loop_b.png", sample / "loop_a.png")
    os.symlink(sample / "loop_a.png", sample / "loop_b.png")
    os.symlink(tmp_path / "gone.png", sample / "dangling.png")
    bad_name = os.path.join(os.fsencode(sample), b"bad\xff.png")
    with open(bad_name, "wb") as handle:
        handle.write((sample / "p00.png").read_bytes())
    project = tmp_path / "proj"
    result = runner.invoke(app, ["label", str(project), "--images", str(image_root), "--no-serve"])
    assert result.exit_code == 0, result.output
    output = "".join(result.output.split())  # rich folds long paths
    assert LabelStore(project).count() == 12
    assert "loop_a.png:symboliclinkloop" in output
    assert "loop_b.png:symboliclinkloop" in output
    assert "dangling.png:symboliclinktoamissingfile" in output
    assert "bad\\udcff.png:filenameisnotvalidUTF-8" in output
    assert output.count("skipped/") == 4


def test_a_folder_named_like_an_image_is_walked_not_registered(
    tmp_path: Path, image_root: Path, make_image
):
    make_image(image_root / "S1_10cm" / "x.jpg" / "inner.png", np.full((8, 8), 0.5))
    project = tmp_path / "proj"
    result = runner.invoke(app, ["label", str(project), "--images", str(image_root), "--no-serve"])
    assert result.exit_code == 0, result.output
    relpaths = {row["relpath"] for row in LabelStore(project).page(limit=100)}
    assert "S1_10cm/x.jpg/inner.png" in relpaths and "S1_10cm/x.jpg" not in relpaths
    assert len(relpaths) == 13 and "skipped" not in result.output


def test_awkward_folders_are_listed_as_skipped(
    tmp_path: Path, image_root: Path, make_image, monkeypatch
):
    """A non-UTF-8 folder, a linked folder and one that cannot be listed are named."""
    make_image(tmp_path / "elsewhere" / "e.png", np.full((8, 8), 0.5))
    os.symlink(tmp_path / "elsewhere", image_root / "linked")
    bad_folder = os.path.join(os.fsencode(image_root), b"S\xfe")
    os.mkdir(bad_folder)
    with open(os.path.join(bad_folder, b"q.png"), "wb") as handle:
        handle.write((image_root / "S1_10cm" / "p00.png").read_bytes())
    make_image(image_root / "locked" / "l.png", np.full((8, 8), 0.5))
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    project = tmp_path / "proj"
    result = runner.invoke(app, ["label", str(project), "--images", str(image_root), "--no-serve"])
    assert result.exit_code == 0, result.output
    output = "".join(result.output.split())  # rich folds long paths
    assert LabelStore(project).count() == 12
    assert "images/linked:symboliclinktoafolder,notfollowed" in output
    assert "images/S\\udcfe:foldernameisnotvalidUTF-8" in output
    assert "images/locked:cannotlistfolder(Permissiondenied)" in output
    assert output.count("skipped/") == 3


def test_a_folder_whose_own_name_is_not_utf8_is_refused_by_name(tmp_path: Path):
    folder = os.path.join(os.fsencode(tmp_path), b"core\xff")
    os.mkdir(folder)
    args = ["label", str(tmp_path / "p"), "--images", os.fsdecode(folder), "--no-serve"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "core\\udcff:foldernameisnotvalidUTF-8" in "".join(result.output.split())


def test_export_of_a_class_name_that_is_a_path_fails_cleanly(tmp_path: Path, image_root: Path):
    project = tmp_path / "proj"
    store = LabelStore(project)
    store.add_images(image_root)
    with store.write() as con:  # a label stored before class names were checked
        con.execute("INSERT INTO classes(name, position) VALUES ('..', 0)")
        con.execute("UPDATE images SET label = '..', validated_by = 'old' WHERE id = 1")
    out = tmp_path / "out" / "train"
    result = runner.invoke(app, ["label-export", str(project), str(out)])
    assert result.exit_code == 2, result.output
    assert "outoftheexportfolder" in "".join(result.output.split())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train"]
    assert list(out.iterdir()) == []


def test_import_xml_with_a_class_name_that_is_a_path_fails_cleanly(tmp_path: Path, make_image):
    make_image(tmp_path / "pt" / "a.png", np.zeros((8, 8)))
    (tmp_path / "pt" / "project.xml").write_text(
        "<project><images><image><source><filename>a.png</filename></source>"
        "<val_by>anna</val_by><classifications><classification><code>../../up</code>"
        "<value>1</value></classification></classifications></image></images></project>"
    )
    args = ["label", str(tmp_path / "p"), "--import-xml", str(tmp_path / "pt" / "project.xml")]
    result = runner.invoke(app, [*args, "--no-serve"])
    assert result.exit_code == 2, result.output
    assert "project.xml:image1:classname'../../up':holds/" in "".join(result.output.split())
    assert LabelStore(tmp_path / "p").count() == 0
