"""Knowledge quantification (Cheng et al., CVPR 2020): the metrics and the probe of a net."""
from .foreground import (
    box_foreground,
    cell_foreground,
    segmentation_foreground,
    threshold_foreground,
)
from .layer_entropy import layer_feature_fn, measure_entropy
from .pixel_entropy import (
    UNIT_GAUSSIAN_ENTROPY,
    SigmaResult,
    gaussian_entropy,
    optimise_sigma,
    perturbation_loss,
    upsample_cells,
)
from .probe import ProbeSettings, build_probe_set
from .stability import concept_stability, nanmean
from .summary import summarize_knowledge
from .visual_concepts import ConceptCounts, count_concepts, foreground_ratio
from .weight_distance import WeightPath, accumulated_distances, distance_at_peak, flat_weights

__all__ = ['box_foreground', 'cell_foreground', 'segmentation_foreground',
           'threshold_foreground', 'UNIT_GAUSSIAN_ENTROPY', 'SigmaResult', 'gaussian_entropy',
           'optimise_sigma', 'perturbation_loss', 'upsample_cells',
           'summarize_knowledge', 'concept_stability', 'nanmean', 'ConceptCounts',
           'count_concepts', 'foreground_ratio', 'WeightPath', 'accumulated_distances',
           'distance_at_peak', 'flat_weights', 'layer_feature_fn', 'measure_entropy',
           'ProbeSettings', 'build_probe_set']
