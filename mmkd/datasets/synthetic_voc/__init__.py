"""Small synthetic sets in the Pascal VOC layouts, written to disk.

The detection and segmentation configs' tests and their measured CPU runs read them with
mmdet's ``VOCDataset`` and mmseg's ``PascalVOCDataset`` unchanged
(``tools/dataset_converters/make_synthetic_voc.py`` and ``make_synthetic_voc_det.py``
write them from the command line). :mod:`.fashion_scenes` composes scenes of real
photographed objects for the dense-prediction benchmarks
(``tools/dataset_converters/make_fashion_scenes.py``).
"""
from .detection import make_synthetic_voc_det, set_description
from .fashion_scenes import make_fashion_scenes, scenes_description
from .scenes import mark_prepared, prepared_description
from .segmentation import make_synthetic_voc

__all__ = ['make_synthetic_voc', 'make_synthetic_voc_det', 'set_description',
           'mark_prepared', 'prepared_description', 'make_fashion_scenes', 'scenes_description']
