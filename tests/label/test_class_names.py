"""The labelling project keeps one class per name: look-alikes are one class, and names that
cannot be folders everywhere, or that hide characters, are refused wherever a class is made."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from foramflow.label import export
from foramflow.label.app import create_app
from foramflow.label.store import InvalidName, LabelStore

NFC = unicodedata.normalize("NFC", "Orbulina é")
NFD = unicodedata.normalize("NFD", "Orbulina é")
FORBIDDEN = {
    "CON": "Windows reserves CON",
    "nul": "Windows reserves NUL",
    "aux.txt": "Windows reserves AUX",
    "Globigerina.": "ends with a dot",
    "Unsure": "reserved",
    "UNLABELED": "reserved",
    "Orbulina\u202eanilubrO": "U+202E",
    "Orbu\u200blina": "U+200B",
    "Orbu\u0085lina": "U+0085",
}
ROUTES = [
    ("/api/labels", lambda bad: {"ids": [1, 2], "label": bad}),
    ("/api/classes", lambda bad: {"name": bad}),
    ("/api/classes/rename", lambda bad: {"old": "dark", "new": bad}),
    ("/api/classes/merge", lambda bad: {"sources": ["dark"], "target": bad}),
]


@pytest.fixture
def client(store: LabelStore) -> TestClient:
    return TestClient(create_app(store.project_dir), base_url="http://127.0.0.1")


@pytest.mark.parametrize(("name", "reason"), FORBIDDEN.items())
def test_a_forbidden_class_name_is_refused_by_the_store(store: LabelStore, name, reason):
    with pytest.raises(InvalidName) as caught:
        store.create_class(name)
    assert repr(name) in str(caught.value) and reason in str(caught.value)
    assert store.classes() == []


@pytest.mark.parametrize("route, body", ROUTES, ids=[r for r, _ in ROUTES])
@pytest.mark.parametrize("bad", ["CON", "Unsure", "Orbu\u200blina", "GLOBIGERINA"])
def test_the_app_refuses_forbidden_names_and_look_alikes(client, store, route, body, bad):
    store.set_labels([3], "dark", user="anna")
    store.create_class("Globigerina")
    before = (store.classes(), store.all_rows("id, label, pred_label"))
    response = client.post(route, json=body(bad))
    assert response.status_code == 400, response.text
    assert repr(bad) in response.json()["detail"]
    assert (store.classes(), store.all_rows("id, label, pred_label")) == before


@pytest.mark.parametrize("spelling", ["globigerina", "GLOBIGERINA", "Globigerina"])
def test_a_look_alike_of_a_class_is_refused_not_made_a_second_class(store, spelling):
    store.set_labels([1], "Globigerina", user="anna")
    if spelling == "Globigerina":
        store.set_labels([2], spelling, user="anna")  # the same name is the same class
    else:
        with pytest.raises(InvalidName, match="are the same class"):
            store.set_labels([2], spelling, user="anna")
    assert [c["name"] for c in store.classes()] == ["Globigerina"]


def test_composed_and_decomposed_accents_are_one_class(store: LabelStore):
    store.set_labels([1], NFC, user="anna")
    store.set_labels([2], NFD, user="anna")
    assert [(c["name"], c["validated"]) for c in store.classes()] == [(NFC, 2)]


def test_rename_fixes_the_case_of_a_class_but_not_onto_another(store: LabelStore):
    store.set_labels([1], "globigerina", user="anna")
    store.create_class("Orbulina")
    store.rename_class("globigerina", "Globigerina")
    with pytest.raises(InvalidName, match="are the same class"):
        store.rename_class("Globigerina", "ORBULINA")
    assert sorted(c["name"] for c in store.classes()) == ["Globigerina", "Orbulina"]


def test_particletrieur_project_with_look_alike_or_reserved_taxa_is_refused(
    tmp_path: Path, make_image
):
    image = make_image(tmp_path / "pt" / "a.png", np.zeros((8, 8)))
    for codes, problem in (
        (["Globigerina", "globigerina"], "are the same class"),
        (["CON"], "CON"),
    ):
        taxa = "".join(f"<taxon><code>{c}</code><isClass>true</isClass></taxon>" for c in codes)
        xml = tmp_path / "pt" / "project.xml"
        xml.write_text(
            f"<project><taxons>{taxa}</taxons><images><image><source>"
            f"<filename>{image.name}</filename></source><val_by>anna</val_by>"
            f"<classifications id='human'><classification><code>{codes[-1]}</code>"
            "<value>1.0</value></classification></classifications></image></images></project>"
        )
        fresh = LabelStore(tmp_path / f"fresh{len(codes)}")
        with pytest.raises(InvalidName, match=rf"project\.xml: .*{problem}"):
            export.import_particletrieur(fresh, xml)
        assert (fresh.count(), fresh.classes()) == (0, [])


def test_particletrieur_markers_stay_accepted(store: LabelStore):
    store.set_predictions([(1, "unsure", 0.4, 0.1)], model="m")
    assert "unsure" in [c["name"] for c in store.classes()]
