import math

import pytest

from foramflow.classify.samples import SampleError, SampleRule, assign_samples, find_images

PATHS = ["core_120cm/a.png", "core_120cm/sub/b.png", "core_95cm/c.png", "loose.png"]


def test_find_images_is_recursive_sorted_and_skips_hidden_and_non_images(tmp_path):
    for rel in ["b/x.png", "a/deep/er/y.JPG", "a/.hidden.png", ".trash/z.png", "a/notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"123")
    found = find_images(tmp_path)
    assert found["path"].tolist() == ["a/deep/er/y.JPG", "b/x.png"]
    assert found["size"].tolist() == [3, 3]


def test_find_images_follows_symlinked_folders_once(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.png").write_bytes(b"1")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "s1").symlink_to(tmp_path / "data")
    (tmp_path / "images" / "s1" / "loop").symlink_to(tmp_path / "images")
    assert find_images(tmp_path / "images")["path"].tolist() == ["s1/x.png"]


def test_default_sample_is_first_folder_and_root_name_for_loose_images():
    samples, depths = assign_samples(PATHS, SampleRule(), root_name="core")
    assert samples == ["core_120cm", "core_120cm", "core_95cm", "core"]
    assert all(math.isnan(d) for d in depths)


def test_regex_gives_sample_and_depth():
    rule = SampleRule(regex=r"(?P<sample>core_(?P<depth>\d+)cm)/")
    samples, depths = assign_samples(PATHS[:3], rule, root_name="x")
    assert samples == ["core_120cm", "core_120cm", "core_95cm"]
    assert depths == [120.0, 120.0, 95.0]


def test_regex_that_misses_a_path_is_an_error_naming_it():
    with pytest.raises(SampleError, match=r"1 image path\(s\), e.g. loose.png"):
        assign_samples(PATHS, SampleRule(regex=r"core_\d+cm"), root_name="x")


def test_table_by_folder_takes_the_deepest_folder(tmp_path):
    table = tmp_path / "samples.csv"
    table.write_text("folder,sample,depth\ncore_120cm,A,1.2\ncore_120cm/sub,B,1.25\n.,rest,\n")
    samples, depths = assign_samples(PATHS, SampleRule(table=str(table)), root_name="x")
    assert samples == ["A", "B", "rest", "rest"]
    assert depths[:2] == [1.2, 1.25]
    assert math.isnan(depths[2])


def test_table_by_path_must_cover_every_image(tmp_path):
    table = tmp_path / "samples.csv"
    table.write_text("path,sample,depth\ncore_120cm/a.png,A,1\ncore_95cm/c.png,C,2\n")
    with pytest.raises(SampleError, match=r"no sample for 2 image\(s\)"):
        assign_samples(PATHS, SampleRule(table=str(table)), root_name="x")
    samples, depths = assign_samples(
        ["core_120cm/a.png", "core_95cm/c.png"], SampleRule(table=str(table)), root_name="x"
    )
    assert (samples, depths) == (["A", "C"], [1.0, 2.0])


def test_table_of_sample_depths_adds_depth_to_folders(tmp_path):
    table = tmp_path / "depths.csv"
    table.write_text("sample,depth\ncore_120cm,120\ncore_95cm,95\n")
    samples, depths = assign_samples(PATHS[:3], SampleRule(table=str(table)), root_name="x")
    assert samples == ["core_120cm", "core_120cm", "core_95cm"]
    assert depths == [120.0, 120.0, 95.0]


def test_bad_tables_and_rules_are_clear_errors(tmp_path):
    table = tmp_path / "bad.csv"
    table.write_text("folder,depth\na,1\n")
    with pytest.raises(SampleError, match="needs a 'sample' column"):
        assign_samples(PATHS, SampleRule(table=str(table)), root_name="x")
    table.write_text("sample,depth\na,deep\n")
    with pytest.raises(SampleError, match="depth 'deep' is not a number"):
        assign_samples(PATHS, SampleRule(table=str(table)), root_name="x")
    with pytest.raises(SampleError, match="invalid sample regex"):
        SampleRule(regex="(")
    with pytest.raises(SampleError, match="not both"):
        SampleRule(regex="x", table=str(table))


def test_the_depth_unit_is_taken_from_the_column_or_group_name(tmp_path):
    table = tmp_path / "depths.csv"
    table.write_text("sample,Depth_cm\ncore_120cm,120\ncore_95cm,95\n")
    rule = SampleRule(table=str(table))
    assert rule.depth_unit() == "cm"
    assert assign_samples(PATHS[:3], rule, root_name="x")[1] == [120.0, 120.0, 95.0]
    assert SampleRule(regex=r"core_(?P<depth_mm>\d+)").depth_unit() == "mm"
    assert SampleRule(regex=r"core_(?P<depth>\d+)").depth_unit() is None
    assert SampleRule().depth_unit() is None


def test_two_depth_columns_are_refused_and_other_suffixes_ignored(tmp_path):
    table = tmp_path / "depths.csv"
    table.write_text("sample,depth,depth_m\na,1,2\n")
    with pytest.raises(SampleError, match=r"depths\.csv: more than one depth column"):
        assign_samples(PATHS, SampleRule(table=str(table)), root_name="x")
    table.write_text("sample,depth_top,depth_bottom\ncore_95cm,94,96\n")
    rule = SampleRule(table=str(table))
    assert rule.depth_unit() is None
    assert all(math.isnan(d) for d in assign_samples(PATHS[2:3], rule, root_name="x")[1])
