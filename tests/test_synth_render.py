"""Renderer property tests: each AU moves the right features, in geometry and in pixels."""

from __future__ import annotations

import numpy as np
import pytest

from abaw.synth.expressions import AU_INDEX, NUM_RENDER_AUS, PROTOTYPES, au_labels
from abaw.synth.identity import sample_identity
from abaw.synth.render import render_face
from abaw.synth.state import FrameState, Hand
from abaw.vocab import AUS


@pytest.fixture(scope="module")
def person():
    return sample_identity(np.random.default_rng(3))


def _render(person, style: str = "real", size: int = 112, hand: Hand | None = None, **aus):
    au = np.zeros(NUM_RENDER_AUS)
    for name, value in aus.items():
        au[AU_INDEX[name]] = value
    # the same rng seed for every call: identical background, strands and noise fields
    return render_face(person, FrameState(au=au, hand=hand), np.random.default_rng(11), style,
                       size)


def _region_diff(a: np.ndarray, b: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean absolute pixel difference inside box (x0, y0, x1, y1) and its share of the total."""
    diff = np.abs(a.astype(int) - b.astype(int)).sum(axis=2)
    x0, y0, x1, y1 = box
    return float(diff[y0:y1, x0:x1].sum()) / max(float(diff.sum()), 1.0)


def _boxes(marks: dict[str, np.ndarray]) -> dict[str, tuple[int, int, int, int]]:
    """Feature regions in output pixels, from the neutral landmarks."""
    brow_y = (marks["brow_inner_l"][1] + marks["brow_outer_l"][1]) / 2
    eye_y = marks["eye_top_l"][1]
    mouth_y = marks["mouth_top"][1]
    chin_y = marks["chin"][1]
    return {
        "brows": (20, int(brow_y - 14), 92, int(brow_y + 7)),
        "eyes": (14, int(eye_y - 5), 98, int(eye_y + 14)),
        "mouth": (26, int(mouth_y - 10), 86, int(chin_y + 10)),
    }


REGION_OF_AU = {"AU1": "brows", "AU2": "brows", "AU4": "brows", "AU6": "eyes", "AU7": "eyes",
                "AU10": "mouth", "AU12": "mouth", "AU15": "mouth", "AU23": "mouth",
                "AU24": "mouth", "AU25": "mouth", "AU26": "mouth"}


def test_output_shapes_and_styles(person):
    real = _render(person)
    assert real.image.shape == (112, 112, 3) and real.image.dtype == np.uint8
    synthetic = _render(person, style="synthetic", size=56)
    assert synthetic.image.shape == (56, 56, 3)
    with pytest.raises(ValueError):
        _render(person, style="cartoon")


def test_au12_moves_lip_corners_up_and_out(person):
    neutral, smile = _render(person), _render(person, AU12=1.0)
    for corner in ("mouth_left", "mouth_right"):
        assert smile.landmarks[corner][1] < neutral.landmarks[corner][1] - 2.0  # up (y down)
    width = lambda r: r.landmarks["mouth_right"][0] - r.landmarks["mouth_left"][0]  # noqa: E731
    assert width(smile) > width(neutral) + 2.0
    assert _region_diff(neutral.image, smile.image, _boxes(neutral.landmarks)["mouth"]) > 0.7


def test_au15_moves_lip_corners_down(person):
    neutral, sad = _render(person), _render(person, AU15=1.0)
    assert sad.landmarks["mouth_left"][1] > neutral.landmarks["mouth_left"][1] + 2.0


def test_au26_drops_the_jaw_and_opens_the_mouth(person):
    neutral, open_ = _render(person), _render(person, AU26=1.0)
    assert open_.landmarks["chin"][1] > neutral.landmarks["chin"][1] + 3.0
    gap = lambda r: r.landmarks["lips_lower_inner"][1] - r.landmarks["lips_upper_inner"][1]  # noqa: E731
    assert gap(neutral) < 0.5 < 5.0 < gap(open_)
    # in pixels: more of the mouth region is far from the skin colour (interior, teeth)
    x0, y0, x1, y1 = _boxes(neutral.landmarks)["mouth"]
    skin = np.array(person.skin)

    def not_skin(r):
        return int((np.abs(r.image[y0:y1, x0:x1].astype(int) - skin).sum(axis=2) > 120).sum())

    assert not_skin(open_) > not_skin(neutral) + 40


def test_au4_lowers_and_knits_the_brows(person):
    neutral, frown = _render(person), _render(person, AU4=1.0)
    for side in ("l", "r"):
        assert frown.landmarks[f"brow_inner_{side}"][1] > neutral.landmarks[f"brow_inner_{side}"][1] + 2
    gap = lambda r: r.landmarks["brow_inner_r"][0] - r.landmarks["brow_inner_l"][0]  # noqa: E731
    assert gap(frown) < gap(neutral) - 2.0


def test_au1_lifts_inner_brow_more_than_au2_and_vice_versa(person):
    neutral, au1, au2 = _render(person), _render(person, AU1=1.0), _render(person, AU2=1.0)
    lift = lambda r, p: neutral.landmarks[p][1] - r.landmarks[p][1]  # noqa: E731
    assert lift(au1, "brow_inner_l") > lift(au1, "brow_outer_l") + 2.0
    assert lift(au2, "brow_outer_l") > lift(au2, "brow_inner_l") + 2.0


def test_au6_and_au7_narrow_the_eyes(person):
    neutral = _render(person)
    opening = lambda r: r.landmarks["eye_bottom_l"][1] - r.landmarks["eye_top_l"][1]  # noqa: E731
    for au in ("AU6", "AU7"):
        assert opening(_render(person, **{au: 1.0})) < opening(neutral) - 1.0


@pytest.mark.parametrize("au", AUS)
def test_every_labelled_au_changes_pixels_in_its_region(person, au):
    neutral, active = _render(person), _render(person, **{au: 1.0})
    share = _region_diff(neutral.image, active.image, _boxes(neutral.landmarks)[REGION_OF_AU[au]])
    assert share > 0.6, f"{au}: only {share:.2f} of the change is in the {REGION_OF_AU[au]}"


def test_intensity_is_monotone_in_pixels(person):
    neutral = _render(person).image.astype(int)
    changes = [np.abs(_render(person, AU12=v).image.astype(int) - neutral).sum()
               for v in (0.25, 0.5, 1.0)]
    assert changes[0] < changes[1] < changes[2]


def test_hand_is_drawn_and_boxed_only_in_the_real_style(person):
    hand = Hand("mouth", 30.0, 0.0)
    with_hand = _render(person, hand=hand)
    x0, y0, x1, y1 = with_hand.hand_box
    assert 0 <= x0 < x1 <= 112 and 0 <= y0 < y1 <= 112
    mouth = with_hand.landmarks["mouth_top"]
    assert x0 < mouth[0] < x1 and y0 < mouth[1] < y1
    assert _render(person, style="synthetic", size=56, hand=hand).hand_box is None
    assert _render(person).hand_box is None


def test_prototypes_label_their_emfacs_aus():
    labels = {e: set(np.array(AUS)[au_labels(p).astype(bool)]) for e, p in PROTOTYPES.items()}
    assert {"AU6", "AU12"} <= labels[4]            # happiness
    assert {"AU1", "AU4", "AU15"} <= labels[5]     # sadness
    assert {"AU1", "AU2", "AU26"} <= labels[6]     # surprise
    assert {"AU4", "AU7", "AU23"} <= labels[1]     # anger
    assert {"AU10", "AU15"} <= labels[2]           # disgust
    assert labels[0] == set()                      # neutral


def test_contact_sheet_has_a_row_per_expression_and_per_au():
    from abaw.synth.expressions import RENDER_AUS
    from abaw.synth.preview import CELL, LABEL_W, contact_sheet
    from abaw.vocab import EXPRESSIONS

    sheet = contact_sheet(seed=0, identities=2, synthetic_columns=1)
    assert sheet.shape == ((len(EXPRESSIONS) + len(RENDER_AUS)) * CELL, LABEL_W + 5 * CELL, 3)
    wide = contact_sheet(seed=0, identities=6, synthetic_columns=2)
    assert wide.shape[1] == LABEL_W + 8 * CELL
    # the AU strip's first cell (intensity 0) and last (intensity 1) differ for AU12
    row = (len(EXPRESSIONS) + RENDER_AUS.index("AU12")) * CELL
    first = sheet[row:row + CELL, LABEL_W:LABEL_W + CELL].astype(int)
    last = sheet[row:row + CELL, LABEL_W + 4 * CELL:LABEL_W + 5 * CELL].astype(int)
    assert np.abs(first - last).sum() > 0


def test_hand_drawing_is_deterministic_and_boxed_tightly():
    """On a black canvas the hand's shadow changes nothing, so the changed pixels are the
    hand and its forearm. Fingers up: the forearm leaves through the bottom, and every changed
    pixel above the box's bottom edge is inside the box (1 px of anti-aliasing), which the
    drawn fingers and thumb reach on its top, left and right sides."""
    from abaw.synth.hands import draw_hand

    hand = Hand("mouth", 30.0, 0.0)
    skin = (120, 150, 200)
    first, second = (np.zeros((224, 224, 3), np.uint8) for _ in range(2))
    box = draw_hand(first, np.array([112.0, 100.0]), hand, skin, 1.0)
    assert draw_hand(second, np.array([112.0, 100.0]), hand, skin, 1.0) == box
    assert first.tobytes() == second.tobytes()
    x0, y0, x1, y1 = box
    ys, xs = np.nonzero(first.any(axis=2))
    above = ys < int(y1)
    assert xs[above].min() >= int(x0) - 1 and xs[above].max() <= int(np.ceil(x1)) + 1
    assert ys.min() >= int(y0) - 1
    assert abs(ys.min() - y0) <= 2 and abs(xs[above].min() - x0) <= 2 and abs(xs[above].max() - x1) <= 2
    assert ys.max() == 223  # the forearm runs out of the frame
    inside = first[int(y0):int(y1), int(x0):int(x1)].any(axis=2).mean()
    assert inside > 0.5  # a hand, not a stick figure: it fills most of its box
