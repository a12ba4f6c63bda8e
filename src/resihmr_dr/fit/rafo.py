"""RAFO — Residual Anchor-Factor Optimisation (ResiHMR stage 2).

For each residual limb the endpoint of the residual limb is a point on the segment from the
anchor joint ``J_a`` to the next joint ``J_t`` of the fitted intact body (camera frame, metres):

    R_r = J_a + lam_r (J_t - J_a),   lam_r in [lam_min, lam_max]

``lam_r`` and ``J_a`` are optimised (``J_t`` stays fixed) with L-BFGS (strong-Wolfe line search)
under

    E = rho(|pi(R_r) - k_r|^2 / s_px^2)                       reprojection of the endpoint
      + |J_a - J_a^init|^2 / sigma_anchor^2                    (the paper's alpha term)
      + (|J_t - J_a| - |J_t - J_a^init|)^2 / sigma_length^2    (the paper's mu term)
      + (|J_t - J_a| - L_H)^2 / (sigma_anthro L_H)^2           anthropometric length prior
      [ + |pi(J_a) - k_a|^2 / s_a_px^2 ]                       optional anchor keypoint (not in the paper)

where ``k_r`` is the endpoint keypoint (pixels), ``pi`` the pinhole projection, ``L_H`` the
expected segment length for the body height (:mod:`resihmr_dr.fit.anthropometry`).

Normalisation: every term is a squared length divided by a squared length scale, so ``E`` is
dimensionless. The reprojection residual (pixels) is divided by ``s_px = reproj_sigma_m * f / z``,
the size in pixels of ``reproj_sigma_m`` at the depth ``z`` of the initial segment; the trade-off
against the metric priors is thus the same for any image size (256-4000 px) and focal length.
In the paper's notation (reprojection weight 1, in metres at the segment's depth),
``alpha = (reproj_sigma_m / anchor_sigma_m)^2`` and ``mu = (reproj_sigma_m / length_sigma_m)^2``.

Each limb is solved independently (as in the paper); one call handles all residual limbs of a
person. A solution is accepted when the endpoint's reprojection error is below
``RafoConfig.accept_px`` (the paper's 15 px) and its anchor moved at most ``max_anchor_shift_m``;
otherwise the result carries a closed-form fallback (:func:`closed_form_lambda`: the lam whose
point projects closest to ``k_r``, clamped to the bounds, on the initial segment) with
``accepted=False`` and a reason.

Frames: camera frame is OpenCV (x right, y down, z forward), metres; pixels are image pixels.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from resihmr_dr.camera import IN_FRONT_DEPTH_M, PinholeCamera
from resihmr_dr.data.ldpose import KEYPOINT_NAMES, LIMBS, Limb, LimbStatus
from resihmr_dr.fit.anthropometry import expected_segment_length_m

__all__ = [
    "RafoConfig",
    "RafoResult",
    "ResidualLimbInput",
    "closed_form_lambda",
    "endpoint_on_segment",
    "inputs_from_joints",
    "lambda_from_logit",
    "logit_from_lambda",
    "rafo_energy_terms",
    "solve_rafo",
]

_DTYPE = torch.float64  # the solve runs in double precision; results come back in the input dtype


@dataclass(frozen=True)
class RafoConfig:
    """Weights, bounds and stopping rules of RAFO. All lengths in metres, pixels in image pixels.

    Attributes:
        lam_min, lam_max: bounds of lam (0 <= lam_min < lam_max <= 1). lam = 1 puts the endpoint
            on the next joint J_t; lam_min > 0 keeps a residual limb from vanishing.
        lam_init: initial lam (the paper: 0.5), strictly inside the bounds.
        reproj_sigma_m: length scale of the reprojection term, measured at the segment's depth
            (5 mm: at 3 m and f = 1000 px, 1.7 px). Smaller = the endpoint follows k_r harder.
        robust_scale_m: None for a plain squared reprojection error, else the scale (metres at
            the segment's depth) of a Geman-McClure penalty that flattens beyond it.
        anchor_sigma_m: how far the anchor may move from its initial position (alpha term).
        length_sigma_m: tolerated change of the segment length |J_t - J_a| (mu term).
        anthro_sigma_frac: relative width of the anthropometric length prior (0.25 = 25 % of the
            expected length, i.e. a weak prior: body-model rigs differ from Winter's ratios by up
            to ~17 %, e.g. Anny's upper arm). None disables the prior.
        anchor_reproj_sigma_m: scale of the optional anchor-keypoint term (not in the paper),
            used only for inputs that carry ``anchor_px``; None disables it. It pins the anchor's
            image, which resolves the shift along the segment that one endpoint keypoint cannot.
        iterations: L-BFGS iteration limit per limb.
        tolerance_grad, tolerance_change: L-BFGS convergence stops (gradient / change of E).
        history_size: L-BFGS memory.
        accept_px: accept a solution whose endpoint reprojection error is below this (paper: 15 px).
        max_anchor_shift_m: ... and whose anchor moved at most this far. With a plain squared
            reprojection term a keypoint far off the segment is otherwise "reached" by dragging
            the anchor (a shoulder moved 40 cm); such solutions get the fallback instead.
        min_segment_length_m: segments shorter than this are degenerate (no optimisation).
        bound_tolerance: lam within this of a bound, with the keypoint beyond it, is "clamped".
    """

    lam_min: float = 0.05
    lam_max: float = 1.0
    lam_init: float = 0.5
    reproj_sigma_m: float = 0.005
    robust_scale_m: float | None = None
    anchor_sigma_m: float = 0.05
    length_sigma_m: float = 0.02
    anthro_sigma_frac: float | None = 0.25
    anchor_reproj_sigma_m: float | None = 0.01
    iterations: int = 100
    tolerance_grad: float = 1e-9
    tolerance_change: float = 1e-12
    history_size: int = 20
    accept_px: float = 15.0
    max_anchor_shift_m: float = 0.10
    min_segment_length_m: float = 0.01
    bound_tolerance: float = 1e-3

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"RafoConfig.{name} must be a finite positive number, got {value!r}")

        for name in (
            "reproj_sigma_m",
            "anchor_sigma_m",
            "length_sigma_m",
            "tolerance_grad",
            "tolerance_change",
            "accept_px",
            "max_anchor_shift_m",
            "min_segment_length_m",
            "bound_tolerance",
        ):
            positive(name)
        for name in ("robust_scale_m", "anthro_sigma_frac", "anchor_reproj_sigma_m"):
            if getattr(self, name) is not None:
                positive(name)
        for name in ("iterations", "history_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"RafoConfig.{name} must be an integer >= 1, got {value!r}")
        if not (0.0 <= self.lam_min < self.lam_max <= 1.0):
            raise ValueError(
                f"RafoConfig needs 0 <= lam_min < lam_max <= 1, got lam_min={self.lam_min}, lam_max={self.lam_max}"
            )
        if not (self.lam_min < self.lam_init < self.lam_max):
            raise ValueError(
                f"RafoConfig.lam_init={self.lam_init} must lie strictly inside ({self.lam_min}, {self.lam_max})"
            )


@dataclass(frozen=True)
class ResidualLimbInput:
    """One residual limb to solve.

    limb: the LDpose limb; status: its residual status (fixes the segment, see
    ``Limb.segment_joints``); anchor_cam (3,): initial anchor J_a^init (shoulder / hip for
    transhumeral / transfemoral, elbow / knee for transradial / transtibial) and target_cam (3,):
    the next joint J_t, both from the fitted intact body, camera frame, metres; endpoint_px (2,):
    the residual-endpoint keypoint k_r in pixels; anchor_px (2,) or None: the anchor joint's own
    keypoint in pixels (optional extension, see ``RafoConfig.anchor_reproj_sigma_m``).
    """

    limb: Limb
    status: LimbStatus
    anchor_cam: torch.Tensor
    target_cam: torch.Tensor
    endpoint_px: torch.Tensor
    anchor_px: torch.Tensor | None = None


@dataclass(frozen=True)
class RafoResult:
    """RAFO's answer for one residual limb (tensors detached, in the input's dtype and device).

    lam: the anchor factor; anchor_cam (3,): the optimised anchor J_a (the initial one for a
    fallback); endpoint_cam (3,) = anchor + lam (target - anchor); target_cam (3,): J_t
    (unchanged); reproj_error_px: |pi(endpoint) - k_r| in pixels; accepted: the optimum has
    reproj_error_px < accept_px and moved the anchor at most max_anchor_shift_m; clamped: k_r
    lies beyond a lam bound (lam set to the bound);
    fallback: the closed-form fallback (or, for a degenerate segment, the initial guess) was
    returned instead of the optimum; reason: a human-readable note; iterations: L-BFGS
    iterations; solve_time_s: wall time of this limb.
    """

    limb_name: str
    status: LimbStatus
    lam: float
    anchor_cam: torch.Tensor
    endpoint_cam: torch.Tensor
    target_cam: torch.Tensor
    reproj_error_px: float
    accepted: bool
    clamped: bool
    fallback: bool
    reason: str
    iterations: int
    solve_time_s: float

    def to_dict(self) -> dict:
        """JSON-friendly dict (tensors as lists, the status as its string value)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().tolist()
            elif isinstance(value, LimbStatus):
                value = value.value
            out[field.name] = value
        return out


# ----------------------------------------------------------------------------- pure maths


def lambda_from_logit(logit: torch.Tensor, *, lam_min: float, lam_max: float) -> torch.Tensor:
    """(N,) unbounded parameter -> (N,) lam = lam_min + (lam_max - lam_min) sigmoid(logit)."""
    return lam_min + (lam_max - lam_min) * torch.sigmoid(logit)


def logit_from_lambda(lam: torch.Tensor, *, lam_min: float, lam_max: float) -> torch.Tensor:
    """Inverse of :func:`lambda_from_logit` for lam strictly inside the bounds."""
    return torch.logit((lam - lam_min) / (lam_max - lam_min))


def endpoint_on_segment(anchor_cam: torch.Tensor, target_cam: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """(N, 3) R = J_a + lam (J_t - J_a) for (N, 3) anchors, (N, 3) targets and (N,) lam."""
    return anchor_cam + lam[..., None] * (target_cam - anchor_cam)


def _safe_norm(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(..., 3) -> (...) Euclidean norm with a finite gradient at 0."""
    return torch.sqrt((v * v).sum(-1) + eps)


def rafo_energy_terms(
    *,
    lam: torch.Tensor,
    anchor_cam: torch.Tensor,
    anchor_init_cam: torch.Tensor,
    target_cam: torch.Tensor,
    endpoint_px: torch.Tensor,
    camera: PinholeCamera,
    px_per_m: torch.Tensor,
    expected_length_m: torch.Tensor | None,
    config: RafoConfig,
    anchor_px: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The dimensionless RAFO terms per limb (see the module docstring).

    Args:
        lam: (N,); anchor_cam, anchor_init_cam, target_cam: (N, 3) camera frame, metres;
        endpoint_px: (N, 2) keypoints k_r in pixels; px_per_m: (N,) pixels per metre at each
        segment's depth (f / z); expected_length_m: (N,) anthropometric lengths, or None;
        anchor_px: optional (N, 2) keypoints of the anchor joints in pixels (rows with NaN are
        ignored), used only when ``config.anchor_reproj_sigma_m`` is set.

    Returns:
        {"reproj", "anchor", "length", "anthro", "anchor_reproj"} -> (N,) tensors (the last two
        are 0 when disabled).
    """
    endpoint_cam = endpoint_on_segment(anchor_cam, target_cam, lam)
    err2 = ((camera.project(endpoint_cam) - endpoint_px) ** 2).sum(-1) / (config.reproj_sigma_m * px_per_m) ** 2
    if config.robust_scale_m is not None:  # Geman-McClure, in units of reproj_sigma_m
        c2 = (config.robust_scale_m / config.reproj_sigma_m) ** 2
        err2 = c2 * err2 / (c2 + err2)
    anchor = ((anchor_cam - anchor_init_cam) ** 2).sum(-1) / config.anchor_sigma_m**2
    length = _safe_norm(target_cam - anchor_cam)
    length_init = _safe_norm(target_cam - anchor_init_cam)
    length_term = (length - length_init) ** 2 / config.length_sigma_m**2
    if expected_length_m is None or config.anthro_sigma_frac is None:
        anthro = torch.zeros_like(length)
    else:
        anthro = ((length - expected_length_m) / (config.anthro_sigma_frac * expected_length_m)) ** 2
    anchor_reproj = torch.zeros_like(length)
    if anchor_px is not None and config.anchor_reproj_sigma_m is not None:
        seen = torch.isfinite(anchor_px).all(-1)
        diff = camera.project(anchor_cam) - torch.where(seen[:, None], anchor_px, torch.zeros_like(anchor_px))
        a2 = (diff**2).sum(-1) / (config.anchor_reproj_sigma_m * px_per_m) ** 2
        anchor_reproj = torch.where(seen, a2, anchor_reproj)
    return {"reproj": err2, "anchor": anchor, "length": length_term, "anthro": anthro, "anchor_reproj": anchor_reproj}


def _projected_fraction_to_lambda(s: torch.Tensor, z_a: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """Fraction s along the projected segment -> fraction lam along the 3D segment (perspective).

    A point at 3D fraction lam projects at s = lam z_t / (z_a + lam (z_t - z_a)); the inverse is
    lam = s z_a / (s z_a + (1 - s) z_t). Past the vanishing point (denominator <= 0) the point
    lies infinitely far along the 3D line: +inf for s > 1, -inf for s < 0.
    """
    denom = s * z_a + (1.0 - s) * z_t
    inf = torch.full_like(s, math.inf)
    beyond = torch.where(s > 1.0, inf, -inf)
    return torch.where(denom > 0, s * z_a / torch.where(denom > 0, denom, torch.ones_like(denom)), beyond)


def _lambda_to_projected_fraction(lam: torch.Tensor, z_a: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    return lam * z_t / (z_a + lam * (z_t - z_a))


def closed_form_lambda(
    *,
    anchor_cam: torch.Tensor,
    target_cam: torch.Tensor,
    endpoint_px: torch.Tensor,
    camera: PinholeCamera,
    lam_min: float,
    lam_max: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The lam whose segment point projects closest to k_r (closed form, perspective-exact).

    The image of the 3D line J_a + lam (J_t - J_a) is the 2D line through pi(J_a), pi(J_t); the
    closest image point to k_r is its orthogonal projection at 2D fraction s, mapped back to the
    3D fraction lam (see :func:`_projected_fraction_to_lambda`). Clamping s to the images of the
    bounds equals clamping lam, since s(lam) is increasing for points in front of the camera.

    Args:
        anchor_cam, target_cam: (N, 3) camera frame, metres, positive depth; endpoint_px: (N, 2).

    Returns:
        (lam_clamped (N,), lam_raw (N,) unclamped, possibly +-inf, valid (N,) bool). ``valid`` is
        False where the segment projects to (almost) a point; there lam_raw is NaN and
        lam_clamped is the midpoint of the bounds.
    """
    a2 = camera.project(anchor_cam)
    t2 = camera.project(target_cam)
    d = t2 - a2
    dd = (d * d).sum(-1)
    valid = dd > 1e-12
    s = ((endpoint_px - a2) * d).sum(-1) / torch.where(valid, dd, torch.ones_like(dd))
    z_a, z_t = anchor_cam[..., 2], target_cam[..., 2]
    lam_raw = _projected_fraction_to_lambda(s, z_a, z_t)
    lo = torch.full_like(s, lam_min)
    hi = torch.full_like(s, lam_max)
    s_clamped = torch.minimum(
        torch.maximum(s, _lambda_to_projected_fraction(lo, z_a, z_t)), _lambda_to_projected_fraction(hi, z_a, z_t)
    )
    lam = _projected_fraction_to_lambda(s_clamped, z_a, z_t).clamp(lam_min, lam_max)
    mid = torch.full_like(s, 0.5 * (lam_min + lam_max))
    return torch.where(valid, lam, mid), torch.where(valid, lam_raw, torch.full_like(s, math.nan)), valid


# ----------------------------------------------------------------------------- input handling


def _as_vector(value: object, size: int, what: str, limb_name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{limb_name}: {what} is not a numeric array ({exc})") from None
    if t.shape != (size,):
        raise ValueError(f"{limb_name}: {what} must have shape ({size},), got {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{limb_name}: {what} must be real-valued, got dtype {t.dtype}")
    t = t.detach().to(device="cpu", dtype=_DTYPE)
    if not torch.isfinite(t).all():
        raise ValueError(f"{limb_name}: {what} contains NaN or infinite values: {t.tolist()}")
    return t


def _validate(limbs: Sequence[ResidualLimbInput], body_height_m: float) -> None:
    if not (isinstance(body_height_m, (int, float)) and math.isfinite(body_height_m) and body_height_m > 0):
        raise ValueError(f"body_height_m must be a finite positive number of metres, got {body_height_m!r}")
    seen: set[str] = set()
    for item in limbs:
        if not isinstance(item, ResidualLimbInput):
            raise TypeError(f"expected ResidualLimbInput items, got {type(item).__name__}")
        if not isinstance(item.limb, Limb):
            raise TypeError(f"ResidualLimbInput.limb must be a Limb, got {type(item.limb).__name__}")
        name = item.limb.name
        if name in seen:
            raise ValueError(f"{name}: given twice; a limb has at most one residual endpoint")
        seen.add(name)
        try:
            item.limb.segment_joints(LimbStatus(item.status))
        except ValueError as exc:
            raise ValueError(f"{name}: invalid status {item.status!r} ({exc})") from None


# ----------------------------------------------------------------------------- the solver


def solve_rafo(
    limbs: Sequence[ResidualLimbInput],
    *,
    camera: PinholeCamera,
    body_height_m: float,
    config: RafoConfig = RafoConfig(),
) -> list[RafoResult]:
    """Solve RAFO for each residual limb of one person, independently; results in input order.

    Args:
        limbs: the residual limbs (each limb at most once).
        camera: the image's pinhole camera (OpenCV frame).
        body_height_m: the person's standing height (metres), for the anthropometric prior.
        config: weights, bounds and stops.

    Raises:
        ValueError: naming the limb, for NaN / infinite / wrongly shaped inputs, joints at or
            behind the camera plane, a status that is not a residual status of that limb, or a
            limb given twice; also for a bad ``body_height_m``.

    Degenerate but valid inputs never raise: a zero-length segment, a keypoint beyond a lam
    bound (``clamped=True``), or one far off the segment (``accepted=False`` with the fallback).
    """
    _validate(limbs, body_height_m)
    return [_solve_one(item, camera=camera, body_height_m=float(body_height_m), config=config) for item in limbs]


def _solve_one(
    item: ResidualLimbInput, *, camera: PinholeCamera, body_height_m: float, config: RafoConfig
) -> RafoResult:
    start = time.perf_counter()
    name = item.limb.name
    status = LimbStatus(item.status)
    out_dtype = (
        item.anchor_cam.dtype
        if isinstance(item.anchor_cam, torch.Tensor) and item.anchor_cam.is_floating_point()
        else _DTYPE
    )
    out_device = item.anchor_cam.device if isinstance(item.anchor_cam, torch.Tensor) else torch.device("cpu")
    anchor0 = _as_vector(item.anchor_cam, 3, "anchor_cam", name)
    target = _as_vector(item.target_cam, 3, "target_cam", name)
    k = _as_vector(item.endpoint_px, 2, "endpoint_px", name)
    k_anchor = None if item.anchor_px is None else _as_vector(item.anchor_px, 2, "anchor_px", name)[None]
    for what, point in (("anchor_cam", anchor0), ("target_cam", target)):
        if point[2] <= IN_FRONT_DEPTH_M:
            raise ValueError(f"{name}: {what} has depth z = {point[2].item():.4g} m, not in front of the camera")

    def result(
        lam: float, anchor: torch.Tensor, *, accepted: bool, clamped: bool, fallback: bool, reason: str, iterations: int
    ) -> RafoResult:
        endpoint = endpoint_on_segment(anchor[None], target[None], torch.tensor([lam], dtype=_DTYPE))[0]
        err = float((camera.project(endpoint) - k).norm())

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=out_device, dtype=out_dtype)

        return RafoResult(
            limb_name=name,
            status=status,
            lam=float(lam),
            anchor_cam=cast(anchor),
            endpoint_cam=cast(endpoint),
            target_cam=cast(target),
            reproj_error_px=err,
            accepted=accepted,
            clamped=clamped,
            fallback=fallback,
            reason=reason,
            iterations=iterations,
            solve_time_s=time.perf_counter() - start,
        )

    length0 = float((target - anchor0).norm())
    if length0 < config.min_segment_length_m:
        endpoint_name = KEYPOINT_NAMES[item.limb.endpoint_index(status)]
        return result(
            config.lam_init,
            anchor0,
            accepted=False,
            clamped=False,
            fallback=True,
            iterations=0,
            reason=(
                f"degenerate segment: |J_t - J_a| = {length0 * 100:.2f} cm < "
                f"{config.min_segment_length_m * 100:.2f} cm; {endpoint_name} not fitted, lam left at "
                f"{config.lam_init}"
            ),
        )

    # Pixels per metre at the depth of the initial segment's midpoint.
    depth = 0.5 * float(anchor0[2] + target[2])
    px_per_m = torch.tensor([0.5 * (camera.fx + camera.fy) / depth], dtype=_DTYPE)
    expected = None
    if config.anthro_sigma_frac is not None:
        expected = torch.tensor(
            [expected_segment_length_m(item.limb.residual_segment(status), body_height_m=body_height_m)], dtype=_DTYPE
        )

    # Unknowns: logit of lam, and the anchor offset in units of anchor_sigma_m (well scaled).
    lam_init = torch.tensor([config.lam_init], dtype=_DTYPE)
    logit = logit_from_lambda(lam_init, lam_min=config.lam_min, lam_max=config.lam_max).requires_grad_(True)
    offset = torch.zeros(1, 3, dtype=_DTYPE, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [logit, offset],
        lr=1.0,
        max_iter=config.iterations,
        history_size=config.history_size,
        tolerance_grad=config.tolerance_grad,
        tolerance_change=config.tolerance_change,
        line_search_fn="strong_wolfe",
    )
    anchor_init = anchor0[None]

    def energy() -> torch.Tensor:
        terms = rafo_energy_terms(
            lam=lambda_from_logit(logit, lam_min=config.lam_min, lam_max=config.lam_max),
            anchor_cam=anchor_init + config.anchor_sigma_m * offset,
            anchor_init_cam=anchor_init,
            target_cam=target[None],
            endpoint_px=k[None],
            camera=camera,
            px_per_m=px_per_m,
            expected_length_m=expected,
            config=config,
            anchor_px=k_anchor,
        )
        return sum(terms.values()).sum()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = energy()
        value.backward()
        return value

    optimiser.step(closure)
    iterations = int(optimiser.state[logit].get("n_iter", 0))

    with torch.no_grad():
        lam = float(lambda_from_logit(logit, lam_min=config.lam_min, lam_max=config.lam_max))
        anchor = (anchor_init + config.anchor_sigma_m * offset)[0].clone()
        finite = math.isfinite(lam) and bool(torch.isfinite(anchor).all())
        clamped = False
        notes = []
        if finite:
            _, lam_raw, valid = closed_form_lambda(
                anchor_cam=anchor[None],
                target_cam=target[None],
                endpoint_px=k[None],
                camera=camera,
                lam_min=config.lam_min,
                lam_max=config.lam_max,
            )
            raw = float(lam_raw[0])
            tol = config.bound_tolerance
            if bool(valid[0]) and raw > config.lam_max + tol and lam > config.lam_max - tol:
                lam, clamped = config.lam_max, True
                notes.append(
                    f"keypoint beyond the lam_max = {config.lam_max} bound (unclamped lam ~ {raw:.3f}); clamped"
                )
            elif bool(valid[0]) and raw < config.lam_min - tol and lam < config.lam_min + tol:
                lam, clamped = config.lam_min, True
                notes.append(
                    f"keypoint before the lam_min = {config.lam_min} bound (unclamped lam ~ {raw:.3f}); clamped"
                )
            optimum = result(
                lam, anchor, accepted=False, clamped=clamped, fallback=False, reason="", iterations=iterations
            )
            shift = float((anchor - anchor0).norm())
            if optimum.reproj_error_px < config.accept_px and shift <= config.max_anchor_shift_m:
                stop = "iteration limit reached" if iterations >= config.iterations else "converged"
                reason = "; ".join([stop] + notes)
                return dataclasses.replace(
                    optimum, accepted=True, reason=reason, solve_time_s=time.perf_counter() - start
                )
            if optimum.reproj_error_px >= config.accept_px:
                why = (
                    f"optimised endpoint reprojects {optimum.reproj_error_px:.1f} px from the keypoint "
                    f"(>= {config.accept_px} px)"
                )
            else:
                why = (
                    f"the optimum moved the anchor {shift * 100:.1f} cm (> {config.max_anchor_shift_m * 100:.1f} cm) "
                    f"to reach the keypoint"
                )
        else:
            why = "the optimisation diverged (non-finite parameters)"

        lam_fb, lam_raw_fb, valid_fb = closed_form_lambda(
            anchor_cam=anchor_init,
            target_cam=target[None],
            endpoint_px=k[None],
            camera=camera,
            lam_min=config.lam_min,
            lam_max=config.lam_max,
        )
        raw_fb = float(lam_raw_fb[0])
        clamped_fb = bool(valid_fb[0]) and not (config.lam_min <= raw_fb <= config.lam_max)
        if bool(valid_fb[0]):
            how = f"closed-form 2D fallback on the initial segment: lam = {float(lam_fb[0]):.3f}"
            if clamped_fb:
                side = "beyond the lam_max" if raw_fb > config.lam_max else "before the lam_min"
                how += f" (keypoint {side} bound, clamped from {raw_fb:.3f})"
        else:
            how = f"the segment projects to a point; lam left at {float(lam_fb[0]):.3f}"
        return result(
            float(lam_fb[0]),
            anchor0,
            accepted=False,
            clamped=clamped_fb,
            fallback=True,
            reason=f"{why}; {how}",
            iterations=iterations,
        )


# ----------------------------------------------------------------------------- convenience


def inputs_from_joints(
    *,
    joints_cam: torch.Tensor,
    joint_names: Sequence[str],
    keypoints_px: torch.Tensor,
    status: dict[str, LimbStatus],
    with_anchor_keypoints: bool = False,
) -> list[ResidualLimbInput]:
    """Build the RAFO inputs of one person from its fitted joints and LDpose keypoints.

    Args:
        joints_cam: (J, 3) joints of the fitted intact body, camera frame, metres (e.g. one row of
            ``BodyOutput.joints``); joint_names: their J names (e.g. ``body.base.JOINT_NAMES``),
            which must include the LDpose names of the anchor and target joints ("left_shoulder",
            ...); keypoints_px: (25, 2) or (25, 3) LDpose keypoints (x, y[, v]) in pixels;
            status: limb name -> status (``data.status.derive_limb_status``).
        with_anchor_keypoints: also pass each anchor joint's keypoint as ``anchor_px`` where it
            is labelled (``v > 0``, or always for (25, 2) input): the optional anchor term.

    Returns:
        One :class:`ResidualLimbInput` per residual limb, in ``LIMBS`` order.
    """
    index = {n: i for i, n in enumerate(joint_names)}
    if joints_cam.ndim != 2 or joints_cam.shape[-1] != 3 or joints_cam.shape[0] != len(index):
        raise ValueError(f"joints_cam must be (len(joint_names)={len(index)}, 3), got {tuple(joints_cam.shape)}")
    kp = torch.as_tensor(keypoints_px)
    if kp.ndim != 2 or kp.shape[0] != len(KEYPOINT_NAMES) or kp.shape[1] not in (2, 3):
        raise ValueError(f"keypoints_px must be ({len(KEYPOINT_NAMES)}, 2 or 3), got {tuple(kp.shape)}")
    inputs = []
    for limb in LIMBS:
        limb_status = LimbStatus(status.get(limb.name, LimbStatus.INTACT))
        if not limb_status.is_residual:
            continue
        a, t = limb.segment_joints(limb_status)
        missing = [KEYPOINT_NAMES[j] for j in (a, t) if KEYPOINT_NAMES[j] not in index]
        if missing:
            raise ValueError(f"{limb.name}: joint_names lacks {', '.join(missing)}")
        inputs.append(
            ResidualLimbInput(
                limb=limb,
                status=limb_status,
                anchor_cam=joints_cam[index[KEYPOINT_NAMES[a]]],
                target_cam=joints_cam[index[KEYPOINT_NAMES[t]]],
                endpoint_px=kp[limb.endpoint_index(limb_status), :2],
                anchor_px=kp[a, :2] if with_anchor_keypoints and (kp.shape[1] == 2 or kp[a, 2] > 0) else None,
            )
        )
    return inputs
