"""Loading LDpose-LimbLoss annotation files: round trips, masks, images, and every bad input."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.images import load_rgb_image
from resihmr_dr.data.ldpose import KEYPOINT_INDEX, LIMB_BY_NAME, NUM_KEYPOINTS, LimbStatus
from resihmr_dr.data.masks import (
    PngMask,
    PolygonMask,
    RleMask,
    decode_rle_string,
    mask_to_rle,
    read_png_mask,
    rle_to_mask,
    write_png_mask,
)
from resihmr_dr.data.records import ImageRecord, Intrinsics, LDposeDataset, PersonAnnotation

W, H = 40, 30
S = LimbStatus
COCO = list(KEYPOINT_INDEX)[:17]


# ---------------------------------------------------------------------------- builders
def kp_flat(labelled: list[str], *, v: int = 2) -> list[float]:
    """75 numbers: every keypoint gets distinct in-image coordinates; the named ones v=v."""
    flat: list[float] = []
    for i in range(NUM_KEYPOINTS):
        name = list(KEYPOINT_INDEX)[i]
        flat += [1.5 + i, 2.25 + (i % 25), float(v if name in labelled else 0)]
    return flat


def without(names: list[str], *drop: str) -> list[str]:
    return [n for n in names if n not in drop]


def rect_mask(y0: int, y1: int, x0: int, x1: int, *, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major runs, starting with background)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    runs, current, n = [], 0, 0
    for value in flat:
        if value != current:
            runs.append(n)
            current, n = value, 0
        n += 1
    runs.append(n)
    return {"size": [mask.shape[0], mask.shape[1]], "counts": runs}


MASK_A = rect_mask(5, 20, 10, 25)
MASK_B = rect_mask(0, 30, 0, 3) | rect_mask(10, 12, 5, 40)
MASK_PNG = rect_mask(2, 28, 8, 30)
POLY = [[5.0, 5.0, 30.0, 5.0, 30.0, 25.0, 5.0, 25.0]]


def build(root: Path) -> dict:
    """Write images, masks and an initial fit under ``root``; return the annotation document."""
    (root / "img").mkdir()
    (root / "masks").mkdir()
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = np.arange(W, dtype=np.uint8)[None, :] * 5
    rgb[..., 1] = np.arange(H, dtype=np.uint8)[:, None] * 7
    Image.fromarray(rgb).save(root / "img" / "a.png")
    Image.fromarray(rgb[..., 1]).save(root / "img" / "b.png")  # greyscale
    Image.fromarray(np.dstack([rgb, np.full((H, W), 128, np.uint8)])).save(root / "img" / "c.png")
    write_png_mask(root / "masks" / "p13.png", MASK_PNG)
    Image.fromarray(MASK_A.astype(np.uint8)).save(root / "masks" / "p14.png")  # 0/1
    np.savez(
        root / "fit15.npz",
        betas=np.zeros((1, 10)),
        global_orient=np.zeros((1, 3)),
        body_pose=np.zeros((1, 63)),
        transl=np.array([[0.0, 0.0, 5.0]]),
    )
    return {
        "images": [
            {
                "id": 1,
                "file_name": "img/a.png",
                "width": W,
                "height": H,
                "camera": {"fx": 500.0, "fy": 510.0, "cx": 20.0, "cy": 15.5},
            },
            {
                "id": 2,
                "file_name": "img/b.png",
                "width": W,
                "height": H,
                "K": [[600, 0, 19.5], [0, 600, 14.5], [0, 0, 1]],
            },
            {"id": 3, "file_name": "img/c.png", "width": W, "height": H},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "num_keypoints": 13,
                "keypoints": kp_flat(without(COCO[5:], "left_ankle") + ["below_left_knee_end"]),
                "bbox": [10, 5, 15, 15],
                "segmentation": mask_to_rle(MASK_A),
            },
            {"id": 11, "image_id": 1, "keypoints": kp_flat(COCO), "segmentation": uncompressed_rle(MASK_B)},
            {
                "id": 12,
                "image_id": 2,
                "keypoints": kp_flat(
                    without(COCO, "left_knee", "left_ankle", "right_knee", "right_ankle")
                    + ["above_left_knee_end", "above_right_knee_end"],
                    v=1,
                ),
                "segmentation": POLY,
            },
            {
                "id": 13,
                "image_id": 2,
                "keypoints": kp_flat(
                    without(COCO, "left_elbow", "left_wrist", "right_wrist")
                    + ["above_left_elbow_end", "below_right_elbow_end"]
                ),
                "mask_path": "masks/p13.png",
            },
            {"id": 14, "image_id": 3, "keypoints": kp_flat(COCO), "mask": "masks/p14.png"},
            {"id": 15, "image_id": 3, "keypoints": kp_flat([]), "init_fit": "fit15.npz", "segmentation": []},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": list(KEYPOINT_INDEX)}],
    }


def write(root: Path, doc: dict, name: str = "annotations.json") -> Path:
    path = root / name
    path.write_text(json.dumps(doc, indent=1))
    return path


@pytest.fixture
def scene(tmp_path) -> tuple[Path, dict]:
    return tmp_path, build(tmp_path)


# ---------------------------------------------------------------------------- round trip
def test_round_trip_records(scene):
    root, doc = scene
    ds = load_annotations(write(root, doc))
    assert isinstance(ds, LDposeDataset)
    assert ds.errors == ()
    assert [p.ann_id for p in ds] == [10, 11, 12, 13, 14, 15]
    assert len(ds) == 6

    assert ds.images[1] == ImageRecord(1, "img/a.png", W, H, Intrinsics(500.0, 510.0, 20.0, 15.5))
    assert ds.images[2].intrinsics == Intrinsics(600.0, 600.0, 19.5, 14.5)
    assert ds.images[3].intrinsics is None
    assert ds.intrinsics(3) == Intrinsics(5000.0, 5000.0, W / 2, H / 2)
    assert ds.intrinsics(3, focal_px=800.0).fx == 800.0
    np.testing.assert_array_equal(ds.images[2].intrinsics.as_matrix(), [[600, 0, 19.5], [0, 600, 14.5], [0, 0, 1]])

    for person, entry in zip(ds.people, doc["annotations"]):
        assert isinstance(person, PersonAnnotation)
        assert person.keypoints_px.shape == (NUM_KEYPOINTS, 3)
        assert person.keypoints_px.dtype == np.float64
        np.testing.assert_array_equal(person.keypoints_px.reshape(-1), entry["keypoints"])
        assert person.image_id == entry["image_id"]
    with pytest.raises(ValueError):
        ds.people[0].keypoints_px[0, 0] = 3.0  # read-only

    by_id = {p.ann_id: p for p in ds}
    assert by_id[10].bbox == (10.0, 5.0, 15.0, 15.0) and by_id[11].bbox is None
    assert by_id[10].limb_status == {
        "left_arm": S.INTACT,
        "right_arm": S.INTACT,
        "left_leg": S.TRANSTIBIAL,
        "right_leg": S.INTACT,
    }
    assert [(limb.name, s) for limb, s in by_id[10].residual_limbs] == [("left_leg", S.TRANSTIBIAL)]
    assert by_id[11].residual_limbs == []
    assert [(limb.name, s) for limb, s in by_id[12].residual_limbs] == [
        ("left_leg", S.TRANSFEMORAL),
        ("right_leg", S.TRANSFEMORAL),
    ]
    assert by_id[13].residual_limbs == [
        (LIMB_BY_NAME["left_arm"], S.TRANSHUMERAL),
        (LIMB_BY_NAME["right_arm"], S.TRANSRADIAL),
    ]
    assert isinstance(by_id[10].mask, RleMask) and isinstance(by_id[11].mask, RleMask)
    assert isinstance(by_id[12].mask, PolygonMask)
    assert isinstance(by_id[13].mask, PngMask) and by_id[13].mask.path == root / "masks" / "p13.png"
    assert by_id[15].mask is None  # empty segmentation list = no mask
    assert by_id[15].init_fit_path == root / "fit15.npz"
    assert [p.ann_id for p in ds.people_in(2)] == [12, 13]
    assert ds.image_of(by_id[14]) is ds.images[3]
    assert ds.categories[0]["name"] == "person"


def test_round_trip_masks(scene):
    root, doc = scene
    ds = load_annotations(write(root, doc))
    by_id = {p.ann_id: p for p in ds}
    for ann_id, expected in [(10, MASK_A), (11, MASK_B), (13, MASK_PNG), (14, MASK_A)]:
        got = ds.mask(by_id[ann_id])
        assert got.dtype == bool and got.shape == (H, W)
        np.testing.assert_array_equal(got, expected, err_msg=f"annotation {ann_id}")
    poly = ds.mask(by_id[12])
    assert poly.shape == (H, W) and poly[15, 15] and not poly[1, 1] and not poly[28, 35]
    assert abs(int(poly.sum()) - 25 * 20) <= 50 + 25  # pycocotools includes boundary pixels
    assert ds.mask(by_id[15]) is None


def test_initial_fit_through_annotation(scene):
    root, doc = scene
    ds = load_annotations(write(root, doc))
    fit = ds.initial_fit(ds.people[5])
    assert fit.body_pose.shape == (21, 3) and fit.betas.shape == (10,)
    np.testing.assert_array_equal(fit.transl, [0.0, 0.0, 5.0])
    assert ds.initial_fit(ds.people[0]) is None


def test_images_dir_resolution(tmp_path):
    ann_dir, img_root = tmp_path / "ann", tmp_path / "data"
    ann_dir.mkdir()
    img_root.mkdir()
    doc = build(img_root)
    # masks and fits are found in images_dir when not next to the JSON
    ds = load_annotations(write(ann_dir, doc), images_dir=img_root)
    assert ds.image_path(1) == img_root / "img" / "a.png"
    assert ds.people[3].mask.path == img_root / "masks" / "p13.png"
    assert ds.load_image(1).shape == (H, W, 3)
    # without images_dir the relative mask paths do not resolve
    with pytest.raises(DataError) as info:
        load_annotations(ann_dir / "annotations.json")
    assert info.value.ann_id == 13 and info.value.field == "mask_path"


# ---------------------------------------------------------------------------- images
def test_load_image_variants(scene):
    root, doc = scene
    ds = load_annotations(write(root, doc))
    a = ds.load_image(1)
    assert a.dtype == np.uint8 and a.shape == (H, W, 3)
    assert a[3, 7, 0] == 35 and a[3, 7, 1] == 21
    b = ds.load_image(ds.images[2])  # greyscale -> RGB
    assert b.shape == (H, W, 3) and (b[..., 0] == b[..., 2]).all() and b[4, 0, 0] == 28
    c = ds.load_image(3)  # RGBA -> RGB (alpha dropped)
    assert c.shape == (H, W, 3) and c[3, 7, 0] == 35


def test_load_image_honours_exif_orientation(tmp_path):
    raw = np.zeros((W, H, 3), np.uint8)  # stored 30 wide x 40 tall
    raw[0, 0] = (255, 0, 0)  # stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = tmp_path / "rot.png"
    Image.fromarray(raw).save(path, exif=exif)
    img = load_rgb_image(path)
    assert img.shape == (H, W, 3)
    assert tuple(img[0, W - 1]) == (255, 0, 0)  # stored top-left ends up top-right


def test_load_image_16bit_greyscale(tmp_path):
    arr = np.full((H, W), 65535, np.uint16)
    arr[0, 0] = 0
    Image.fromarray(arr).save(tmp_path / "g16.png")
    img = load_rgb_image(tmp_path / "g16.png")
    assert img.dtype == np.uint8 and img.shape == (H, W, 3)
    assert img[0, 0, 0] == 0 and img[1, 1, 2] == 255


def test_load_image_errors(scene):
    root, doc = scene
    doc["images"][0]["width"] = W + 2
    ds = load_annotations(write(root, doc), on_error="collect")  # its RLE masks no longer fit
    with pytest.raises(DataError, match="42x30") as info:
        ds.load_image(1)
    assert info.value.image_id == 1
    (root / "img" / "b.png").unlink()
    with pytest.raises(DataError, match="not found") as info:
        ds.load_image(2)
    assert info.value.path.name == "b.png"
    (root / "img" / "c.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        ds.load_image(3)
    with pytest.raises(DataError, match="unknown image id 99"):
        ds.image_path(99)


# ---------------------------------------------------------------------------- masks
def _rgba(mask, *, alpha_cutout: bool):
    arr = np.zeros(mask.shape + (4,), np.uint8)
    if alpha_cutout:
        arr[..., :3] = 200  # colour everywhere, alpha marks the person
        arr[..., 3] = np.where(mask, 255, 0)
    else:
        arr[..., 0] = np.where(mask, 255, 0)
        arr[..., 3] = 255
    return Image.fromarray(arr)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda m: Image.fromarray(m.astype(np.uint8)), id="L-0/1"),
        pytest.param(lambda m: Image.fromarray(m.astype(np.uint8) * 255), id="L-0/255"),
        pytest.param(lambda m: Image.fromarray(m), id="1-bit"),
        pytest.param(lambda m: Image.fromarray(np.dstack([m * 0, m * 0, m * 255]).astype(np.uint8)), id="RGB-blue"),
        pytest.param(lambda m: _rgba(m, alpha_cutout=True), id="RGBA-alpha"),
        pytest.param(lambda m: _rgba(m, alpha_cutout=False), id="RGBA-opaque"),
        pytest.param(lambda m: Image.fromarray(m.astype(np.uint8) * 255).convert("P"), id="P"),
        pytest.param(lambda m: Image.fromarray(m.astype(np.uint16) * 1000), id="I16"),
        pytest.param(lambda m: Image.fromarray(m.astype(np.uint8) * 255).convert("LA"), id="LA"),
    ],
)
def test_read_png_mask_modes(tmp_path, make):
    path = tmp_path / "m.png"
    make(MASK_B).save(path)
    got = read_png_mask(path)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, MASK_B)


def test_mask_to_rle_is_json_and_round_trips():
    rle = mask_to_rle(MASK_B)
    assert isinstance(rle["counts"], str) and rle["size"] == [H, W]
    back = json.loads(json.dumps(rle))
    np.testing.assert_array_equal(rle_to_mask(back), MASK_B)
    assert decode_rle_string(rle["counts"]) == uncompressed_rle(MASK_B)["counts"]
    np.testing.assert_array_equal(rle_to_mask(uncompressed_rle(MASK_B)), MASK_B)


def test_mask_decode_checks_size_again(scene):
    root, doc = scene
    ds = load_annotations(write(root, doc))
    write_png_mask(root / "masks" / "p13.png", np.ones((H, W + 1), bool))  # changed after loading
    with pytest.raises(DataError) as info:
        ds.mask(ds.people[3])
    assert info.value.ann_id == 13 and info.value.field == "mask_path"
    assert "annotations.json" in str(info.value) or "p13.png" in str(info.value)


# ---------------------------------------------------------------------------- bad input
def _ann(doc, ann_id):
    return next(a for a in doc["annotations"] if a["id"] == ann_id)


def _img(doc, image_id):
    return next(i for i in doc["images"] if i["id"] == image_id)


def _set(obj, key, value):
    obj[key] = value


def _kp(ann_id, index, value):
    def mutate(doc, root):
        _ann(doc, ann_id)["keypoints"][index] = value

    return mutate


def _contradiction(doc, root):
    kp = _ann(doc, 10)["keypoints"]
    i = KEYPOINT_INDEX["above_left_elbow_end"]
    kp[3 * i + 2] = 2  # left_elbow is labelled too


def _dup_ann(doc, root):
    extra = copy.deepcopy(_ann(doc, 11))
    doc["annotations"].append(extra)


def _dup_img(doc, root):
    doc["images"].append(copy.deepcopy(_img(doc, 2)))


def _png_wrong_size(doc, root):
    write_png_mask(root / "masks" / "p13.png", np.ones((H + 1, W), bool))


def _png_not_image(doc, root):
    (root / "masks" / "p13.png").write_text("hello")


# (id, mutate, ann_id, image_id, field, message fragment)
BAD_ANNOTATIONS = [
    (
        "kp-count",
        lambda d, r: _set(_ann(d, 10), "keypoints", [0.0] * 51),
        10,
        "keypoints",
        "expected 75 numbers (25 keypoints x 3), got 51",
    ),
    ("kp-not-list", lambda d, r: _set(_ann(d, 11), "keypoints", "1 2 3"), 11, "keypoints", "got str"),
    ("kp-string", _kp(11, 4, "7"), 11, "keypoints", "must be a number"),
    ("kp-bool", _kp(11, 4, True), 11, "keypoints", "must be a number"),
    ("kp-null", _kp(11, 4, None), 11, "keypoints", "must be a number"),
    ("kp-nan", _kp(11, 3, math.nan), 11, "keypoints", "NaN"),
    ("kp-inf", _kp(11, 0, math.inf), 11, "keypoints", "infinite"),
    ("kp-huge", _kp(11, 0, 10**400), 11, "keypoints", "too large"),
    ("vis-3", _kp(11, 2, 3), 11, "keypoints", "visibility 3"),
    ("vis-half", _kp(11, 5, 0.5), 11, "keypoints", "visibility 0.5"),
    ("vis-negative", _kp(11, 5, -1), 11, "keypoints", "visibility -1"),
    ("far-right", _kp(11, 3 * 5, 1.5 * W + 0.1), 11, "keypoints", "outside"),
    ("far-above", _kp(11, 3 * 5 + 1, -0.5 * H - 0.1), 11, "keypoints", "outside"),
    ("kp-missing", lambda d, r: _ann(d, 12).pop("keypoints"), 12, "keypoints", "missing required key"),
    ("image-id-missing", lambda d, r: _ann(d, 12).pop("image_id"), 12, "image_id", "missing"),
    ("image-id-str", lambda d, r: _set(_ann(d, 12), "image_id", "2"), 12, "image_id", "integer"),
    ("image-id-unknown", lambda d, r: _set(_ann(d, 12), "image_id", 7), 12, "image_id", "unknown image id 7"),
    ("duplicate-ann", _dup_ann, 11, "id", "duplicate"),
    ("contradiction", _contradiction, 10, "keypoints", "left_arm"),
    (
        "rle-size",
        lambda d, r: _set(_ann(d, 10), "segmentation", mask_to_rle(np.ones((H, W + 4)))),
        10,
        "segmentation",
        "44x30",
    ),
    (
        "rle-runs",
        lambda d, r: _set(_ann(d, 11)["segmentation"], "counts", [5, 5]),
        11,
        "segmentation",
        "cover 10 pixels",
    ),
    (
        "rle-neg-run",
        lambda d, r: _set(_ann(d, 11)["segmentation"], "counts", [1200, -1, 1]),
        11,
        "segmentation",
        "non-negative",
    ),
    (
        "rle-bad-char",
        lambda d, r: _set(_ann(d, 10)["segmentation"], "counts", "~~~"),
        10,
        "segmentation",
        "invalid character",
    ),
    ("rle-truncated", lambda d, r: _set(_ann(d, 10)["segmentation"], "counts", "e"), 10, "segmentation", "truncated"),
    ("rle-no-size", lambda d, r: _ann(d, 10)["segmentation"].pop("size"), 10, "segmentation", "'size'"),
    ("rle-counts-type", lambda d, r: _set(_ann(d, 10)["segmentation"], "counts", 7), 10, "segmentation", "counts"),
    ("polygon-4", lambda d, r: _set(_ann(d, 12), "segmentation", [[1, 2, 3, 4]]), 12, "segmentation", "polygon 0"),
    (
        "polygon-odd",
        lambda d, r: _set(_ann(d, 12), "segmentation", [[1, 2, 3, 4, 5, 6, 7]]),
        12,
        "segmentation",
        "even",
    ),
    (
        "polygon-nan",
        lambda d, r: _set(_ann(d, 12), "segmentation", [[1, 2, 3, math.nan, 5, 6]]),
        12,
        "segmentation",
        "NaN",
    ),
    ("segm-type", lambda d, r: _set(_ann(d, 12), "segmentation", "mask.png"), 12, "segmentation", "got str"),
    ("png-size", _png_wrong_size, 13, "mask_path", "40x31"),
    ("png-missing", lambda d, r: _set(_ann(d, 13), "mask_path", "masks/nope.png"), 13, "mask_path", "not found"),
    ("png-missing-mask-key", lambda d, r: _set(_ann(d, 14), "mask", "nope.png"), 14, "mask", "not found"),
    ("png-not-image", _png_not_image, 13, "mask_path", "cannot read"),
    ("png-path-type", lambda d, r: _set(_ann(d, 13), "mask_path", 5), 13, "mask_path", "path string"),
    ("png-both-keys", lambda d, r: _set(_ann(d, 13), "mask", "masks/p13.png"), 13, "mask_path", "only one"),
    ("bbox-3", lambda d, r: _set(_ann(d, 10), "bbox", [1, 2, 3]), 10, "bbox", "4 numbers"),
    ("bbox-neg", lambda d, r: _set(_ann(d, 10), "bbox", [1, 2, -3, 4]), 10, "bbox", ">= 0"),
    ("bbox-nan", lambda d, r: _set(_ann(d, 10), "bbox", [1, 2, math.nan, 4]), 10, "bbox", "NaN"),
    ("num-kp-type", lambda d, r: _set(_ann(d, 10), "num_keypoints", "13"), 10, "num_keypoints", "integer"),
    ("num-kp-range", lambda d, r: _set(_ann(d, 10), "num_keypoints", 26), 10, "num_keypoints", "[0, 25]"),
    ("init-fit-missing", lambda d, r: _set(_ann(d, 15), "init_fit", "nope.npz"), 15, "init_fit", "not found"),
    ("init-fit-suffix", lambda d, r: _set(_ann(d, 15), "init_fit", "masks/p13.png"), 15, "init_fit", "unsupported"),
]


@pytest.mark.parametrize(
    ("mutate", "ann_id", "field", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_ANNOTATIONS],
)
def test_bad_annotation_raises_with_location(scene, mutate, ann_id, field, fragment):
    root, doc = scene
    mutate(doc, root)
    path = write(root, doc)
    with pytest.raises(DataError) as info:
        load_annotations(path)
    err = info.value
    msg = str(err)
    assert err.path == path and "annotations.json" in msg
    assert err.ann_id == ann_id and f"annotation {ann_id}" in msg
    assert err.field == field and f"field {field!r}" in msg
    assert fragment in msg
    assert isinstance(err, ValueError)

    # collect mode: only that person is dropped
    ds = load_annotations(path, on_error="collect")
    assert [e.ann_id for e in ds.errors] == [ann_id] * len(ds.errors) and ds.errors
    assert ann_id not in [p.ann_id for p in ds]
    expected_kept = {10, 11, 12, 13, 14, 15} - {ann_id}
    assert {p.ann_id for p in ds} == expected_kept


def test_message_format_exact(scene):
    root, doc = scene
    doc["annotations"][0]["id"] = 17
    doc["annotations"][0]["keypoints"] = [0.0] * 51
    path = write(root, doc)
    with pytest.raises(DataError) as info:
        load_annotations(path)
    assert str(info.value) == (
        f"{path}: annotation 17: field 'keypoints': expected 75 numbers (25 keypoints x 3), got 51"
    )
    assert info.value.reason == "expected 75 numbers (25 keypoints x 3), got 51"


def test_keypoints_at_margin_and_absent_far_away_are_accepted(scene):
    root, doc = scene
    kp = _ann(doc, 11)["keypoints"]
    kp[3 * 5 : 3 * 5 + 2] = [1.5 * W, -0.5 * H]  # exactly at the allowed margin
    kp[3 * 17 : 3 * 17 + 3] = [1e6, -1e6, 0]  # absent: coordinates are not checked
    ds = load_annotations(write(root, doc))
    assert ds.people[1].keypoints_px[5, 0] == 1.5 * W


@pytest.mark.parametrize(
    ("mutate", "image_id", "field", "fragment"),
    [
        pytest.param(lambda d: _set(_img(d, 1), "width", 0), 1, "width", "positive", id="width-0"),
        pytest.param(lambda d: _set(_img(d, 1), "height", -5), 1, "height", "positive", id="height-neg"),
        pytest.param(lambda d: _set(_img(d, 1), "width", "40"), 1, "width", "integer", id="width-str"),
        pytest.param(lambda d: _set(_img(d, 1), "width", 40.0), 1, "width", "integer", id="width-float"),
        pytest.param(lambda d: _img(d, 1).pop("file_name"), 1, "file_name", "missing", id="no-file-name"),
        pytest.param(lambda d: _img(d, 1).pop("height"), 1, "height", "missing", id="no-height"),
        pytest.param(lambda d: _set(_img(d, 1)["camera"], "fx", -500.0), 1, "camera", "positive", id="fx-neg"),
        pytest.param(lambda d: _set(_img(d, 1)["camera"], "fy", 0), 1, "camera", "positive", id="fy-0"),
        pytest.param(lambda d: _img(d, 1)["camera"].pop("cy"), 1, "camera", "cy", id="no-cy"),
        pytest.param(lambda d: _set(_img(d, 1)["camera"], "cx", "20"), 1, "camera", "'cx'", id="cx-str"),
        pytest.param(lambda d: _set(_img(d, 1)["camera"], "cx", math.nan), 1, "camera", "finite", id="cx-nan"),
        pytest.param(lambda d: _set(_img(d, 2), "K", [[600, 0, 1], [0, 600, 1]]), 2, "K", "3x3", id="K-2x3"),
        pytest.param(
            lambda d: _set(_img(d, 2), "K", [[600, 3, 1], [0, 600, 1], [0, 0, 1]]), 2, "K", "skew", id="K-skew"
        ),
        pytest.param(
            lambda d: _set(_img(d, 2), "K", [[600, 0, 1], [0, 600, 1], [0, 0, "1"]]), 2, "K", "numbers", id="K-str"
        ),
        pytest.param(
            lambda d: _set(_img(d, 2), "K", [[600, 0, 1], [0, 600, 1], [0, 0, None]]), 2, "K", "numbers", id="K-null"
        ),
        pytest.param(
            lambda d: _set(_img(d, 2), "K", [[-6, 0, 1], [0, 600, 1], [0, 0, 1]]), 2, "K", "positive", id="K-neg"
        ),
        pytest.param(
            lambda d: _set(_img(d, 3), "intrinsics", {"K": [[0, 0, 1], [0, 1, 1], [0, 0, 1]]}),
            3,
            "intrinsics",
            "positive",
            id="intr-K-0",
        ),
        pytest.param(lambda d: _set(_img(d, 3), "camera", "pinhole"), 3, "camera", "got str", id="camera-str"),
        pytest.param(
            lambda d: _set(_img(d, 1), "K", [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
            1,
            "camera",
            "only one",
            id="two-cameras",
        ),
        pytest.param(lambda d: d["images"].append(copy.deepcopy(_img(d, 2))), 2, "id", "duplicate", id="dup-image"),
    ],
)
def test_bad_image_raises_with_location(scene, mutate, image_id, field, fragment):
    root, doc = scene
    mutate(doc)
    path = write(root, doc)
    with pytest.raises(DataError) as info:
        load_annotations(path)
    err = info.value
    assert err.path == path and err.image_id == image_id and err.field == field
    assert f"image {image_id}" in str(err) and f"field {field!r}" in str(err)
    assert fragment in str(err)

    # collect: the image and its people are dropped, the rest kept
    ds = load_annotations(path, on_error="collect")
    assert image_id not in ds.images
    assert all(p.image_id != image_id for p in ds)
    dropped = {a["id"] for a in doc["annotations"] if a["image_id"] == image_id}
    assert {p.ann_id for p in ds} == {10, 11, 12, 13, 14, 15} - dropped
    assert {e.ann_id for e in ds.errors if e.ann_id is not None} == dropped
    assert any(e.image_id == image_id for e in ds.errors)


def test_annotation_without_usable_id(scene):
    root, doc = scene
    doc["annotations"][1].pop("id")
    doc["annotations"][2]["id"] = "twelve"
    doc["annotations"][3] = [1, 2, 3]
    path = write(root, doc)
    with pytest.raises(DataError) as info:
        load_annotations(path)
    assert info.value.ann_id is None and info.value.field == "id"
    assert "annotations[1]" in str(info.value) and "missing" in str(info.value)
    ds = load_annotations(path, on_error="collect")
    assert [p.ann_id for p in ds] == [10, 14, 15]
    assert [e.item for e in ds.errors] == ["annotations[1]", "annotations[2]", "annotations[3]"]
    assert "integer" in str(ds.errors[1]) and "expected an object" in str(ds.errors[2])


def test_image_entry_without_id(scene):
    root, doc = scene
    doc["images"][2].pop("id")
    path = write(root, doc)
    with pytest.raises(DataError) as info:
        load_annotations(path)
    assert info.value.item == "images[2]" and info.value.field == "id"
    ds = load_annotations(path, on_error="collect")
    # image 3 is unknown now: its people fail with an unknown-image error
    assert {e.ann_id for e in ds.errors if e.ann_id} == {14, 15}
    assert all("unknown image id 3" in str(e) for e in ds.errors if e.ann_id)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param('{"images": [],\n "annotations": [\n  {"id": 1,, }]}', "line 3, column", id="syntax"),
        pytest.param('{"images": [], "annotations": [', "malformed JSON", id="truncated"),
        pytest.param("", "line 1, column 1", id="empty"),
        pytest.param("[1, 2]", "top level", id="top-list"),
        pytest.param('{"annotations": []}', "'images'", id="no-images"),
        pytest.param('{"images": [], "annotations": {}}', "expected a list", id="ann-dict"),
        pytest.param('{"images": 3, "annotations": []}', "expected a list", id="images-int"),
        pytest.param(
            '{"images": [], "annotations": [], "categories": [{"keypoints": ["a"]}]}',
            "categories[0]",
            id="categories-17",
        ),
        pytest.param('{"images": [], "annotations": [], "categories": 5}', "'categories'", id="categories-int"),
        pytest.param("[" * 100000, "malformed JSON", id="deep"),
    ],
)
def test_file_level_errors_always_raise(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    for mode in ("raise", "collect"):
        with pytest.raises(DataError) as info:
            load_annotations(path, on_error=mode)
        assert "bad.json" in str(info.value) and fragment in str(info.value)
        assert info.value.ann_id is None


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        load_annotations(tmp_path / "nope.json")
    assert info.value.path.name == "nope.json"
    (tmp_path / "latin.json").write_bytes(b'{"images": "\xe9"}')
    with pytest.raises(DataError, match="UTF-8"):
        load_annotations(tmp_path / "latin.json")
    with pytest.raises(ValueError, match="on_error"):
        load_annotations(tmp_path / "latin.json", on_error="skip")


def test_collect_mode_with_several_bad_people(scene):
    root, doc = scene
    _ann(doc, 10)["keypoints"] = [1.0] * 74
    _ann(doc, 13)["mask_path"] = "gone.png"
    _set(_img(doc, 3), "width", -1)
    ds = load_annotations(write(root, doc), on_error="collect")
    assert [p.ann_id for p in ds] == [11, 12]
    assert [(e.image_id, e.ann_id, e.field) for e in ds.errors] == [
        (3, None, "width"),
        (None, 10, "keypoints"),
        (None, 13, "mask_path"),
        (None, 14, "image_id"),
        (None, 15, "image_id"),
    ]
    assert all(isinstance(e, DataError) and "annotations.json" in str(e) for e in ds.errors)


def test_intrinsics_api():
    k = Intrinsics.default_for(640, 480)
    assert k == Intrinsics(5000.0, 5000.0, 320.0, 240.0)
    assert Intrinsics.from_matrix(k.as_matrix()) == k
    with pytest.raises(DataError, match="positive"):
        Intrinsics(fx=0.0, fy=1.0, cx=0.0, cy=0.0)
    with pytest.raises(DataError, match="positive"):
        Intrinsics.default_for(640, 480, focal_px=-1.0)
    assert ImageRecord(1, "x", 10, 20).intrinsics_or_default(100.0) == Intrinsics(100.0, 100.0, 5.0, 10.0)
