"""The plan of a run over people seen in several images (``jobs.subject_jobs``, ``plan_fit``):
one job per person with a ``person_id`` shared by several annotations, in annotation-file order,
``max_views`` keeps the first images, a finished subject folder is skipped and a half-written one
refitted; a person's images that cannot be loaded fail that person only."""

from __future__ import annotations

import json
from pathlib import Path

from test_jobs import finished_folder

from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.sample import sample_annotations_path
from resihmr_dr.failures import FailureStage
from resihmr_dr.fit.pipeline import PipelineConfig
from resihmr_dr.fit.views import ViewsConfig
from resihmr_dr.jobs import Job, load_job, plan_fit
from resihmr_dr.outputs import SUBJECT_FILES, subject_folder_name

SAMPLE_DIR = sample_annotations_path().parent


def subjects_file(folder: Path, person_ids: list[str | None], *, missing: tuple[int, ...] = ()) -> Path:
    """The sample person once per entry of ``person_ids`` (ann ids and image ids 1..n, each its own
    image entry); ``missing``: ann ids whose image file is absent."""
    doc = json.loads(sample_annotations_path().read_text())
    base, image = doc["annotations"][0], doc["images"][0]
    anns, images = [], []
    for i, pid in enumerate(person_ids, start=1):
        ann = dict(base, id=i, image_id=i)
        if pid is not None:
            ann["person_id"] = pid
        anns.append(ann)
        images.append(dict(image, id=i, file_name=f"missing{i}.png" if i in missing else image["file_name"]))
    doc["annotations"], doc["images"] = anns, images
    for name in ("image.png", "mask.png"):
        (folder / name).write_bytes((SAMPLE_DIR / name).read_bytes())
    path = folder / "people.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_person_of_several_images_is_one_job_in_file_order(tmp_path):
    dataset = load_annotations(subjects_file(tmp_path, [None, "a", "b", "a", "b", "b", "c"]))
    plan = plan_fit(dataset, out_dir=tmp_path / "out", overwrite=False)
    assert [(job.person.ann_id, [p.ann_id for p in job.views]) for job in plan.todo] == [
        (1, []),
        (2, [2, 4]),
        (3, [3, 5, 6]),
        (7, []),  # one image with a person_id: today's single-image job and folder
    ]
    assert [job.folder for job in plan.todo] == ["image1_ann1", "subject_a", "subject_b", "image7_ann7"]
    assert [job.position for job in plan.todo] == [0, 1, 2, 6]


def test_max_views_keeps_the_first_images(tmp_path):
    dataset = load_annotations(subjects_file(tmp_path, ["a", "a", "a"]))
    two = PipelineConfig(views=ViewsConfig(max_views=2))
    (job,) = plan_fit(dataset, out_dir=tmp_path / "out", overwrite=False, fit_config=two).todo
    assert [p.ann_id for p in job.views] == [1, 2]
    one = PipelineConfig(views=ViewsConfig(max_views=1))
    (job,) = plan_fit(dataset, out_dir=tmp_path / "out", overwrite=False, fit_config=one).todo
    assert job.views == () and job.folder == "image1_ann1"


def test_finished_subject_is_skipped_and_a_partial_one_refitted(tmp_path):
    dataset = load_annotations(subjects_file(tmp_path, ["a", "a"]))
    out = tmp_path / "out"
    folder = out / subject_folder_name("a")
    finished_folder(folder / "views" / "image1_ann1")
    assert len(plan_fit(dataset, out_dir=out, overwrite=False).todo) == 1  # a view and the subject files missing
    finished_folder(folder / "views" / "image2_ann2", quality={"ok": False, "problems": ["keypoint error"]})
    for name in SUBJECT_FILES:
        (folder / name).write_text("{}")
    plan = plan_fit(dataset, out_dir=out, overwrite=False)
    assert plan.todo == () and plan.skipped == ("subject_a",)
    [(position, failure)] = plan.failures
    assert position == 0 and failure.ann_id == 2 and failure.stage is FailureStage.QUALITY
    assert failure.folder == "subject_a/views/image2_ann2"
    assert len(plan_fit(dataset, out_dir=out, overwrite=True).todo) == 1


def test_subject_folder_names_are_safe():
    assert subject_folder_name("p0001") == "subject_p0001"
    assert subject_folder_name("ab/../c d") == "subject_ab_.._c_d"


def test_an_image_that_cannot_be_loaded_fails_its_person_only(tmp_path):
    dataset = load_annotations(subjects_file(tmp_path, ["a", "a", "b", "b"], missing=(2,)))
    jobs = plan_fit(dataset, out_dir=tmp_path / "out", overwrite=False).todo
    results = [load_job(job, dataset=dataset, body=_NoBody()) for job in jobs]
    assert results[0].failure is not None and results[0].failure.stage is FailureStage.LOAD
    assert results[0].failure.folder == "subject_a"
    assert "missing2.png" in results[0].failure.reason
    assert results[1].failure is None and len(results[1].view_inputs) == 2
    assert isinstance(jobs[0], Job) and jobs[0].multi_view


class _NoBody:
    """Loading a person needs the body only for another method's initial fit (none here)."""


