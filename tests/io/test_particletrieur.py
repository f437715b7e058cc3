"""ParticleTrieur project XML: reading a file as ParticleTrieur writes it, and round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from foramflow.io.particletrieur import ParticleRecord, Taxon, read_project, write_project

# Abridged from a project saved by ParticleTrieur: one validated, one predicted (tagged auto),
# one unlabelled, one labelled by hand without validation, one predicted below threshold.
PARTICLETRIEUR_XML = """<?xml version="1.0" encoding="UTF-8"?>
<project version="2.4.1">
   <taxons>
      <taxon><code>unlabeled</code><description>The default state</description>
         <group>archive/other</group><isClass>false</isClass><name>Not classified</name></taxon>
      <taxon><code>unsure</code><description/><group>archive/other</group>
         <isClass>false</isClass><name>Class is unsure</name></taxon>
      <taxon><code>G_ruber</code><description>Globigerinoides ruber</description>
         <group>planktonic</group><isClass>true</isClass><name>G. ruber</name></taxon>
      <taxon><code>B_spissa</code><description/><group>benthic</group>
         <isClass>true</isClass><name>B. spissa</name></taxon>
   </taxons>
   <tags><tag><code>duplicate</code><description/><name>Duplicate</name></tag></tags>
   <images>
      <image>
         <source><filename>images/S1/a.png</filename><width>120</width><height>100</height>
            <sampleID>S1</sampleID><index1>12.5</index1><index2>0.0</index2>
            <GUID>6nD8mEw1</GUID><resolution>1159.4</resolution></source>
         <val_by>ross</val_by>
         <classifications id="human">
            <classification><code>G_ruber</code><value>1.0</value></classification>
         </classifications>
         <tags><tag>duplicate</tag></tags>
         <parameters><item key="area">512</item></parameters>
      </image>
      <image>
         <source><filename>images\\S2\\b.png</filename><sampleID>S2</sampleID>
            <index1>30</index1><resolution>0.0</resolution></source>
         <val_by></val_by>
         <classifications id="cnn_v1">
            <classification><code>G_ruber</code><value>0.15</value></classification>
            <classification><code>B_spissa</code><value>0.85</value></classification>
         </classifications>
         <tags><tag>auto</tag></tags>
      </image>
      <image>
         <source><filename>/data/c.png</filename><sampleID>unknown</sampleID></source>
         <classifications id="">
            <classification><code>unlabeled</code><value>1.0</value></classification>
         </classifications>
      </image>
      <image>
         <source><filename>d.png</filename><sampleID>Échantillon β 30cm</sampleID>
            <index1>0.0</index1><index2>0.0</index2></source>
         <val_by/>
         <classifications id="Zoë Müller">
            <classification><code>G_ruber</code><value>1.0</value></classification>
         </classifications>
         <tags/>
      </image>
      <image>
         <source><filename>e.png</filename><sampleID>S2</sampleID><index1>0.0</index1></source>
         <val_by/>
         <classifications id="cnn_v1">
            <classification><code>G_ruber</code><value>0.45</value></classification>
            <classification><code>B_spissa</code><value>0.4</value></classification>
            <classification><code>unsure</code><value>1.0</value></classification>
         </classifications>
         <tags><tag>auto</tag></tags>
         <parameters><item key="index1">0</item></parameters>
      </image>
   </images>
