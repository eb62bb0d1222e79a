"""Comparison operators (metrics): how far another output is from a reference output.

Pure numpy/scipy. Logits are (N images, C classes) arrays; each operator has a
per-image form (`<name>_per_image`, length N) and a summary form (`<name>`, a float).
"""
from operators.catalogue import (
    CATALOGUE,
    HIGHER_IS_CLOSER,
    LOWER_IS_CLOSER,
    Catalogue,
    Metric,
    compare_outputs,
)
from operators.criteria import DEFAULT_CRITERION, KillCriterion, parse_criterion
from operators.distance import (
    cosine,
    cosine_per_image,
    max_abs_error,
    max_abs_error_per_image,
    rel_l2,
    rel_l2_per_image,
)
from operators.latency import latency_ratio, latency_ratio_per_image
from operators.ranking import (
    accuracy,
    accuracy_per_image,
    flipped_images,
    kendall_tau,
    kendall_tau_per_image,
    rbo,
    rbo_per_image,
    top1_agreement,
    top1_agreement_per_image,
    topk,
    topk_overlap,
    topk_overlap_per_image,
)

__all__ = [
    "CATALOGUE", "HIGHER_IS_CLOSER", "LOWER_IS_CLOSER", "Catalogue", "Metric", "compare_outputs",
    "DEFAULT_CRITERION", "KillCriterion", "parse_criterion",
    "cosine", "cosine_per_image", "max_abs_error", "max_abs_error_per_image", "rel_l2", "rel_l2_per_image",
    "latency_ratio", "latency_ratio_per_image",
    "accuracy", "accuracy_per_image", "flipped_images", "kendall_tau", "kendall_tau_per_image",
    "rbo", "rbo_per_image", "top1_agreement", "top1_agreement_per_image", "topk", "topk_overlap",
    "topk_overlap_per_image",
]
