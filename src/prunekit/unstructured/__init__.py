"""Unstructured pruning: per-weight criteria, one-shot masks and the gradual AGP schedule."""
from prunekit.unstructured.criteria import (
    WEIGHT_CRITERIA, lamp_layer, lamp_scores, magnitude_scores, obd_scores, random_scores, weight_scores,
)
from prunekit.unstructured.prune import layer_sparsities, masks_from_scores, prune_unstructured
from prunekit.unstructured.schedule import AGPPruner, agp_sparsity

__all__ = [
    "WEIGHT_CRITERIA", "lamp_layer", "lamp_scores", "magnitude_scores", "obd_scores", "random_scores",
    "weight_scores", "layer_sparsities", "masks_from_scores", "prune_unstructured", "AGPPruner", "agp_sparsity",
]
