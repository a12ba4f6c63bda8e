"""Fuzzing the command line with corrupted files: every case ends in a clear error naming the
file and the field, a non-zero exit code, and nothing written for that person; the other people
of the same file are still fitted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_robustness import FAST_YAML, assert_no_incomplete_folder

from resihmr_dr.cli import main
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.images import load_rgb_image
from resihmr_dr.data.masks import png_mask_size, read_png_mask
from resihmr_dr.data.sample import sample_annotations_path
from resihmr_dr.failures import FAILURES_FILE

SAMPLE_DIR = sample_annotations_path().parent
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
COUNTS: dict[str, int] = {}  # cases tried per test (printed with -s; reported in the task note)


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


@pytest.fixture(scope="module")
def sample_doc() -> dict:
    return json.loads(sample_annotations_path().read_text())


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sample_files")
    for name in ("image.png", "mask.png"):
        shutil.copy(SAMPLE_DIR / name, folder / name)
    (folder / "fast.yaml").write_text(FAST_YAML)
    return folder


def _person_folders(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) if out.exists() else []


# --------------------------------------------------------------------------- one file, many bad people
def test_fit_records_each_corrupted_person_and_fits_the_good_one(sample_doc, sample_files, tmp_path, capsys):
    """One annotation file: a good person and one person per kind of corruption."""
    folder = tmp_path / "data"
    shutil.copytree(sample_files, folder)
    image_png = (folder / "image.png").read_bytes()
    mask_png = (folder / "mask.png").read_bytes()
    (folder / "image_trunc.png").write_bytes(image_png[: len(image_png) // 2])
    (folder / "mask_trunc.png").write_bytes(mask_png[: len(mask_png) // 2])  # header intact, data cut
    (folder / "mask_stub.png").write_bytes(mask_png[:12])  # not even a header
    (folder / "init_trunc.json").write_text('{"betas": [0.1, 0.2')
    image = sample_doc["images"][0]
    good = sample_doc["annotations"][0]
    images = [
        image,
        dict(image, id=2, file_name="image_trunc.png"),
        dict(image, id=3, file_name="no_such_image.png"),
        dict(image, id=4, width="480"),  # wrong type
    ]
    cases = {  # ann_id: (annotation, file named in the error, field named in the error)
        2: (dict(good, image_id=2), "image_trunc.png", "file_name"),
        3: (dict(good, image_id=3), "no_such_image.png", "file_name"),
        4: (dict(good, mask_path="mask_trunc.png"), "mask_trunc.png", "mask_path"),
        5: (dict(good, mask_path="mask_stub.png"), "people.json", "mask_path"),
        6: (dict(good, mask_path="no_such_mask.png"), "people.json", "mask_path"),
        7: (dict(good, keypoints=["x"] + good["keypoints"][1:]), "people.json", "keypoints"),
        8: (dict(good, keypoints=good["keypoints"][:-3]), "people.json", "keypoints"),
        9: (dict(good, image_id="1"), "people.json", "image_id"),
        10: (dict(good, bbox=[1, 2, "3", 4]), "people.json", "bbox"),
        11: (dict(good, init_fit="init_trunc.json"), "init_trunc.json", ""),
        12: (dict(good, segmentation={"size": [640, 480], "counts": 7}, mask_path=None), "people.json", "segmentation"),
        13: (dict(good, image_id=4), "people.json", "image_id"),
        14: (dict(good, num_keypoints=-1), "people.json", "num_keypoints"),
        15: (
            dict(good, keypoints=good["keypoints"][:2] + [float("nan")] + good["keypoints"][3:]),
            "people.json",
            "keypoints",
        ),
    }
    doc = dict(sample_doc, images=images, annotations=[good] + [dict(a, id=i) for i, (a, _, _) in cases.items()])
    path = folder / "people.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    code = main(["fit", "--annotations", str(path), "--out", str(out), "--config", str(folder / "fast.yaml")])
    err = capsys.readouterr().err
    assert code == 1
    assert _person_folders(out) == ["image1_ann1"]  # nothing written for the bad people
    assert_no_incomplete_folder(out)
    failures = json.loads((out / FAILURES_FILE).read_text())
    by_ann = {f["ann_id"]: f for f in failures if f["ann_id"] is not None}
    assert set(by_ann) == set(cases)
    assert any(f["image_id"] == 4 and "'width'" in f["reason"] for f in failures)  # the bad image itself
    for ann_id, (_, file_name, field) in cases.items():
        reason = by_ann[ann_id]["reason"]
        assert file_name in reason and f"annotation {ann_id}" in reason, reason
        assert f"'{field}'" in reason or not field, reason
        assert f"FAILED annotation {ann_id} " in err
        _count("fit: corrupted person")
    _count("fit: good person next to corrupted ones")


# --------------------------------------------------------------------------- file-level corruption
def _write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@FUZZ
@given(st.data())
def test_truncated_annotation_file_is_exit_2_and_writes_nothing(sample_doc, sample_files, tmp_path, capsys, data):
    text = json.dumps(sample_doc).encode()
    cut = data.draw(st.integers(0, len(text) - 2), label="cut")
    path = _write_bytes(sample_files, "cut.json", text[:cut])
    out = tmp_path / f"out{cut}"
    for command in (["fit", "--out", str(out), "--config", str(sample_files / "fast.yaml")], ["validate"]):
        assert main([command[0], "--annotations", str(path), *command[1:]]) == 2
        assert "cut.json" in capsys.readouterr().err
    assert _person_folders(out) == []
    _count("truncated JSON")


@FUZZ
@given(
    junk=st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [
                b"",
                b"\xef\xbb\xbf",
                b"[]",
                b"null",
                b"7",
                b'{"images": 1, "annotations": []}',
                b'{"annotations": []}',
                b"\xff\xfe{",
            ]
        ),
    )
)
def test_junk_annotation_file_is_a_clear_error(sample_files, tmp_path, capsys, junk):
    path = _write_bytes(sample_files, "junk.json", junk)
    try:
        dataset = load_annotations(path, on_error="collect")
    except DataError as err:
        assert "junk.json" in str(err)
        assert (
            main(
                [
                    "fit",
                    "--annotations",
                    str(path),
                    "--out",
                    str(tmp_path / "o"),
                    "--config",
                    str(sample_files / "fast.yaml"),
                ]
            )
            == 2
        )
        assert "junk.json" in capsys.readouterr().err
        assert _person_folders(tmp_path / "o") == []
    else:
        assert len(dataset) == 0  # e.g. '{"images": [], "annotations": []}'
    _count("junk JSON")


def test_missing_annotation_file_and_config_are_exit_2(sample_files, tmp_path, capsys):
    assert main(["fit", "--annotations", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")]) == 2
    assert "none.json" in capsys.readouterr().err
    bad_config = _write_bytes(tmp_path, "bad.yaml", b"fit:\n  seed: many\n")
    code = main(
        [
            "fit",
            "--annotations",
            str(sample_annotations_path()),
            "--out",
            str(tmp_path / "o"),
            "--config",
            str(bad_config),
        ]
    )
    assert code == 2 and "seed" in capsys.readouterr().err
    assert _person_folders(tmp_path / "o") == []
    _count("missing file / bad config")
    _count("missing file / bad config")


# --------------------------------------------------------------------------- per-field corruption
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ("keypoints", "image_id", "bbox", "num_keypoints", "segmentation", "mask_path", "init_fit")


@FUZZ
@given(st.data())
def test_validate_names_the_corrupted_field_and_keeps_the_good_person(sample_doc, sample_files, capsys, data):
    good = sample_doc["annotations"][0]
    bad = dict(good, id=2)
    field = data.draw(st.sampled_from(FIELDS + ("keypoints[i]",)), label="field")
    if field == "keypoints[i]":
        index = data.draw(st.integers(0, len(good["keypoints"]) - 1), label="index")
        keypoints = list(good["keypoints"])
        keypoints[index] = data.draw(JSON_VALUES, label="value")
        bad["keypoints"] = keypoints
        field = "keypoints"
    else:
        bad[field] = data.draw(JSON_VALUES, label="value")
    path = sample_files / "fields.json"
    path.write_text(json.dumps(dict(sample_doc, annotations=[good, bad])))
    code = main(["validate", "--annotations", str(path)])
    captured = capsys.readouterr()
    assert "ok   annotation 1 " in captured.out
    assert code in (0, 1)
    if code == 1:
        (line,) = [ln for ln in captured.err.splitlines() if ln.startswith("BAD")]
        assert "fields.json" in line and "annotation 2" in line, line
        assert f"'{field}'" in line, line
    else:
        assert "ok   annotation 2 " in captured.out
    _count(f"validate: corrupted field ({'rejected' if code else 'still valid'})")


# --------------------------------------------------------------------------- corrupted images and masks
@FUZZ
@given(st.data())
def test_truncated_or_flipped_image_and_mask_bytes_are_dataerrors(sample_files, data):
    for name, load in (("image.png", load_rgb_image), ("mask.png", read_png_mask), ("mask.png", png_mask_size)):
        raw = bytearray((sample_files / name).read_bytes())
        if data.draw(st.booleans(), label="truncate"):
            raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
        else:
            for _ in range(data.draw(st.integers(1, 8), label="flips")):
                raw[data.draw(st.integers(0, len(raw) - 1), label="at")] ^= 0xFF
        path = sample_files / f"corrupt_{name}"
        path.write_bytes(bytes(raw))
        try:
            load(path)
        except DataError as err:
            assert path.name in str(err)
        _count("corrupted image/mask bytes")


def test_report_case_counts():
    """Prints the number of cases tried (every case above asserts it passed)."""
    print("\ncases tried (all passed):", json.dumps(COUNTS, indent=1, sort_keys=True))
    assert sum(COUNTS.values()) > 0