def _two_camera_file(folder: Path, body) -> Path:
    """A person of the tiny SMPL-X model (right transtibial) seen by two calibrated cameras 90° apart:
    PNG images and masks, keypoints with the residual endpoint, ``person_id`` and ``R``, ``t``."""
    import math

    import numpy as np
    import roma
    import torch
    from PIL import Image
    from synthetic_people import CAMERA, make_person

    from resihmr_dr.data.ldpose import LimbStatus
    from resihmr_dr.data.records import Extrinsics
    from resihmr_dr.fit.views import params_in_camera
    from resihmr_dr.render.zbuffer import rasterize

    params = body.default_params(1, depth_m=3.2)
    pose = torch.zeros_like(params.body_pose)
    pose[0, body.pose_joint_names.index("left_shoulder"), 2] = -0.9
    pose[0, body.pose_joint_names.index("right_shoulder"), 2] = 0.9
    params = params.replace(body_pose=pose, transl=torch.tensor([[0.0, 0.1, 3.2]]))
    with torch.no_grad():
        centre = body(params).joints[0, 0].double().numpy()
    rot = roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(90.0), 0.0], dtype=torch.float64)).numpy()
    cameras = [Extrinsics(R=np.eye(3), t=np.zeros(3)), Extrinsics(R=rot, t=centre - rot @ centre)]
    images, anns = [], []
    for k, ext in enumerate(cameras, start=1):
        view = params_in_camera(body, params, ext)
        person, _ = make_person(body, view, {"right_leg": (LimbStatus.TRANSTIBIAL, 0.5)})
        with torch.no_grad():
            out = body(view)
        mask = rasterize(verts_cam=out.verts[0].double(), faces=body.faces, camera=CAMERA).mask.numpy()
        Image.fromarray(np.full((CAMERA.height, CAMERA.width, 3), 128, np.uint8)).save(folder / f"image{k}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"mask{k}.png")
        camera = {"fx": CAMERA.fx, "fy": CAMERA.fy, "cx": CAMERA.cx, "cy": CAMERA.cy}
        camera |= {"R": ext.R.tolist(), "t": ext.t.tolist()}
        images.append(
            {"id": k, "file_name": f"image{k}.png", "width": CAMERA.width, "height": CAMERA.height, "camera": camera}
        )
        anns.append(
            {
                "id": k,
                "image_id": k,
                "category_id": 1,
                "person_id": "p1",
                "keypoints": np.asarray(person.keypoints_px).reshape(-1).tolist(),
                "mask_path": f"mask{k}.png",
            }
        )
    path = folder / "two_cameras.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path


def test_a_person_of_two_images_is_written_as_one_subject_and_resumed(tmp_path, tiny_smplx_body):
    from synthetic_people import FAST_PIPELINE

    from resihmr_dr.batch import fit_dataset
    from resihmr_dr.outputs import KEYPOINT_RESULTS_FILE, OUTPUT_FILES
    from resihmr_dr.results import read_person

    dataset = load_annotations(_two_camera_file(tmp_path, tiny_smplx_body))
    out = tmp_path / "out"
    summary = fit_dataset(dataset, body=tiny_smplx_body, out_dir=out, config=FAST_PIPELINE, progress=False)
    assert summary.written == ["subject_p1"] and summary.ok, summary.failures
    folder = out / "subject_p1"
    assert all((folder / name).is_file() for name in SUBJECT_FILES)
    subject = json.loads((folder / "subject.json").read_text())
    assert subject["mode"] == "calibrated" and subject["num_views"] == 2
    assert [v["folder"] for v in subject["views"]] == ["views/image1_ann1", "views/image2_ann2"]
    fitted = [read_person(folder / "views" / f"image{k}_ann{k}") for k in (1, 2)]
    for k, person in enumerate(fitted, start=1):
        assert all((folder / "views" / f"image{k}_ann{k}" / name).is_file() for name in OUTPUT_FILES)
        assert person.limbs[0].lam == subject["views"][k - 1]["lambda"][0]
    assert [r["ann_id"] for r in json.loads((out / KEYPOINT_RESULTS_FILE).read_text())] == [1, 2]
    again = fit_dataset(dataset, body=tiny_smplx_body, out_dir=out, config=FAST_PIPELINE, progress=False)
    assert again.written == [] and again.skipped == ["subject_p1"]


def test_lightning_fits_a_person_of_two_images_as_one_item(tmp_path, tiny_smplx_body):
    import lightning.pytorch as pl
    from synthetic_people import FAST_PIPELINE

    from resihmr_dr.lightning import LDposeDataModule, PersonWriter, ResihmrFitModule

    dataset = load_annotations(_two_camera_file(tmp_path, tiny_smplx_body))
    out = tmp_path / "out"
    data = LDposeDataModule(dataset, body=tiny_smplx_body, out_dir=out, fit_config=FAST_PIPELINE)
    assert len(data.plan.todo) == 1 and data.plan.todo[0].multi_view  # one item: DDP spreads people, not views
    writer = PersonWriter(out, plan=data.plan)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        inference_mode=False,
        default_root_dir=str(tmp_path / "logs"),
    )
    trainer.predict(ResihmrFitModule(tiny_smplx_body, FAST_PIPELINE), datamodule=data, return_predictions=False)
    assert writer.summary is not None and writer.summary.written == ["subject_p1"], writer.summary
    assert all((out / "subject_p1" / "views" / f"image{k}_ann{k}" / "metrics.json").is_file() for k in (1, 2))


def test_fit_flags_set_what_the_images_share():
    from resihmr_dr.cli import _views_from_args, build_parser

    parse = build_parser().parse_args
    base = ViewsConfig(same_pose=False, use_extrinsics=True, max_views=0)
    plain = parse(["fit", "--annotations", "a.json", "--out", "o"])
    assert _views_from_args(plain, base) == base  # no flag: the config's values stay
    flagged = parse(["fit", "--annotations", "a.json", "--out", "o", "--same-pose", "--ignore-extrinsics"])
    assert _views_from_args(flagged, base) == ViewsConfig(same_pose=True, use_extrinsics=False)
    assert _views_from_args(parse(["fit", "--annotations", "a", "--out", "o", "--max-views", "2"]), base).max_views == 2
