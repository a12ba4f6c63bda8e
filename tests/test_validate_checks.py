"""`validate`'s checks: keypoint-name order in the categories, image files, initial fits, exit codes.

Also the fit path: ``load_annotations`` (which ``fit`` uses) rejects a keypoint-name permutation.
No fitting happens here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from resihmr_dr.cli import main
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.ldpose import (
    KEYPOINT_ALIASES,
    KEYPOINT_NAMES,
    canonical_keypoint_name,
    keypoint_names_problem,
    normalize_keypoint_name,
)
from resihmr_dr.data.sample import sample_annotations_path
from resihmr_dr.data.validate import check_files

SAMPLE = sample_annotations_path().parent


def sample_doc() -> dict:
    return json.loads(sample_annotations_path().read_text())


def scene(root: Path, doc: dict | None = None, name: str = "ann.json") -> Path:
    """Copy the sample's image and mask to ``root`` and write ``doc`` (default: the sample's)."""
    for file in ("image.png", "mask.png"):
        (root / file).write_bytes((SAMPLE / file).read_bytes())
    path = root / name
    path.write_text(json.dumps(sample_doc() if doc is None else doc))
    return path


def swapped(names: list[str], i: int, j: int) -> list[str]:
    out = list(names)
    out[i], out[j] = out[j], out[i]
    return out


def with_names(names: list, category: dict | None = None) -> dict:
    doc = sample_doc()
    doc["categories"] = [dict(category or doc["categories"][0], keypoints=names)]
    return doc


def write_fit(path: Path, **overrides) -> Path:
    arrays = {
        "betas": np.zeros((1, 10)),
        "global_orient": np.zeros((1, 3)),
        "body_pose": np.zeros((1, 63)),
        "transl": np.array([[0.0, 0.0, 5.0]]),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


# ---------------------------------------------------------------------------- names (pure)
def test_our_names_pass_and_spellings_and_aliases_are_accepted():
    assert keypoint_names_problem(list(KEYPOINT_NAMES)) is None
    assert normalize_keypoint_name("  Left-Eye ") == "left_eye"
    assert normalize_keypoint_name("below left  knee_end") == "below_left_knee_end"
    assert canonical_keypoint_name("L_Shoulder") == "left_shoulder"
    assert canonical_keypoint_name("r-ankle") == "right_ankle"
    assert canonical_keypoint_name("Above Right Elbow End") == "above_right_elbow_end"
    assert canonical_keypoint_name("lshoulder") is None and canonical_keypoint_name(3) is None
    spelled = [n.replace("_", " ").title() for n in KEYPOINT_NAMES]
    spelled[1], spelled[16] = "l_eye", "r_ankle"
    assert keypoint_names_problem(spelled) is None


def test_the_alias_list_is_small_unambiguous_and_maps_onto_our_names():
    assert len(KEYPOINT_ALIASES) == 16  # l_/r_ for the 16 sided COCO joints, nothing else
    assert set(KEYPOINT_ALIASES.values()) <= set(KEYPOINT_NAMES[:17])
    assert not set(KEYPOINT_ALIASES) & set(KEYPOINT_NAMES)
    assert len(set(KEYPOINT_ALIASES.values())) == len(KEYPOINT_ALIASES)  # one alias per name
    assert KEYPOINT_ALIASES["l_eye"] == "left_eye" and KEYPOINT_ALIASES["r_hip"] == "right_hip"


def test_a_permutation_names_the_first_mismatch():
    problem = keypoint_names_problem(swapped(list(KEYPOINT_NAMES), 5, 6))
    assert problem.startswith("position 5: expected 'left_shoulder', found 'right_shoulder'")
    assert "another order" in problem and "wrong joints" in problem
    # endpoints swapped: the first mismatch is reported, not the whole list
    problem = keypoint_names_problem(swapped(list(KEYPOINT_NAMES), 19, 23))
    assert problem.startswith("position 19: expected 'below_left_elbow_end', found 'below_left_knee_end'")


def test_an_alias_in_the_wrong_place_says_what_it_was_read_as():
    names = list(KEYPOINT_NAMES)
    names[5] = "R-Shoulder"
    problem = keypoint_names_problem(names)
    assert "position 5: expected 'left_shoulder', found 'R-Shoulder' (read as 'right_shoulder')" in problem
    assert "another position" in problem  # right_shoulder now appears twice: not a permutation


@pytest.mark.parametrize("bad, shown", [("shoulder_l", "'shoulder_l'"), (7, "7"), (None, "None")])
def test_unknown_names_and_non_strings_are_named(bad, shown):
    names: list = list(KEYPOINT_NAMES)
    names[20] = bad
    problem = keypoint_names_problem(names)
    assert problem.startswith(f"position 20: expected 'below_right_elbow_end', found {shown}")
    assert "not an LDpose keypoint name" in problem


def test_a_wrong_count_is_still_a_count_error():
    assert keypoint_names_problem(list(KEYPOINT_NAMES[:17])) == "expected the 25 LDpose keypoint names, got 17"


# ---------------------------------------------------------------------------- names in a file
def test_load_annotations_rejects_permuted_names_naming_file_category_and_position(tmp_path):
    path = scene(tmp_path, with_names(swapped(list(KEYPOINT_NAMES), 13, 14), {"id": 7, "name": "person"}))
    for on_error in ("raise", "collect"):  # a file-level problem: never collected, never silently fitted
        with pytest.raises(DataError) as exc:
            load_annotations(path, on_error=on_error)
        err = exc.value
        assert err.path == path and err.field == "keypoints" and err.item == "categories[0] (id 7)"
        text = str(err)
        assert "ann.json" in text and "categories[0] (id 7)" in text
        assert "position 13: expected 'left_knee', found 'right_knee'" in text


def test_load_annotations_accepts_spellings_and_files_without_names(tmp_path):
    names = [n.upper() for n in KEYPOINT_NAMES]
    names[3] = "l_ear"
    assert len(load_annotations(scene(tmp_path, with_names(names)))) == 1
    doc = sample_doc()
    doc["categories"] = [{"id": 1, "name": "person"}, {"id": 2, "name": "bag"}]  # names optional
    assert len(load_annotations(scene(tmp_path, doc))) == 1


def test_a_second_category_with_bad_names_is_named(tmp_path):
    doc = sample_doc()
    doc["categories"].append({"id": 2, "name": "other", "keypoints": ["nose", *KEYPOINT_NAMES[2:], "left_eye"]})
    expected = r"categories\[1\] \(id 2\).*position 1: expected 'left_eye', found 'right_eye'"
    with pytest.raises(DataError, match=expected):
        load_annotations(scene(tmp_path, doc))


def test_names_that_are_not_a_list_are_an_error(tmp_path):
    with pytest.raises(DataError, match="field 'keypoints': expected the 25 LDpose keypoint names, got str"):
        load_annotations(scene(tmp_path, with_names("nose,left_eye")))  # type: ignore[arg-type]


def test_validate_exits_2_on_permuted_names(tmp_path, capsys):
    path = scene(tmp_path, with_names(swapped(list(KEYPOINT_NAMES), 0, 1)))
    assert main(["validate", "--annotations", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ann.json" in err and "categories[0] (id 1)" in err and "field 'keypoints'" in err
    assert "position 0: expected 'nose', found 'left_eye'" in err


def test_fit_refuses_permuted_names_before_fitting(tmp_path, capsys):
    path = scene(tmp_path, with_names(swapped(list(KEYPOINT_NAMES), 9, 10)))
    assert main(["fit", "--annotations", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "position 9: expected 'left_wrist', found 'right_wrist'" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("image*"))


# ---------------------------------------------------------------------------- the sample
def test_the_sample_validates_ok(capsys):
    assert main(["validate", "--annotations", str(sample_annotations_path())]) == 0
    out = capsys.readouterr()
    assert "ok   annotation 1 (image 1): left_leg=transtibial" in out.out
    assert "1 valid, 0 invalid" in out.out and out.err == ""


# ---------------------------------------------------------------------------- image files
def test_a_missing_image_is_an_error_naming_image_id_and_file_name(tmp_path, capsys):
    doc = sample_doc()
    doc["images"][0]["file_name"] = "photos/missing.jpg"
    path = scene(tmp_path, doc)
    assert main(["validate", "--annotations", str(path)]) == 1
    captured = capsys.readouterr()
    assert "ok   " not in captured.out and "0 valid" in captured.out
    bad = [line for line in captured.err.splitlines() if line.startswith("BAD")]
    assert "ann.json: image 1: field 'file_name': 'photos/missing.jpg'" in bad[0] and "not found" in bad[0]
    assert "annotation 1" in bad[1] and "image 1" in bad[1]  # the person in it is invalid too


def test_an_undecodable_image_is_an_error(tmp_path):
    path = scene(tmp_path)
    (tmp_path / "image.png").write_bytes((SAMPLE / "image.png").read_bytes()[:200])  # truncated PNG
    check = check_files(load_annotations(path))
    assert check.valid == ()
    first = check.errors[0]
    assert first.path == path and first.image_id == 1 and first.field == "file_name"
    assert "'image.png'" in str(first) and "cannot read image" in str(first)


def test_a_non_image_file_is_an_error(tmp_path):
    path = scene(tmp_path)
    (tmp_path / "image.png").write_text("not an image")
    (err, person_err) = check_files(load_annotations(path)).errors
    assert err.image_id == 1 and "cannot read image" in err.reason
    assert person_err.ann_id == 1 and person_err.field == "image_id"


def test_an_image_of_the_wrong_size_is_an_error(tmp_path):
    doc = sample_doc()
    doc["images"][0]["width"] = 481
    doc["annotations"][0].pop("mask_path")  # the PNG mask's size would be rejected first
    path = scene(tmp_path, doc)
    (err, _) = check_files(load_annotations(path)).errors
    assert err.image_id == 1 and err.field == "width/height" and "481x640" in str(err)


def test_other_people_are_still_checked_and_images_without_people_too(tmp_path, capsys):
    doc = sample_doc()
    doc["images"].append(dict(doc["images"][0], id=2, file_name="gone.png"))  # nobody in it
    path = scene(tmp_path, doc)
    assert main(["validate", "--annotations", str(path)]) == 1
    captured = capsys.readouterr()
    assert "ok   annotation 1" in captured.out and "1 valid, 1 invalid" in captured.out
    assert "image 2: field 'file_name': 'gone.png'" in captured.err


def test_images_resolve_against_the_images_folder(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    path = scene(tmp_path)
    (tmp_path / "image.png").rename(tmp_path / "imgs" / "image.png")
    assert main(["validate", "--annotations", str(path)]) == 1
    capsys.readouterr()
    (tmp_path / "imgs" / "mask.png").write_bytes((SAMPLE / "mask.png").read_bytes())
    assert main(["validate", "--annotations", str(path), "--images", str(tmp_path / "imgs")]) == 0


# ---------------------------------------------------------------------------- initial fits
def test_a_good_init_fit_validates(tmp_path, capsys):
    doc = sample_doc()
    doc["annotations"][0]["init_fit"] = "fit.npz"
    path = scene(tmp_path, doc)
    write_fit(tmp_path / "fit.npz")
    assert main(["validate", "--annotations", str(path)]) == 0
    assert "1 valid, 0 invalid" in capsys.readouterr().out


@pytest.mark.parametrize(
    "write, expect",
    [
        pytest.param(lambda p: write_fit(p, betas=None), "'betas'", id="missing-key"),
        pytest.param(lambda p: write_fit(p, transl=np.array([[0.0, np.nan, 5.0]])), "transl", id="nan"),
        pytest.param(lambda p: p.write_bytes(b"PK\x03\x04 not a zip"), "cannot read", id="corrupt"),
    ],
)
def test_a_bad_init_fit_is_an_error_naming_annotation_and_field(tmp_path, capsys, write, expect):
    doc = sample_doc()
    second = copy.deepcopy(doc["annotations"][0])
    second.update(id=2, init_fit="fits/bad.npz")
    doc["annotations"].append(second)
    path = scene(tmp_path, doc)
    (tmp_path / "fits").mkdir()
    write(tmp_path / "fits" / "bad.npz")
    assert main(["validate", "--annotations", str(path)]) == 1
    captured = capsys.readouterr()
    assert "ok   annotation 1" in captured.out and "1 valid, 1 invalid" in captured.out
    (line,) = [x for x in captured.err.splitlines() if x.startswith("BAD")]
    assert "ann.json: annotation 2: field 'init_fit': cannot load the initial fit" in line
    assert "bad.npz" in line and expect in line


def test_a_person_with_two_problems_reports_both(tmp_path):
    doc = sample_doc()
    doc["annotations"][0].update(init_fit="fit.npz", mask_path="broken.png")
    path = scene(tmp_path, doc)
    (tmp_path / "broken.png").write_bytes((SAMPLE / "mask.png").read_bytes()[:60])
    write_fit(tmp_path / "fit.npz", betas=None)
    check = check_files(load_annotations(path))
    assert check.valid == ()
    assert [e.field for e in check.errors] == ["mask_path", "init_fit"]
    assert all(e.ann_id == 1 for e in check.errors)


def test_check_files_keeps_the_loading_errors_first(tmp_path):
    doc = sample_doc()
    bad = dict(doc["annotations"][0], id=2, keypoints=[0.0] * 74)
    doc["annotations"].append(bad)
    check = check_files(load_annotations(scene(tmp_path, doc), on_error="collect"))
    assert [p.ann_id for p in check.valid] == [1]
    assert len(check.errors) == 1 and check.errors[0].ann_id == 2 and check.errors[0].field == "keypoints"


def test_validate_help_documents_the_checks_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("init_fit", "decodes", "keypoint names", "Exit code 0", "1 if any image or person", "2 if the file"):
        assert phrase in text, phrase
