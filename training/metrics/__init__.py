"""Segmentation, detection, PET and classification metrics (numpy and scipy only, no torch).

Everything here runs wherever the service runs, so evaluation needs no training stack.
"""

from training.metrics.classification import ClassificationScores, classification_scores, roc_auc
from training.metrics.detection import DetectionResult, detect_lesions, detection_summary
from training.metrics.overlap import dice, jaccard
from training.metrics.segmentation import SegmentationScores, score_label, score_labels
from training.metrics.surface import SurfaceDistances, surface_distances

__all__ = [
    "ClassificationScores",
    "DetectionResult",
    "SegmentationScores",
    "SurfaceDistances",
    "classification_scores",
    "detect_lesions",
    "detection_summary",
    "dice",
    "jaccard",
    "roc_auc",
    "score_label",
    "score_labels",
    "surface_distances",
]
