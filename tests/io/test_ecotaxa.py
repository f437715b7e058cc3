"""EcoTaxa TSV export against EcoTaxa's own import rules."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foramflow.io.ecotaxa import MAX_TEXT, TABLE_PREFIXES, EcoTaxaObject, write_ecotaxa


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "a b.png"
    path.parent.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    return path


def test_tsv_follows_ecotaxa_import_rules(tmp_path: Path, picture: Path):
    objects = [
        EcoTaxaObject(
            picture,
            "Globigerinoides ruber",
            "validated",
            "anna",
            datetime(2024, 3, 5, 14, 7, 9),
            sample="S1",
            depth_m=1.2,
        ),
        EcoTaxaObject(picture, "x" * 400, "predicted", "model\twith tab", sample="S1", score=0.9),
        EcoTaxaObject(picture),  # unlabelled
    ]
    tsv = write_ecotaxa(tmp_path / "out", objects, name="core 7")
    assert tsv.name == "ecotaxa_core_7.tsv"
    with open(tsv, encoding="utf-8") as handle:
        lines = list(csv.reader(handle, delimiter="\t"))
    header, types, *rows = lines
    assert all(h == h.lower() and h.startswith(TABLE_PREFIXES) for h in header)
    assert set(types) <= {"[t]", "[f]"}
    assert all(len(cell) <= MAX_TEXT for row in rows for cell in row)
    table = [dict(zip(header, row, strict=True)) for row in rows]
    ids = [row["object_id"] for row in table]
    assert len(set(ids)) == 3 and all(ids)
    assert ids == ["S1_a_b", "S1_a_b_2", "obj_a_b"]
    first = table[0]
    assert first["object_annotation_date"] == "20240305"
    assert first["object_annotation_time"] == "140709"
    assert first["object_depth_min"] == "1.2"
    assert table[1]["object_annotation_person_name"] == "model with tab"
    assert table[2]["object_annotation_status"] == ""
    for row in table:  # every image exists beside the TSV
        assert (tsv.parent / row["img_file_name"]).is_file()


def test_bad_status_is_refused(tmp_path: Path, picture: Path):
    with pytest.raises(ValueError, match="annotation status"):
        write_ecotaxa(tmp_path / "o", [EcoTaxaObject(picture, "a", "checked")])
