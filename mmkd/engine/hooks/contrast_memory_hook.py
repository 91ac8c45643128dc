"""Hands the training set's labels to the contrast memories of a model (CRD)."""
import numpy as np
from mmengine.hooks import Hook

from mmkd.losses.contrast_memory import ContrastMemory
from mmkd.registry import HOOKS
from mmkd.utils import unwrap


def dataset_labels(dataset) -> np.ndarray:
    """The single class label of every sample of ``dataset``, in its order."""
    if hasattr(dataset, 'get_gt_labels'):  # mmpretrain's datasets
        labels = dataset.get_gt_labels()
    else:
        labels = [dataset.get_data_info(i)['gt_label'] for i in range(len(dataset))]
    try:
        return np.asarray(labels, dtype=np.int64).reshape(len(dataset))
    except (TypeError, ValueError) as err:
        raise ValueError(
            'ContrastMemoryHook needs one class label per training sample (a single-label '
            "dataset); with other datasets use CRDLoss(negatives='uniform').") from err


@HOOKS.register_module()
class ContrastMemoryHook(Hook):
    """Checks the contrast memories against the training set and gives them its labels.

    Before training (after a resume has loaded the checkpoint), every
    :class:`~mmkd.losses.contrast_memory.ContrastMemory` in the model (those
    of :class:`~mmkd.losses.CRDLoss`) is checked to have one row per
    training sample, and receives the class of every sample, by dataset
    index: :class:`~mmkd.losses.CRDLoss` draws each anchor's negatives from
    the samples of the other classes, as the authors' CIFAR-100 dataset
    does. The labels are not saved in checkpoints; every run reads them
    here.

    Example:
        >>> custom_hooks = [dict(type='ContrastMemoryHook')]
    """

    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        memories = [m for m in unwrap(runner.model).modules() if isinstance(m, ContrastMemory)]
        if not memories:
            return
        dataset = runner.train_dataloader.dataset
        for memory in memories:
            if memory.num_samples != len(dataset):
                raise ValueError(
                    f'a contrast memory has {memory.num_samples} rows but the training set has '
                    f'{len(dataset)} samples: set the loss\'s num_samples={len(dataset)}.')
        labels = dataset_labels(dataset)
        for memory in memories:
            memory.set_labels(labels)
        runner.logger.info(f'ContrastMemoryHook: {len(labels)} training labels, '
                           f'{len(np.unique(labels))} classes, for {len(memories)} '
                           'contrast memor' + ('y' if len(memories) == 1 else 'ies'))
