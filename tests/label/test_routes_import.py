"""The import routes and labelling aids, against inputs whose answers are known."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from flowcam_exports import known_export
from foramflow.data.synthetic import make_slide
from foramflow.imaging.save import save_image
from foramflow.label.app import create_app
from foramflow.label.store import LabelStore

PIXELS_PER_MM = 200.0  # synthetic slides have 5 µm pixels
LOCAL = "http://127.0.0.1"


def write_trays(root: Path, counts: dict[str, int]) -> dict[str, pd.DataFrame]:
    """One synthetic tray per sample folder, with ``counts[sample]`` particles; the truth."""
    truth = {}
    for seed, (sample, n) in enumerate(counts.items()):
        slide = make_slide(n_particles=n, pixel_size_um=1000 / PIXELS_PER_MM, seed=seed)
        save_image(root / sample / "tray.png", slide.image)
        truth[sample] = slide.truth
    return truth


@pytest.fixture
def fresh(tmp_path: Path) -> TestClient:
    return TestClient(create_app(tmp_path / "project"), base_url=LOCAL)


@pytest.fixture
def client(store: LabelStore) -> TestClient:
    return TestClient(create_app(store.project_dir), base_url=LOCAL)


def wait_for_segment(client: TestClient) -> dict:
    for _ in range(600):
        state = client.get("/api/import/segment").json()
        if not state["running"]:
            return state
        time.sleep(0.05)
    raise AssertionError("segmentation did not finish")


def test_sample_preview_by_folder_and_by_regex(fresh, image_root: Path):
    by_folder = fresh.post("/api/import/samples", json={"folder": str(image_root)}).json()
    assert by_folder["total"] == 12
    assert by_folder["samples"] == [
        {"sample": "S1_10cm", "depth_cm": None, "images": 6},
        {"sample": "S2_20cm", "depth_cm": None, "images": 6},
    ]
    regex = r"(?P<sample>S\d)_(?P<depth_cm>\d+)cm"
    body = {"folder": str(image_root), "regex": regex}
    by_regex = fresh.post("/api/import/samples", json=body).json()
    assert by_regex["samples"] == [
        {"sample": "S1", "depth_cm": 10.0, "images": 6},
        {"sample": "S2", "depth_cm": 20.0, "images": 6},
    ]
    assert by_regex["rows"][0] == {"path": "S1_10cm/p00.png", "sample": "S1", "depth_cm": 10.0}
    assert fresh.get("/api/project").json()["total"] == 0  # a preview adds nothing


def test_sample_table_in_metres_gives_centimetres(fresh, image_root: Path, tmp_path: Path):
    table = tmp_path / "samples.csv"
    table.write_text("folder,sample,depth_m\nS1_10cm,core-a,0.25\nS2_20cm,core-b,1.5\n")
    body = {"folder": str(image_root), "table": str(table)}
    response = fresh.post("/api/import/crops", json=body)
    assert response.json() == {"added": 12}
    store = LabelStore(Path(fresh.app.state.store.project_dir))
    rows = {(r["sample"], r["depth_cm"]) for r in store.all_rows("sample, depth_cm")}
    assert rows == {("core-a", 25.0), ("core-b", 150.0)}


def test_a_regex_giving_a_path_as_sample_is_refused_and_adds_nothing(fresh, image_root):
    body = {"folder": str(image_root), "regex": r"(?P<sample>S\d_\d+cm/p)"}
    response = fresh.post("/api/import/crops", json=body)
    assert response.status_code == 400
    assert "sample name" in response.json()["detail"]
    assert fresh.get("/api/project").json()["total"] == 0


def test_import_of_a_missing_folder_names_it(fresh, tmp_path: Path):
    response = fresh.post("/api/import/crops", json={"folder": str(tmp_path / "nowhere")})
    assert response.status_code == 400
    assert "nowhere: no such folder" in response.json()["detail"]


def test_flowcam_import_registers_every_particle_under_the_project(fresh, tmp_path: Path):
    export, _, truth = known_export(tmp_path / "S7_30cm")
    response = fresh.post("/api/import/flowcam", json={"folder": str(export)})
    assert response.status_code == 200, response.text
    assert response.json()["added"] == len(truth) == 5
    folder = Path(response.json()["folder"])
    assert folder.parent == fresh.app.state.store.project_dir / "imports"
    items = fresh.get("/api/images").json()["items"]
    assert {item["sample"] for item in items} == {"S7_30cm"}
    assert sorted(item["name"] for item in items) == [f"{i:06d}.png" for i in range(1, 6)]


def test_a_bad_flowcam_export_leaves_no_import_folder(fresh, tmp_path: Path):
    export, _, _ = known_export(tmp_path / "S1")
    (export / "run_000001.tif").unlink()
    response = fresh.post("/api/import/flowcam", json={"folder": str(export)})
    assert response.status_code == 400
    assert "run_000001.tif not found" in response.json()["detail"]
    imports = fresh.app.state.store.project_dir / "imports"
    assert not imports.exists() or list(imports.iterdir()) == []


def test_particletrieur_import_by_folder(fresh, tmp_path: Path, make_image):
    folder = tmp_path / "pt"
    make_image(folder / "a.png", np.zeros((8, 8)))
    (folder / "project.xml").write_text(
        "<project><taxons><taxon><code>dark</code><isClass>true</isClass></taxon></taxons>"
        "<images><image><source><filename>a.png</filename><sampleID>S1</sampleID></source>"
        "<val_by>anna</val_by><classifications id='human'><classification><code>dark</code>"
        "<value>1.0</value></classification></classifications></image></images></project>"
    )
    assert fresh.post("/api/import/particletrieur", json={"project": str(folder)}).json() == {
        "added": 1
    }
    assert [c["name"] for c in fresh.get("/api/classes").json()] == ["dark"]


def test_tray_preview_finds_the_particles_of_one_tray_and_adds_nothing(fresh, tmp_path: Path):
    truth = write_trays(tmp_path / "trays", {"S1": 6, "S2": 4})
    body = {"folder": str(tmp_path / "trays"), "options": {"pixels_per_mm": PIXELS_PER_MM}}
    response = fresh.post("/api/import/segment/preview", json=body)
    assert response.status_code == 200, response.text
    preview = response.json()
    assert (preview["tray"], preview["trays"], preview["count"]) == ("S1/tray.png", 2, 6)
    assert preview["image"].startswith("data:image/png;base64,")
    # every true particle centre lies inside one of the boxes drawn
    for _, particle in truth["S1"].iterrows():
        assert any(
            left <= particle["x"] <= left + side and top <= particle["y"] <= top + side
            for left, top, side in preview["boxes"]
        )
    assert fresh.get("/api/project").json()["total"] == 0


def test_segmenting_trays_in_the_background_adds_crops_with_measures(fresh, tmp_path: Path):
    truth = write_trays(tmp_path / "trays", {"S1_10cm": 6, "S2_20cm": 4})
    body = {"folder": str(tmp_path / "trays"), "options": {"pixels_per_mm": PIXELS_PER_MM}}
    assert fresh.post("/api/import/segment", json=body).status_code == 202
    state = wait_for_segment(fresh)
    assert state["added"] == 10, state
    assert state["message"] == "2 trays cut into 10 crops"
    project = fresh.get("/api/project").json()
    assert (project["total"], project["samples"]) == (10, ["S1_10cm", "S2_20cm"])
    table = fresh.get("/api/morphology", params={"sort": "area_um2", "descending": True}).json()
    areas = [item["area_um2"] for item in table["items"]]
    assert table["total"] == 10 and None not in areas and areas == sorted(areas, reverse=True)
    um2_per_pixel = (1000 / PIXELS_PER_MM) ** 2
    true_areas = sorted((pd.concat(truth.values())["area_px"] * um2_per_pixel).tolist())
    np.testing.assert_allclose(sorted(areas), true_areas, rtol=0.25)


def test_a_second_segmentation_while_one_runs_is_refused(store: LabelStore, image_root: Path):
    from fastapi import HTTPException

    from foramflow.label.routes_import import SegmentJob, SegmentRequest

    job = SegmentJob()
    job.state["running"] = True
    with pytest.raises(HTTPException) as refused:
        job.start(store, SegmentRequest(folder=str(image_root)))
    assert refused.value.status_code == 409
    assert store.count() == 12  # nothing added


def test_measures_of_crops_filter_and_sort(client, store: LabelStore, tmp_path, make_image):
    """Discs of known radius on a dark ground, at 1 µm per pixel; the 12 plain squares of the
    store have no ground and no particle to measure."""
    yy, xx = np.mgrid[:48, :48]
    radii = {"r05.png": 5, "r14.png": 14, "r09.png": 9}
    for name, radius in radii.items():
        make_image(
            tmp_path / "discs" / "D1" / name,
            0.1 + 0.8 * ((yy - 24) ** 2 + (xx - 24) ** 2 <= radius**2),
        )
    assert client.post("/api/import/crops", json={"folder": str(tmp_path / "discs")}).json() == {
        "added": 3
    }
    measured = client.post("/api/morphology/measure", json={"pixels_per_mm": 1000.0}).json()
    assert measured == {"measured": 3, "failed": 12, "left": 0}
    by_size = client.get("/api/morphology", params={"sort": "area_um2", "descending": True})
    items = by_size.json()["items"]
    assert [item["name"] for item in items[:3]] == ["r14.png", "r09.png", "r05.png"]
    assert all(item["area_um2"] is None for item in items[3:])  # unmeasurable ones last
    for item in items[:3]:
        radius = radii[item["name"]]
        assert item["equivalent_diameter_um"] == pytest.approx(2 * radius, rel=0.1)
    kept = client.get(
        "/api/morphology",
        params={"measure": "equivalent_diameter_um", "low": 12, "high": 30, "sort": "area_um2"},
    ).json()
    assert [item["name"] for item in kept["items"]] == ["r09.png", "r14.png"]
    assert kept["total"] == 2


@pytest.mark.parametrize(
    "params", [{"sort": "relpath; DROP TABLE images"}, {"measure": "id", "low": 1}]
)
def test_morphology_refuses_unknown_columns(client, params):
    assert client.get("/api/morphology", params=params).status_code in (400, 422)


def test_more_like_this_and_suggestions_from_validated_neighbours(client, store: LabelStore):
    # even files are dark, odd files bright (conftest); label some of S1 by brightness
    store.set_labels([1, 3, 5], "dark", user="anna")
    store.set_labels([2, 4, 6], "bright", user="anna")
    answer = client.get("/api/images/7/similar", params={"n": 5}).json()  # S2 p00, dark
    assert len(answer["items"]) == 5 and 7 not in [i["id"] for i in answer["items"]]
    distances = [i["distance"] for i in answer["items"]]
    assert distances == sorted(distances)
    assert answer["suggestions"][0]["label"] == "dark"
    bright = client.get("/api/images/8/similar").json()  # S2 p01, bright
    assert bright["suggestions"][0]["label"] == "bright"


def test_more_like_this_of_an_unknown_image_is_404(client):
    assert client.get("/api/images/999/similar").status_code == 404


def test_the_import_page_is_served(client):
    page = client.get("/import")
    assert page.status_code == 200 and "/static/import.js" in page.text
