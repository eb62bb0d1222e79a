"""Comparison operators against values computed by hand on small arrays."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import operators as ops
from operators import KillCriterion, parse_criterion

NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------- topk
def test_topk_indices_and_scores_best_first():
    x = np.array([[0.1, 0.7, 0.2, 0.5],
                  [4.0, -1.0, 3.0, 2.0]])
    idx, scores = ops.topk(x, 2)
    # row 0: 0.7 (class 1) then 0.5 (class 3); row 1: 4.0 (class 0) then 3.0 (class 2)
    assert idx.tolist() == [[1, 3], [0, 2]]
    assert scores.tolist() == [[0.7, 0.5], [4.0, 3.0]]


def test_topk_ties_go_to_lower_class_index():
    idx, _ = ops.topk(np.array([[1.0, 2.0, 2.0, 2.0]]), 2)
    # classes 1, 2, 3 tie at 2.0; the two lowest indices win
    assert idx.tolist() == [[1, 2]]


def test_topk_k_larger_than_classes_is_capped():
    idx, scores = ops.topk(np.array([[0.2, 0.9, 0.5]]), 10)
    assert idx.shape == (1, 3)
    assert idx.tolist() == [[1, 2, 0]]
    assert scores.tolist() == [[0.9, 0.5, 0.2]]


def test_topk_one_dimensional_input_is_one_image():
    idx, _ = ops.topk([3.0, 1.0, 2.0], 1)
    assert idx.tolist() == [[0]]


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_topk_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ops.topk(np.ones((1, 3)), k)


# ---------------------------------------------------------------- top-1
def test_top1_agreement_per_image_and_summary():
    ref = np.array([[0.9, 0.1, 0.0],
                    [0.2, 0.5, 0.3],
                    [0.1, 0.1, 0.8],
                    [0.6, 0.3, 0.1]])
    other = np.array([[0.8, 0.2, 0.0],   # argmax 0 == 0
                      [0.2, 0.3, 0.5],   # argmax 2 != 1
                      [0.0, 0.1, 0.9],   # argmax 2 == 2
                      [0.3, 0.6, 0.1]])  # argmax 1 != 0
    assert ops.top1_agreement_per_image(ref, other).tolist() == [1.0, 0.0, 1.0, 0.0]
    assert ops.top1_agreement(ref, other) == 0.5
    assert ops.flipped_images(ref, other).tolist() == [False, True, False, True]
    assert ops.flipped_images(ref, other).dtype == bool


def test_top1_nan_and_inf_rows_count_as_disagreement():
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    other = np.array([[1.0, 0.0], [NAN, 0.0], [INF, 0.0], [1.0, 0.0]])
    # rows 1 and 2 would agree by argmax (NaN/inf sit at class 0) but are not finite
    assert ops.top1_agreement_per_image(ref, other).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert ops.top1_agreement(ref, other) == 0.5
    assert ops.flipped_images(ref, other).tolist() == [False, True, True, False]


def test_top1_nan_in_reference_also_counts():
    ref = np.array([[NAN, NAN]])
    assert ops.top1_agreement(ref, ref.copy()) == 0.0


def test_top1_ties_agree_when_both_tie_the_same_way():
    ref = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    other = np.array([[1.0, 1.0, 0.0],   # tie -> class 0 on both sides
                      [0.9, 1.0, 0.0]])  # tie broken differently: class 0 vs class 1
    assert ops.top1_agreement_per_image(ref, other).tolist() == [1.0, 0.0]


def test_single_class_always_agrees():
    assert ops.top1_agreement(np.array([[1.0], [2.0]]), np.array([[-5.0], [7.0]])) == 1.0


# ---------------------------------------------------------------- top-k overlap
def test_topk_overlap_hand_values():
    ref = np.array([[5.0, 4.0, 3.0, 2.0, 1.0],
                    [5.0, 4.0, 3.0, 2.0, 1.0]])
    other = np.array([[5.0, 4.0, 1.0, 2.0, 3.0],   # top-2 {0,1} vs {0,1}: 2/2
                      [1.0, 2.0, 3.0, 4.0, 5.0]])  # top-2 {0,1} vs {4,3}: 0/2
    assert ops.topk_overlap_per_image(ref, other, k=2).tolist() == [1.0, 0.0]
    assert ops.topk_overlap(ref, other, k=2) == 0.5
    # k=3: row 0 {0,1,2} vs {0,1,4} -> 2/3; row 1 {0,1,2} vs {4,3,2} -> 1/3; mean 1/2
    assert ops.topk_overlap_per_image(ref, other, k=3) == pytest.approx([2 / 3, 1 / 3])
    assert ops.topk_overlap(ref, other, k=3) == pytest.approx(0.5)


def test_topk_overlap_k_larger_than_classes():
    ref = np.array([[3.0, 2.0, 1.0]])
    other = np.array([[1.0, 2.0, 3.0]])
    # k=5 is capped at C=3: both top-3 sets are all classes -> 3/3
    assert ops.topk_overlap(ref, other, k=5) == 1.0


def test_topk_overlap_non_finite_row_is_zero():
    ref = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    other = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, -INF]])
    assert ops.topk_overlap_per_image(ref, other, k=2).tolist() == [1.0, 0.0]


# ---------------------------------------------------------------- Kendall's tau
def test_kendall_tau_hand_values():
    ref = np.array([[3.0, 2.0, 1.0],
                    [3.0, 2.0, 1.0],
                    [3.0, 2.0, 1.0]])
    other = np.array([[30.0, 20.0, 10.0],  # same order: 3 concordant pairs -> 1
                      [1.0, 2.0, 3.0],     # reversed: 3 discordant -> -1
                      [2.0, 3.0, 1.0]])    # pairs (0,1) discordant, (0,2),(1,2) concordant -> (2-1)/3
    assert ops.kendall_tau_per_image(ref, other) == pytest.approx([1.0, -1.0, 1 / 3])
    assert ops.kendall_tau(ref, other) == pytest.approx((1 - 1 + 1 / 3) / 3)


def test_kendall_tau_with_ties_is_tau_b():
    ref = np.array([[1.0, 2.0, 3.0, 4.0]])
    other = np.array([[1.0, 2.0, 2.0, 4.0]])
    # 6 pairs: 5 concordant, 1 tied in other only (classes 1,2), 0 discordant.
    # tau-b = (5 - 0) / sqrt((5+0+0) * (5+0+1)) = 5 / sqrt(30)
    assert ops.kendall_tau(ref, other) == pytest.approx(5 / math.sqrt(30))


def test_kendall_tau_constant_vectors():
    ref = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    other = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    # both constant -> 1; one constant -> 0 (never NaN)
    assert ops.kendall_tau_per_image(ref, other).tolist() == [1.0, 0.0, 0.0]


def test_kendall_tau_non_finite_row_is_minus_one():
    ref = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    other = np.array([[1.0, 2.0, 3.0], [1.0, NAN, 3.0]])
    assert ops.kendall_tau_per_image(ref, other).tolist() == [1.0, -1.0]
    assert ops.kendall_tau(ref, other) == 0.0


def test_kendall_tau_single_class_is_constant_case():
    assert ops.kendall_tau(np.array([[1.0]]), np.array([[5.0]])) == 1.0


# ---------------------------------------------------------------- RBO
def test_rbo_identical_is_one_and_swapped_top_two():
    ref = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    other = np.array([[3.0, 2.0, 1.0],   # identical rankings -> 1
                      [2.0, 3.0, 1.0]])  # rankings [0,1,2] vs [1,0,2]
    # second row, d = min(3, 10) = 3, p = 0.9: X1 = 0, X2 = 2, X3 = 3.
    # RBO_ext = (X3/3) p^3 + (1-p)/p (0*0.9 + (2/2)*0.81 + (3/3)*0.729)
    #         = 0.729 + (1/9) * 1.539 = 0.729 + 0.171 = 0.9
    assert ops.rbo_per_image(ref, other) == pytest.approx([1.0, 0.9])
    assert ops.rbo(ref, other) == pytest.approx(0.95)


def test_rbo_disjoint_at_depth_is_zero():
    ref = np.array([[4.0, 3.0, 0.0, 0.0]])
    other = np.array([[0.0, 0.0, 4.0, 3.0]])
    # depth 2: top-2 lists [0,1] and [2,3] share nothing -> X1 = X2 = 0 -> 0
    assert ops.rbo(ref, other, depth=2) == 0.0


def test_rbo_hand_value_depth_two_other_p():
    ref = np.array([[3.0, 2.0, 1.0, 0.0]])
    other = np.array([[3.0, 0.0, 1.0, 2.0]])
    # rankings [0,1,2,3] vs [0,3,2,1]; depth 2, p = 0.5: X1 = 1, X2 = 1.
    # RBO_ext = (1/2) 0.25 + (0.5/0.5) (1*0.5 + (1/2)*0.25) = 0.125 + 0.625 = 0.75
    assert ops.rbo(ref, other, p=0.5, depth=2) == pytest.approx(0.75)


def test_rbo_default_depth_is_ten_when_more_classes():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1, 30))
    other = ref.copy()
    order = np.argsort(-ref[0], kind="stable")
    # push the 11th-ranked class to the top of `other`: the top-10 lists now differ
    other[0, order[10]] = ref[0].max() + 1.0
    assert ops.rbo(ref, other) < 1.0
    # with a depth of 10 explicitly the value is the same as the default
    assert ops.rbo(ref, other) == pytest.approx(ops.rbo(ref, other, depth=10))
    assert ops.rbo(ref, other, depth=10) != pytest.approx(ops.rbo(ref, other, depth=11))


def test_rbo_depth_larger_than_classes_is_capped():
    ref = np.array([[3.0, 2.0, 1.0]])
    other = np.array([[2.0, 3.0, 1.0]])
    assert ops.rbo(ref, other, depth=50) == pytest.approx(0.9)  # same as depth 3 (see above)


def test_rbo_non_finite_row_is_zero_and_bad_p_rejected():
    ref = np.array([[3.0, 2.0, 1.0]])
    assert ops.rbo_per_image(ref, np.array([[3.0, INF, 1.0]])).tolist() == [0.0]
    with pytest.raises(ValueError, match="p must lie"):
        ops.rbo(ref, ref, p=1.0)


# ---------------------------------------------------------------- max abs error
def test_max_abs_error_hand_values():
    ref = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    other = np.array([[1.5, 2.0, 2.0],    # |0.5|, 0, |-1.0| -> 1.0
                      [0.0, -0.25, 0.0]])  # 0.25
    assert ops.max_abs_error_per_image(ref, other).tolist() == [1.0, 0.25]
    # summary is the maximum over images, not the mean
    assert ops.max_abs_error(ref, other) == 1.0


def test_max_abs_error_non_finite_is_inf():
    ref = np.array([[1.0, 2.0], [1.0, 2.0]])
    other = np.array([[1.0, 2.0], [NAN, 2.0]])
    assert ops.max_abs_error_per_image(ref, other).tolist() == [0.0, INF]
    assert ops.max_abs_error(ref, other) == INF
    # the same inf on both sides is still not agreement (inf - inf would be NaN)
    assert ops.max_abs_error(np.array([[INF, 0.0]]), np.array([[INF, 0.0]])) == INF


# ---------------------------------------------------------------- relative L2
def test_rel_l2_per_image_and_whole_array():
    ref = np.array([[3.0, 4.0], [0.0, 1.0]])
    other = np.array([[3.0, 4.5], [0.0, 3.0]])
    # row 0: ||(0, 0.5)|| / ||(3, 4)|| = 0.5 / 5 = 0.1; row 1: ||(0, 2)|| / ||(0, 1)|| = 2
    assert ops.rel_l2_per_image(ref, other) == pytest.approx([0.1, 2.0])
    # whole array: sqrt(0.25 + 4) / sqrt(9 + 16 + 1) = sqrt(4.25) / sqrt(26)
    assert ops.rel_l2(ref, other) == pytest.approx(math.sqrt(4.25 / 26))


def test_rel_l2_zero_reference():
    ref = np.zeros((2, 2))
    other = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert ops.rel_l2_per_image(ref, other).tolist() == [0.0, INF]
    assert ops.rel_l2(ref, ref) == 0.0
    assert ops.rel_l2(ref, other) == INF


def test_rel_l2_non_finite_and_huge_values():
    ref = np.array([[1.0, 2.0], [1.0, 2.0]])
    other = np.array([[1.0, 2.0], [1.0, NAN]])
    assert ops.rel_l2_per_image(ref, other).tolist() == [0.0, INF]
    assert ops.rel_l2(ref, other) == INF
    # finite logits near the float limit: the norms alone would overflow to inf/inf
    big = np.array([[1e300, 1e300]])
    assert ops.rel_l2(big, big * 1.5) == pytest.approx(0.5)


# ---------------------------------------------------------------- cosine
def test_cosine_hand_values():
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    other = np.array([[2.0, 0.0],    # same direction -> 1
                      [0.0, 3.0],    # orthogonal -> 0
                      [1.0, 0.0],    # 45 degrees -> 1/sqrt(2)
                      [-1.0, 0.0]])  # opposite -> -1
    assert ops.cosine_per_image(ref, other) == pytest.approx([1.0, 0.0, 1 / math.sqrt(2), -1.0])
    assert ops.cosine(ref, other) == pytest.approx((1 + 0 + 1 / math.sqrt(2) - 1) / 4)


def test_cosine_zero_vectors_and_non_finite():
    ref = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    other = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, -INF]])
    assert ops.cosine_per_image(ref, other).tolist() == [1.0, 0.0, -1.0]


def test_cosine_huge_values_do_not_overflow():
    assert ops.cosine(np.array([[1e200, 1e200]]), np.array([[2e200, 2e200]])) == pytest.approx(1.0)


# ---------------------------------------------------------------- latency
def test_latency_ratio_is_ratio_of_medians():
    ref = [1.0, 2.0, 3.0, 100.0]   # median (2 + 3) / 2 = 2.5
    other = [5.0, 4.0, 6.0]         # median 5
    assert ops.latency_ratio(ref, other) == 2.0
    assert ops.latency_ratio(other, ref) == 0.5


def test_latency_ratio_per_image_and_zero_reference():
    assert ops.latency_ratio_per_image([1.0, 2.0, 0.0], [2.0, 1.0, 0.0]).tolist() == [2.0, 0.5, 1.0]
    assert ops.latency_ratio([0.0], [1.0]) == INF
    with pytest.raises(ValueError, match="3 reference latencies but 2"):
        ops.latency_ratio_per_image([1.0, 1.0, 1.0], [1.0, 1.0])


@pytest.mark.parametrize("bad", [[], [NAN], [-1.0]])
def test_latency_ratio_rejects_missing_or_bad_measurements(bad):
    with pytest.raises(ValueError):
        ops.latency_ratio(bad, [1.0])


# ---------------------------------------------------------------- accuracy
def test_accuracy_against_labels():
    logits = np.array([[0.9, 0.1, 0.0],
                       [0.1, 0.2, 0.7],
                       [0.3, 0.4, 0.3],
                       [NAN, 0.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    # argmax 0,2,1,(NaN) vs labels 0,1,1,0 -> hit, miss, hit, miss
    assert ops.accuracy_per_image(logits, labels).tolist() == [1.0, 0.0, 1.0, 0.0]
    assert ops.accuracy(logits, labels) == 0.5


@pytest.mark.parametrize("labels, message", [
    ([0, 1], "expected 3 labels"),
    ([0.0, 1.0, 0.0], "must be integers"),
    ([0, 1, 5], r"must lie in \[0, 2\)"),
    ([0, -1, 1], r"must lie in \[0, 2\)"),
])
def test_accuracy_rejects_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        ops.accuracy(np.zeros((3, 2)), np.array(labels))


# ---------------------------------------------------------------- shapes and empty inputs
def test_shape_mismatch_and_bad_shapes_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        ops.top1_agreement(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expected shape"):
        ops.cosine(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="no classes"):
        ops.rbo(np.zeros((2, 0)), np.zeros((2, 0)))
    with pytest.raises(ValueError, match="expected numbers"):
        ops.rel_l2(np.array([["a", "b"]]), np.array([["a", "b"]]))


def test_zero_images_give_empty_per_image_arrays_and_summary_errors():
    empty = np.zeros((0, 4))
    for per_image in (ops.top1_agreement_per_image, ops.topk_overlap_per_image, ops.kendall_tau_per_image,
                      ops.rbo_per_image, ops.max_abs_error_per_image, ops.rel_l2_per_image,
                      ops.cosine_per_image, ops.flipped_images):
        assert per_image(empty, empty).shape == (0,)
    for summary in (ops.top1_agreement, ops.topk_overlap, ops.kendall_tau, ops.rbo,
                    ops.max_abs_error, ops.rel_l2, ops.cosine):
        with pytest.raises(ValueError, match="no images"):
            summary(empty, empty)


def test_float32_and_integer_inputs_accepted():
    ref = np.array([[1, 2, 3]], dtype=np.int64)
    other = np.array([[1, 2, 4]], dtype=np.float32)
    assert ops.max_abs_error(ref, other) == 1.0
    assert ops.top1_agreement(ref, other) == 1.0


# ---------------------------------------------------------------- catalogue and compare_outputs
# The built-in metrics, first and in this order (the column order of the run folders' tables);
# a metric added to the catalogue comes after them.
EXPECTED_NAMES = ["top1_agreement", "topk_overlap", "kendall_tau", "rbo", "max_abs_error", "rel_l2",
                  "cosine", "latency_ratio"]


def test_catalogue_names_directions_and_registration():
    assert list(ops.CATALOGUE)[:len(EXPECTED_NAMES)] == EXPECTED_NAMES
    higher = {n for n in EXPECTED_NAMES if ops.CATALOGUE[n].direction == ops.HIGHER_IS_CLOSER}
    lower = {n for n in EXPECTED_NAMES if ops.CATALOGUE[n].direction == ops.LOWER_IS_CLOSER}
    assert higher == {"top1_agreement", "topk_overlap", "kendall_tau", "rbo", "cosine"}
    assert lower == {"max_abs_error", "rel_l2", "latency_ratio"}
    for entry in ops.CATALOGUE.values():
        assert callable(entry.summary) and entry.doc and "\n" not in entry.doc and entry.title
    with pytest.raises(TypeError):
        ops.CATALOGUE["new"] = ops.CATALOGUE["rbo"]  # type: ignore[index]
    with pytest.raises(ValueError, match="already registered"):
        ops.CATALOGUE.register(ops.CATALOGUE["rbo"])
    with pytest.raises(ValueError, match="direction"):
        ops.Metric("odd", ops.rbo, "sideways", "a metric with no direction")
    # A registered metric is evaluated by compare_outputs and judged by kill criteria.
    extra = ops.Metric("mean_abs_error", lambda a, b: float(np.mean(np.abs(np.asarray(a) - np.asarray(b)))),
                       ops.LOWER_IS_CLOSER, "mean absolute logit difference", "Mean abs err", "distance")
    ops.CATALOGUE.register(extra)
    try:
        values = ops.compare_outputs(np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]]))
        assert list(values)[-1] == "mean_abs_error" and values["mean_abs_error"] == 0.5
        assert parse_criterion("mean_abs_error > 0.25").is_killed(values)
    finally:
        ops.CATALOGUE.unregister("mean_abs_error")
    assert "mean_abs_error" not in ops.compare_outputs(np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]]))


def test_catalogue_functions_match_compare_outputs():
    ref = np.array([[3.0, 2.0, 1.0, 0.5], [0.1, 0.2, 0.3, 0.4]])
    other = np.array([[2.0, 3.0, 1.0, 0.5], [0.1, 0.2, 0.35, 0.4]])
    values = ops.compare_outputs(ref, other, [1.0, 1.0], [2.0, 2.0], k=5)
    assert list(values) == list(ops.CATALOGUE)  # every catalogued metric, in the catalogue's order
    for name, entry in ops.CATALOGUE.items():
        if name == "latency_ratio":
            assert values[name] == entry.summary([1.0, 1.0], [2.0, 2.0]) == 2.0
        else:
            assert values[name] == pytest.approx(entry.summary(ref, other))
    # top-1 flips on image 0 only; max |diff| = 1.0 (classes 0 and 1 of image 0)
    assert values["top1_agreement"] == 0.5
    assert values["max_abs_error"] == 1.0


def test_compare_outputs_identical_and_without_latencies():
    ref = np.array([[0.1, 2.0, -1.0], [5.0, 4.0, 3.0]])
    values = ops.compare_outputs(ref, ref.copy())
    assert values["top1_agreement"] == values["topk_overlap"] == values["kendall_tau"] == 1.0
    assert values["rbo"] == pytest.approx(1.0)
    assert values["cosine"] == pytest.approx(1.0)
    assert values["max_abs_error"] == values["rel_l2"] == 0.0
    assert math.isnan(values["latency_ratio"])
    assert all(isinstance(v, float) for v in values.values())


def test_compare_outputs_with_nan_row_never_looks_closer():
    ref = np.array([[1.0, 0.0], [1.0, 0.0]])
    other = np.array([[1.0, 0.0], [NAN, NAN]])
    values = ops.compare_outputs(ref, other)
    assert values["top1_agreement"] == 0.5
    assert values["kendall_tau"] == 0.0   # (1 + -1) / 2
    assert values["max_abs_error"] == INF
    assert values["rel_l2"] == INF
    assert values["cosine"] == 0.0        # (1 + -1) / 2
    assert not any(math.isnan(v) for k, v in values.items() if k != "latency_ratio")


# ---------------------------------------------------------------- kill criteria
@pytest.mark.parametrize("text, operator, threshold, comparison", [
    ("top1_agreement < 1.0", "top1_agreement", 1.0, "<"),
    ("rel_l2 > 1e-3", "rel_l2", 1e-3, ">"),
    ("kendall_tau<0.9", "kendall_tau", 0.9, "<"),
    ("  latency_ratio   >   1.5 ", "latency_ratio", 1.5, ">"),
    ("cosine < -0.5", "cosine", -0.5, "<"),
])
def test_parse_criterion_accepts(text, operator, threshold, comparison):
    c = parse_criterion(text)
    assert c == KillCriterion(operator, threshold)
    assert c.comparison == comparison
    assert parse_criterion(str(c)) == c


@pytest.mark.parametrize("text, message", [
    ("accuracy < 0.9", "unknown operator 'accuracy'"),
    ("top5 < 0.9", "unknown operator 'top5'"),
    ("top1_agreement == 1.0", "bad comparison '=='"),
    ("top1_agreement <= 1.0", "bad comparison '<='"),
    ("top1_agreement > 0.5", "bad comparison '>'.*higher_is_closer"),
    ("rel_l2 < 1e-3", "bad comparison '<'.*lower_is_closer"),
    ("top1_agreement < high", "bad threshold 'high'"),
    ("top1_agreement < nan", "bad threshold 'nan'.*finite"),
    ("rel_l2 > inf", "bad threshold 'inf'"),
    ("top1_agreement < 1.0 0.5", "bad threshold"),
    ("top1_agreement 1.0", "cannot read"),
    ("top1_agreement <", "cannot read"),
    ("", "cannot read"),
])
def test_parse_criterion_errors_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_criterion(text)


def test_kill_criterion_constructor_validates():
    with pytest.raises(ValueError, match="unknown metric"):
        KillCriterion("nope", 1.0)
    with pytest.raises(ValueError, match="finite"):
        KillCriterion("rbo", NAN)


def test_is_killed_follows_direction_and_treats_non_finite_as_killed():
    low = parse_criterion("kendall_tau < 0.9")
    assert low.is_killed({"kendall_tau": 0.5})
    assert not low.is_killed({"kendall_tau": 0.9})   # strict: at the threshold survives
    assert not low.is_killed({"kendall_tau": 0.95})
    assert low.is_killed({"kendall_tau": NAN})
    high = parse_criterion("rel_l2 > 1e-3")
    assert high.is_killed({"rel_l2": 0.01})
    assert not high.is_killed({"rel_l2": 1e-4})
    assert high.is_killed({"rel_l2": INF})
    with pytest.raises(ValueError, match="lack"):
        high.is_killed({"kendall_tau": 1.0})


def test_default_criterion_kills_on_one_flipped_image():
    assert ops.DEFAULT_CRITERION == parse_criterion("top1_agreement < 1.0")
    ref = np.array([[1.0, 0.0]] * 100)
    other = ref.copy()
    assert not ops.DEFAULT_CRITERION.is_killed(ops.compare_outputs(ref, other))
    other[37] = [0.0, 1.0]  # one of 100 images flips
    assert ops.DEFAULT_CRITERION.is_killed(ops.compare_outputs(ref, other))


# ---------------------------------------------------------------- room boundary
def test_operators_imports_no_frameworks_or_sibling_rooms():
    code = ("import sys, operators; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tvm', 'torch', 'onnx', 'onnxruntime', 'tensorflow', 'mutatenn', 'mutators', 'reports')]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == ""
