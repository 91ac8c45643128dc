"""Knowledge quantification (Cheng et al., CVPR 2020): pure functions."""
from .foreground import (box_foreground, cell_foreground, segmentation_foreground,
                         threshold_foreground)
from .pixel_entropy import (UNIT_GAUSSIAN_ENTROPY, SigmaResult, gaussian_entropy,
                            optimise_sigma, perturbation_loss, upsample_cells)
from .stability import concept_stability, nanmean
from .summary import summarize_knowledge
from .visual_concepts import ConceptCounts, count_concepts, foreground_ratio
from .weight_distance import (WeightPath, accumulated_distances, distance_at_peak,
                              flat_weights)

__all__ = ['box_foreground', 'cell_foreground', 'segmentation_foreground',
           'threshold_foreground', 'UNIT_GAUSSIAN_ENTROPY', 'SigmaResult', 'gaussian_entropy',
           'optimise_sigma', 'perturbation_loss', 'upsample_cells',
           'summarize_knowledge', 'concept_stability', 'nanmean', 'ConceptCounts',
           'count_concepts', 'foreground_ratio', 'WeightPath', 'accumulated_distances',
           'distance_at_peak', 'flat_weights']