</project>
"""


@pytest.fixture
def project_file(tmp_path: Path) -> Path:
    path = tmp_path / "project.xml"
    path.write_text(PARTICLETRIEUR_XML)
    return path


def test_read_particletrieur_file(project_file: Path):
    records, taxa = read_project(project_file)
    base = project_file.parent

    assert [t.code for t in taxa] == ["unlabeled", "unsure", "G_ruber", "B_spissa"]
    assert taxa[2] == Taxon("G_ruber", "G. ruber", "Globigerinoides ruber", "planktonic", True)
    assert taxa[0].is_class is False

    validated, predicted, unlabelled, by_hand, unsure = records
    assert validated.path == base / "images/S1/a.png"
    assert validated.label == "G_ruber"
    assert validated.validated_by == "ross"
    assert (validated.sample, validated.depth, validated.resolution) == ("S1", 12.5, 1159.4)
    assert (validated.width, validated.height, validated.guid) == (120, 100, "6nD8mEw1")
    assert validated.tags == ["duplicate"]
    assert validated.parameters == {"area": "512"}
    assert not validated.predicted

    # Windows separators in a relative filename; the highest score is the class.
    assert predicted.path == base / "images/S2/b.png"
    assert predicted.label == "B_spissa"
    assert predicted.classifier == "cnn_v1"
    assert predicted.classifications == {"G_ruber": 0.15, "B_spissa": 0.85}
    assert predicted.validated_by is None
    assert predicted.resolution is None  # ParticleTrieur writes 0 for unknown
    assert predicted.predicted  # the auto tag

    assert unlabelled.path == Path("/data/c.png")
    assert unlabelled.label is None
    assert unlabelled.sample is None
    assert unlabelled.depth is None
    assert unlabelled.classifications == {}

    # A person's label: no auto tag, no val_by; ParticleTrieur's unknown depth is 0.
    assert (by_hand.label, by_hand.classifier, by_hand.validated_by) == (
        "G_ruber",
        "Zoë Müller",
        None,
    )
    assert not by_hand.predicted
    assert by_hand.sample == "Échantillon β 30cm"
    assert by_hand.depth is None

    # Below the network's threshold; a parameter index1 of 0 makes the depth a known 0.
    assert unsure.label == "unsure" and unsure.predicted
    assert unsure.classifications == {"G_ruber": 0.45, "B_spissa": 0.4, "unsure": 1.0}
    assert unsure.depth == 0.0
    assert unsure.parameters == {}


def test_round_trip(tmp_path: Path):
    records = [
        ParticleRecord(
            path=tmp_path / "imgs" / "s1" / "x.jpg",
            label="G_ruber",
            sample="s1",
            depth=120.0,
            guid="abc",
            resolution=1159.4,
            validated_by="anna",
            classifier="human",
            classifications={"G_ruber": 1.0},
            width=64,
            height=48,
            tags=["best"],
            parameters={"note": "rim broken"},
        ),
        ParticleRecord(
            path=tmp_path / "imgs" / "s2" / "y.jpg",
            label="B_spissa",
            sample="s2",
            depth=130.5,
            classifier="bundle-7",
            classifications={"B_spissa": 0.9, "G_ruber": 0.1},
            tags=["auto"],
        ),
        ParticleRecord(
            path=tmp_path / "imgs" / "top.jpg",
            label="G_ruber",
            sample="Échantillon β 0cm",
            depth=0.0,
            classifier="Zoë Müller",
            classifications={"G_ruber": 1.0},
        ),
        ParticleRecord(path=tmp_path / "elsewhere" / "z.png"),
        ParticleRecord(
            path=tmp_path / "imgs" / "w.png",
            label="unsure",
            classifier="cnn",
            classifications={"G_ruber": 0.3, "unsure": 1.0},
            tags=["auto"],
        ),
    ]
    taxa = [Taxon("G_ruber", "G. ruber", group="planktonic"), Taxon("B_spissa", group="benthic")]
    xml_path = tmp_path / "out" / "project.xml"
    xml_path.parent.mkdir()

    write_project(xml_path, records, taxa)
    text = xml_path.read_text()
    assert "<filename>../imgs/s1/x.jpg</filename>" in text  # relative to the project file
    assert "<code>unlabeled</code>" in text
    assert text.count("<tag>auto</tag>") == 2

    read_records, read_taxa = read_project(xml_path)
    assert read_records == records
    by_code = {t.code: t for t in read_taxa}
    assert by_code["G_ruber"] == taxa[0]
    assert by_code["B_spissa"] == taxa[1]
    assert by_code["unlabeled"].is_class is False
    assert by_code["unsure"].is_class is False


def test_predictions_of_files_foramflow_wrote_before_the_auto_tag_stay_predictions(
    tmp_path: Path,
):
    """Such a file marked its validated images with val_by only."""
    image = (
        "<image><source><filename>{name}.png</filename></source><val_by>{by}</val_by>"
        '<classifications id="{id}"><classification><code>G_ruber</code><value>0.9</value>'
        "</classification></classifications></image>"
    )
    images = image.format(name="v", by="anna", id="human") + image.format(name="p", by="", id="m")
    for version, predicted in (("foramflow", [False, True]), ("2.4.1", [False, False])):
        path = tmp_path / f"{version}.xml"
        path.write_text(f'<project version="{version}"><images>{images}</images></project>')
        records, _ = read_project(path)
        assert [r.predicted for r in records] == predicted, version


def test_label_overrides_disagreeing_scores(tmp_path: Path):
    """A validated label that differs from the stored scores is written as the only class."""
    record = ParticleRecord(
        path=tmp_path / "a.png", label="G_ruber", classifications={"B_spissa": 0.7}
    )
    write_project(tmp_path / "p.xml", [record], [])
    (read,), _ = read_project(tmp_path / "p.xml")
    assert read.label == "G_ruber"
    assert read.classifications == {"G_ruber": 1.0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<project><images><image>", "not a valid ParticleTrieur project"),
        ("<network/>", "expected <project>"),
        ("<project><images><image><source/></image></images></project>", "image 1"),
        (
            "<project><images><image><source><filename>a.png</filename>"
            "<index1>deep</index1></source></image></images></project>",
            "index1",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaa">]><project>&a;</project>',
            "not a valid ParticleTrieur project",
        ),
    ],
)
def test_malformed_files_raise_naming_the_file(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_project(path)
    assert str(path) in str(info.value)


def test_missing_file_names_it(tmp_path: Path):
    with pytest.raises(ValueError, match=r"missing\.xml"):
        read_project(tmp_path / "missing.xml")
