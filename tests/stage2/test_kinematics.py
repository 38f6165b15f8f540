"""Landmark kinematics: the maths on known signals, a real face (the astronaut) warped into a smile, and the
synthetic cohort, whose PD subjects must move less in proportion to the hypomimia put into them."""

import csv

import cv2
import numpy as np
import pytest
from skimage import data

from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.faces.landmarks import MOUTH_CORNERS, DlibLandmarker, eye_geometry
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.stage2.features import CohortFileError, CohortIntensities, sequence_inputs
from dfer_pd.stage2.settings import KinematicsSettings
from dfer_pd.stage2.kinematics import (
    KINEMATIC_FEATURES,
    LandmarkCache,
    corner_geometry,
    facial_signals,
    head_frame,
    movement_features,
    subject_kinematics,
    video_landmarks,
)
from dfer_pd.synthetic.cohort import make_pd_cohort
from dfer_pd.synthetic.encode import encode_mp4

ASTRONAUT = data.astronaut()
MOUTH_AMPLITUDE = KINEMATIC_FEATURES.index("mouth_corners_amplitude")


def similarity(points: np.ndarray, degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    theta = np.radians(degrees)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return scale * points @ rotation.T + np.asarray(shift)


@pytest.fixture(scope="module")
def astronaut_landmarks():
    boxes = __import__("dfer_pd.faces.tracking", fromlist=["DlibHogFaceDetector"]).DlibHogFaceDetector().detect(ASTRONAUT)
    return DlibLandmarker().predict(ASTRONAUT, boxes[0, :4])


def test_signals_ignore_where_the_head_is_how_large_and_how_tilted(astronaut_landmarks):
    points = astronaut_landmarks[None]
    moved = similarity(astronaut_landmarks, 25.0, 1.7, (40.0, -15.0))[None]
    np.testing.assert_allclose(head_frame(moved), head_frame(points), atol=1e-9)
    for name, values in facial_signals(points).items():
        np.testing.assert_allclose(facial_signals(moved)[name], values, atol=1e-9)
    origin, angle, distance = corner_geometry(head_frame(points))
    np.testing.assert_allclose([*origin[0], angle[0], distance[0]], [0.0, 0.0, 0.0, 1.0], atol=1e-9)  # origin between
    # the eye corners, eye line level, unit = the corner-to-corner eye distance
    assert abs(eye_geometry(head_frame(points))[0, 3]) < 5  # the six-point eye line agrees to a few degrees


def test_moving_only_the_lids_leaves_brow_and_jaw_unchanged(astronaut_landmarks):
    """A surprise's lids: raising the upper lids by 0.1 eye distance moves the eyelid signal and nothing else
    (the head frame rests on the eye corners, which the lids do not move)."""
    frames = np.repeat(astronaut_landmarks[None], 10, axis=0)
    eye_distance = corner_geometry(frames[:1])[2][0]
    raised = frames.copy()
    raised[5:, [37, 38, 43, 44], 1] -= 0.1 * eye_distance  # image y points down: lids up
    still, opened = facial_signals(frames), facial_signals(raised)
    for name in ("brows", "jaw", "mouth_corners"):
        np.testing.assert_allclose(opened[name], still[name], atol=1e-12)
    np.testing.assert_allclose(opened["eyelids"][5:] - still["eyelids"][5:], 0.1, rtol=0.01)  # every pair, on a tilted head
    np.testing.assert_allclose(opened["eyelids"][:5], still["eyelids"][:5], atol=1e-12)


def test_one_scale_per_video_so_a_turning_head_does_not_stretch_vertical_signals(astronaut_landmarks):
    """Yaw shortens the eye distance on screen but not the face's height: with one scale per video (the
    median eye distance), squeezing a few frames horizontally leaves their jaw and brow heights alone."""
    level = similarity(astronaut_landmarks, -np.degrees(corner_geometry(astronaut_landmarks[None])[1][0]), 1.0, (0, 0))
    frames = np.repeat(level[None], 9, axis=0)  # eye corners level: a turn squeezes along the eye line
    centre = level.mean(axis=0)
    turned = frames.copy()
    turned[6:, :, 0] = centre[0] + 0.8 * (frames[6:, :, 0] - centre[0])  # 3 of 9 frames turned away
    still, moved = facial_signals(frames), facial_signals(turned)
    np.testing.assert_allclose(moved["jaw"], still["jaw"], atol=1e-9)
    np.testing.assert_allclose(moved["brows"], still["brows"], atol=1e-9)
    per_frame = head_frame(turned[6:7], scale=corner_geometry(turned[6:7])[2][0])  # the eye distance of that frame
    assert per_frame[0, 8, 1] == pytest.approx(still["jaw"][0] / 0.8)  # would have stretched the jaw by 1 / 0.8
    nearer = frames.copy()
    nearer[6:] = similarity(frames[6:].reshape(-1, 2), 0.0, 1.3, (-30.0, 10.0)).reshape(3, 68, 2)  # the face nears
    for name, values in facial_signals(nearer).items():  # the camera: the unit follows it
        np.testing.assert_allclose(values, still[name], atol=1e-9)


def test_peak_speed_is_a_high_percentile_not_one_noisy_frame():
    times = np.arange(41) / 10.0
    signal = np.clip((times - 1.0) / 1.0, 0, 1) * 0.2  # 0.2 eye distances over 1 s: 0.2 per second
    spiked = signal.copy()
    spiked[30] += 0.3  # one frame of landmark jitter
    assert movement_features(times, spiked, np.array(0.0))[1] < 0.6 * (0.3 * 10 / 3)  # far below the spike's speed
    assert movement_features(times, signal, np.array(0.0))[1] == pytest.approx(0.2, rel=0.3)


def test_movement_features_of_a_known_ramp():
    times = np.arange(21) / 10.0  # 2 s at 10 fps
    signal = np.clip((times - 0.5) / 0.5, 0, 1) * 0.2  # rest, a 0.5 s ramp to 0.2, hold
    amplitude, peak_speed, time_to_peak = movement_features(times, signal, np.array(0.0))
    assert amplitude == pytest.approx(0.2, abs=1e-9)
    assert peak_speed == pytest.approx(0.4, rel=0.35)  # 0.2 over 0.5 s; the 3-frame smoothing blunts the peak
    assert time_to_peak == pytest.approx(0.5, abs=0.2)  # from 10% to 90% of the way
    still = movement_features(times, np.zeros(21), np.array(0.0))
    np.testing.assert_allclose(still, [0.0, 0.0, 0.0])
    # Two points (mouth corners): the displacement is their mean distance from the reference.
    corners = np.zeros((21, 2, 2))
    corners[:, 0, 1], corners[:, 1, 1] = -signal, -signal
    assert movement_features(times, corners, np.zeros((2, 2)))[0] == pytest.approx(0.2)


def smile_warp(image: np.ndarray, corners: np.ndarray, lift: float, radius: float) -> np.ndarray:
    """Move the pixels around each mouth corner up and outwards by ``lift`` pixels (a Gaussian-weighted warp)."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x, map_y = xs.copy(), ys.copy()
    centre_x = corners[:, 0].mean()
    for x, y in corners:
        weight = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * radius**2))
        outwards = np.sign(x - centre_x)
        map_x -= weight * lift * 0.5 * outwards  # sample from further in: the corner moves out
        map_y += weight * lift  # sample from below: the corner moves up
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_astronaut_warped_into_a_smile_raises_the_mouth_corner_amplitude(tmp_path, astronaut_landmarks):
    face = ASTRONAUT[0:300, 90:390].copy()
    corners = astronaut_landmarks[list(MOUTH_CORNERS)] - [90, 0]
    eye_distance = eye_geometry(astronaut_landmarks[None])[0, 2]
    lift = 0.25 * eye_distance  # a clear smile: corners up by a quarter of the eye distance
    rng = np.random.default_rng(0)
    ramp = np.clip(np.linspace(-0.5, 1.5, 20), 0, 1)  # rest, onset, hold

    def video(name: str, lifts: np.ndarray):
        frames = [np.clip(smile_warp(face, corners, float(a), 0.3 * eye_distance).astype(np.int16)
                          + rng.integers(-2, 3, face.shape), 0, 255).astype(np.uint8) for a in lifts]
        return encode_mp4(tmp_path / f"{name}.mp4", np.stack(frames), fps=10)

    neutral = video("neutral", np.zeros(20))
    smile = video("happiness", lift * ramp)
    settings = KinematicsSettings(enabled=True, fps=10, detect_every=5)
    tracks = {e: video_landmarks(p, settings, FaceCropSettings()) for e, p in (("neutral", neutral), ("happiness", smile))}
    assert all(t.points.shape == (20, 68, 2) and t.face_fraction == 1.0 for t in tracks.values())
    features = subject_kinematics({e: (t.times, t.points) for e, t in tracks.items()}, ("neutral", "happiness"))
    at_rest, smiling = features[0, MOUTH_AMPLITUDE], features[1, MOUTH_AMPLITUDE]
    assert smiling > 3 * at_rest and smiling > 0.1  # the landmarks follow the corners...
    assert smiling < 0.5  # ...by about the warp (a quarter eye distance, in each corner's direction)
    time_to_peak = features[1, KINEMATIC_FEATURES.index("mouth_corners_time_to_peak")]
    assert 0.3 < time_to_peak < 1.3  # the onset takes 1 s of the ramp (10% -> 90%: 0.8 s)


def test_kinematics_travel_with_the_cohort_and_feed_the_new_kinds(tmp_path):
    rng = np.random.default_rng(0)
    data = CohortIntensities(subject_ids=["a", "b"], labels=[0, 1], cosine=rng.uniform(0.1, 0.3, (2, 4, 4)), tau=0.07,
                             kinematics=rng.uniform(0, 1, (2, 4, 12)), kinematics_settings={"fps": 6.0})
    assert data.inputs("kinematics").shape == (2, 4, 12) and data.inputs("clip+kinematics").shape == (2, 4, 20)
    np.testing.assert_array_equal(data.inputs("clip+kinematics")[..., 8:], data.kinematics)
    loaded = CohortIntensities.load(data.save(tmp_path / "c.npz"))
    np.testing.assert_array_equal(loaded.kinematics, data.kinematics)
    assert loaded.kinematics_settings == {"fps": 6.0} and loaded.subset(np.array([1])).kinematics.shape == (1, 4, 12)
    with pytest.raises(ValueError, match="need landmark kinematics"):
        sequence_inputs(data.intensities, "kinematics")
    with pytest.raises(CohortFileError, match="kinematics must have shape"):
        CohortIntensities(subject_ids=["a"], labels=[0], cosine=np.zeros((1, 4, 4)), tau=1.0, kinematics=np.zeros((1, 4, 3)))


def cohort_amplitudes(root, effect_size: float, cache_root) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Happiness mouth-corner amplitude, label and true expressivity of each subject of a small phone cohort."""
    manifest = make_pd_cohort(root, num_subjects=8, effect_size=effect_size, fps=6, seconds=3.0, seed=4,
                              expressions=("neutral", "happiness"), recording="phone")
    truth = {row["subject_id"]: float(row["expressivity"]) for row in csv.DictReader(open(root / "ground_truth.csv"))}
    cache = LandmarkCache(cache_root, KinematicsSettings(enabled=True, fps=6), FaceCropSettings())
    amplitudes, labels, expressivity = [], [], []
    for subject in read_manifest(manifest, ("neutral", "happiness")).subjects:
        tracks = {e: cache.get(p) for e, p in subject.videos.items()}
        features = subject_kinematics({e: (t.times, t.points) for e, t in tracks.items()}, ("neutral", "happiness"))
        amplitudes.append(features[1, MOUTH_AMPLITUDE])
        labels.append(subject.label)
        expressivity.append(truth[subject.subject_id])
    return np.array(amplitudes), np.array(labels), np.array(expressivity)


def test_synthetic_pd_moves_less_in_proportion_to_the_effect_size(tmp_path):
    # The same seed: the HC subjects are the same people in the same videos in both cohorts; the PD ones
    # are the same people who lose 0.6 * effect * severity of their expressivity (nothing at effect 0).
    strong = cohort_amplitudes(tmp_path / "strong", 1.5, tmp_path / "landmarks")
    none = cohort_amplitudes(tmp_path / "none", 0.0, tmp_path / "landmarks")
    hc, pd = strong[1] == 0, strong[1] == 1
    np.testing.assert_array_equal(strong[0][hc], none[0][hc])
    # Each subject's smile amplitude follows the expressivity the generator gave it (plus a landmark-jitter floor)...
    amplitude, expressivity = (np.concatenate([strong[i], none[i]]) for i in (0, 2))
    slope, floor = np.polyfit(expressivity, amplitude, 1)
    assert np.corrcoef(amplitude, expressivity)[0, 1] > 0.7 and slope > 0.05 and abs(floor) < 0.06
    # ...so each PD subject loses amplitude with the expressivity the effect size took away,
    lost_amplitude = none[0][pd] - strong[0][pd]
    lost_expressivity = none[2][pd] - strong[2][pd]
    assert lost_expressivity.min() > 0.3 and np.corrcoef(lost_amplitude, lost_expressivity)[0, 1] > 0.6
    assert lost_amplitude.mean() > 0.5 * slope * lost_expressivity.mean()
    # and the PD group moves far less than HC at effect 1.5, but not at 0.
    assert strong[0][pd].mean() < 0.6 * strong[0][hc].mean() and none[0][pd].mean() > 0.6 * none[0][hc].mean()


def test_table3_gains_kinematic_rows_when_the_cohort_has_kinematics(tmp_path):
    import dataclasses

    from dfer_pd.stage2.ablation import KINEMATIC_ROWS, TABLE3_ROWS, default_rows, run_ablation
    from dfer_pd.stage2.settings import CVConfig
    from dfer_pd.synthetic.intensities import synthetic_cohort

    data = synthetic_cohort(n_pd=15, n_hc=15, seed=1)
    assert default_rows(data) == TABLE3_ROWS
    rng = np.random.default_rng(0)
    # Kinematics that carry the label (PD moves less): the kinematics row must find it.
    amplitude = np.where(data.labels[:, None, None] == 1, 0.05, 0.15) + rng.normal(0, 0.02, (len(data), 4, 12))
    moving = dataclasses.replace(data, kinematics=amplitude, kinematics_settings={"fps": 6.0})
    assert default_rows(moving) == TABLE3_ROWS + KINEMATIC_ROWS
    assert [r.config.features for r in KINEMATIC_ROWS] == ["kinematics", "kinematics", "clip+kinematics"]
    table = run_ablation(moving, CVConfig(n_splits=3, repeats=1), tmp_path, rows=KINEMATIC_ROWS[:1],
                         progress=False)
    assert table["name"].tolist() == ["svm_kinematics"] and table["accuracy_mean"].iloc[0] > 0.9
    assert "landmark kinematics" in (tmp_path / "table3.md").read_text()
