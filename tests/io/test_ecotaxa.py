"""EcoTaxa TSV export against the rules of EcoTaxa's import (ecotaxa_back, BO/TSVFile.py and
BO/Bundle.py): how it decodes a TSV, which statuses and persons it accepts, where it looks
for the TSV and the images of a zip."""

from __future__ import annotations

import csv
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foramflow.io.ecotaxa import MAX_TEXT, TABLE_PREFIXES, EcoTaxaObject, write_ecotaxa

# EcoTaxa's TSVFile.open(): the first three characters read as latin-1 must be the UTF-8
# byte-order mark, or the whole file is decoded as latin-1.
ECOTAXA_BOM_AS_LATIN1 = "ï»¿"
# DB/Object.py: classif_qual_labels, the statuses a TSV may give (lower case).
ECOTAXA_STATUSES = {"predicted", "dubious", "validated", "discarded"}

TAXON, SAMPLE, PERSON = "Globigerina bulloïdes", "Échantillon β 30cm", "Zoë Müller"


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "a b.png"
    path.parent.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    return path


def objects(picture: Path) -> list[EcoTaxaObject]:
    return [
        EcoTaxaObject(
            picture, TAXON, "validated", PERSON, datetime(2024, 3, 5, 14, 7, 9), SAMPLE, 1.2
        ),
        EcoTaxaObject(
            picture, "x" * 400, "predicted", "ignored", datetime(2024, 1, 1), "S1",
            score=0.9, model="run\twith tab",
        ),
        EcoTaxaObject(picture, TAXON, "dubious", PERSON, sample=SAMPLE),
        EcoTaxaObject(picture),  # unlabelled
    ]  # fmt: skip


def read_as_ecotaxa(tsv: Path) -> list[dict]:
    """The rows as EcoTaxa's TSVFile.open() decodes them (type line dropped)."""
    with open(tsv, encoding="latin_1") as probe:
        encoding = "utf-8-sig" if probe.read(3) == ECOTAXA_BOM_AS_LATIN1 else "latin_1"
    with open(tsv, encoding=encoding) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quotechar='"'))
    return rows[1:]


def test_tsv_is_decoded_by_ecotaxa_as_utf8_with_every_name_unchanged(tmp_path, picture):
    tsv = write_ecotaxa(tmp_path / "out", objects(picture), name="core 7")
    assert tsv.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = read_as_ecotaxa(tsv)
    assert (rows[0]["object_annotation_category"], rows[0]["sample_id"]) == (TAXON, SAMPLE)
    assert rows[0]["object_annotation_person_name"] == PERSON


def test_persons_only_on_a_persons_status(tmp_path, picture):
    """EcoTaxa stops an import to ask who each person named is; a prediction has none."""
    validated, predicted, dubious, unlabelled = read_as_ecotaxa(
        write_ecotaxa(tmp_path / "out", objects(picture))
    )
    assert (validated["object_annotation_status"], validated["object_annotation_person_name"]) == (
        "validated",
        PERSON,
    )
    assert (validated["object_annotation_date"], validated["object_annotation_time"]) == (
        "20240305",
        "140709",
    )
    assert dubious["object_annotation_person_name"] == PERSON
    assert predicted["object_annotation_status"] == "predicted"
    assert predicted["object_annotation_person_name"] == ""
    assert predicted["object_annotation_date"] == ""
    assert predicted["object_prediction_model"] == "run with tab"
    assert predicted["object_score"] == "0.9"
    assert validated["object_score"] == "" and validated["object_prediction_model"] == ""
    assert unlabelled["object_annotation_status"] == unlabelled["object_annotation_category"] == ""
    for row in (validated, predicted, dubious):
        assert row["object_annotation_status"] in ECOTAXA_STATUSES


def test_tsv_follows_ecotaxa_structure_rules(tmp_path, picture):
    tsv = write_ecotaxa(tmp_path / "out", objects(picture), name="core 7")
    assert tsv.name == "ecotaxa_core_7.tsv"  # Bundle.TSV_FILTERS: ecotaxa*.tsv
    with open(tsv, encoding="utf-8-sig") as handle:
        header, types, *rows = list(csv.reader(handle, delimiter="\t"))
    assert all(h == h.lower() and h.startswith(TABLE_PREFIXES) for h in header)
    assert set(types) <= {"[t]", "[f]"}  # Mappings.POSSIBLE_TYPES
    assert all(len(cell) <= MAX_TEXT for row in rows for cell in row)
    table = [dict(zip(header, row, strict=True)) for row in rows]
    ids = [row["object_id"] for row in table]
    assert ids == ["Echantillon_30cm_a_b", "S1_a_b", "Echantillon_30cm_a_b_2", "obj_a_b"]
    assert table[0]["object_depth_min"] == "1.2"
    for row in table:  # TSVFile.path_for_image: relative to the TSV's folder
        assert (tsv.parent / row["img_file_name"]).is_file()


def test_zip_holds_the_tsv_at_its_top_and_the_images_beside(tmp_path, picture):
    archive = write_ecotaxa(tmp_path / "deep" / "core.zip", objects(picture), name="core 7")
    assert archive == tmp_path / "deep" / "core.zip"
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unzipped")  # as EcoTaxa's ImportBase.unzip_if_needed
    found = sorted((tmp_path / "unzipped").glob("**/ecotaxa*.tsv"))
    assert [p.name for p in found] == ["ecotaxa_core_7.tsv"]
    rows = read_as_ecotaxa(found[0])
    assert rows[0]["sample_id"] == SAMPLE
    for row in rows:
        assert (found[0].parent / row["img_file_name"]).is_file()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (EcoTaxaObject(Path("a.png"), "a", "checked"), "annotation status"),
        (EcoTaxaObject(Path("a.png"), "a"), "go together"),
        (EcoTaxaObject(Path("a.png"), None, "validated"), "go together"),
    ],
)
def test_rows_ecotaxa_refuses_are_never_written(tmp_path, item, message):
    with pytest.raises(ValueError, match=message):
        write_ecotaxa(tmp_path / "o", [item])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("out_name", ["folder", "core.zip"])
def test_tiff_and_bmp_become_png_which_ecotaxa_reads(tmp_path, out_name):
    """BO/Image.py: SUPPORTED_FORMATS is PNG, JPEG and GIF."""
    tiff, bmp = tmp_path / "a.tif", tmp_path / "b.bmp"
    Image.fromarray(np.full((4, 6), 40000, np.uint16)).save(tiff)
    Image.fromarray(np.full((4, 6), 9, np.uint8)).save(bmp)
    items = [EcoTaxaObject(tiff, "x", "validated"), EcoTaxaObject(bmp, "x", "validated")]
    written = write_ecotaxa(tmp_path / out_name, items)
    if written.suffix == ".zip":
        with zipfile.ZipFile(written) as z:
            z.extractall(tmp_path / "unzipped")
        written = next((tmp_path / "unzipped").glob("ecotaxa*.tsv"))
    rows = read_as_ecotaxa(written)
    assert [r["img_file_name"] for r in rows] == ["images/obj_a.png", "images/obj_b.png"]
    first, second = (Image.open(written.parent / r["img_file_name"]) for r in rows)
    assert (first.format, first.size, first.getpixel((0, 0))) == ("PNG", (6, 4), 156)
    assert second.getpixel((0, 0)) == 9
