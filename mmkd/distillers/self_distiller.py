"""Self-distillation: Be Your Own Teacher (Zhang et al., ICCV 2019)."""
import copy
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from mmkd.losses import KDLoss, MSELoss
from mmkd.registry import MODELS

from .distiller import Distiller
from .errors import DistillerConfigError
from .references import RecordRef, Resolver

_PREFIX = 'byot_'  # names of the records this distiller adds to the student's


def _recorder_cfg(value: Union[str, dict], where: str) -> dict:
    if isinstance(value, str):
        return dict(type='ModuleOutputs', source=value)
    if isinstance(value, dict):
        return dict(value)
    raise DistillerConfigError(f'{where} must be a module path or a recorder config; got '
                               f'{value!r}.')


def _stride2_steps(size: int, target: int) -> int:
    """How many 3x3 stride-2 convs (padding 1) bring ``size`` to ``target``."""
    steps = 0
    while size > target:
        size, steps = (size - 1) // 2 + 1, steps + 1
    return steps if size == target else -1


@MODELS.register_module()
class SelfDistiller(Distiller):
    r"""The deepest classifier of a net teaches classifiers on its shallower stages.

    Be Your Own Teacher (BYOT) attaches an auxiliary classifier
    (:class:`~mmkd.connectors.AuxiliaryClassifier`: bottleneck + pooling +
    fc) to each named shallow stage. The student trains with its own loss
    (cross-entropy of the deepest classifier) plus, for every auxiliary
    classifier :math:`i` with logits :math:`q_i` and bottleneck feature
    :math:`F_i`:

    .. math::
        \mathcal{L}_i = (1 - \alpha)\, \mathrm{CE}(q_i, y)
        + \alpha\, \tau^2\, \mathrm{KL}\big(\mathrm{softmax}(q_C / \tau) \,\|\,
          \mathrm{softmax}(q_i / \tau)\big)
        + \lambda\, \frac{1}{|F|} \| F_i - F_C \|_2^2

    where :math:`q_C` and :math:`F_C` are the deepest classifier's logits
    and the deepest feature, used as fixed targets (no gradient flows from
    the auxiliary terms into them). The terms are logged as
    ``loss_<name>_ce``, ``loss_<name>_kd`` and ``loss_<name>_hint``.

    The auxiliary classifiers live in the distiller (``aux_heads``), not in
    the student: ``predict`` and ``tensor`` run the plain student and
    ``tools/model_converters/export_student.py`` writes a plain checkpoint
    without them. This class is a :class:`Distiller` without teachers plus
    those classifiers and their terms; extra connectors and losses on the
    student's records work as in :class:`Distiller`.

    Args:
        student: Student model dict or ``dict(cfg_path=...)``.
        aux_sources: Name -> module path (or recorder config) of each
            shallow stage that gets a classifier, e.g.
            ``dict(layer1='backbone.layer1', layer2='backbone.layer2')``.
        deepest: Module path or recorder config of the deepest feature (the
            one pooled by the neck). The default records the last output
            of ``backbone``.
        logits: Module path or recorder config of the deepest classifier's
            logits.
        aux_head: Config of the auxiliary classifiers; ``in_channels``,
            ``out_channels``, ``num_classes`` and ``num_downsamples`` left
            out are taken from the dry run.
        tau: KD temperature :math:`\tau` (the paper's code uses 3).
        kd_weight: :math:`\alpha` (the paper's code uses 0.3).
        hint_weight: :math:`\lambda` (the paper's code uses 0.03).
        ce_weight: Weight of the auxiliary cross-entropy; defaults to
            :math:`1 - \alpha`.
        recorders, student_recorders, connectors, losses, dry_run_shape,
        data_preprocessor, init_cfg: see :class:`Distiller`.

    Example (config)::

        model = dict(
            type='SelfDistiller',
            student=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
            aux_sources=dict(layer1='backbone.layer1', layer2='backbone.layer2'),
            tau=3, kd_weight=0.3, hint_weight=0.03, dry_run_shape=(1, 28, 28))
    """

    requires_teacher = False

    def __init__(self, student: dict, aux_sources: Optional[Dict[str, Union[str, dict]]] = None,
                 deepest: Union[str, dict] = dict(type='ModuleOutputs', source='backbone',
                                                  item=-1),
                 logits: Union[str, dict] = 'head.fc',
                 aux_head: dict = dict(type='AuxiliaryClassifier'), tau: float = 3.0,
                 kd_weight: float = 0.3, hint_weight: float = 0.03,
                 ce_weight: Optional[float] = None, recorders: Optional[dict] = None,
                 student_recorders: Optional[dict] = None, connectors: Optional[dict] = None,
                 losses: Optional[dict] = None, dry_run_shape: Optional[Sequence[int]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        if not aux_sources or not isinstance(aux_sources, dict):
            raise DistillerConfigError(
                'SelfDistiller needs aux_sources=dict(<name>=<module path of a shallow stage>, '
                "...), e.g. dict(layer1='backbone.layer1', layer2='backbone.layer2').")
        own = {f'{_PREFIX}deepest': _recorder_cfg(deepest, 'deepest'),
               f'{_PREFIX}logits': _recorder_cfg(logits, 'logits')}
        for name, source in aux_sources.items():
            own[f'{_PREFIX}{name}'] = _recorder_cfg(source, f'aux_sources[{name!r}]')
        super().__init__(student, recorders=recorders,
                         student_recorders={**dict(student_recorders or {}), **own},
                         connectors=connectors, losses=losses, dry_run_shape=dry_run_shape,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.aux_names = list(aux_sources)
        self.aux_head_cfg = copy.deepcopy(dict(aux_head))
        self.ce_weight = 1.0 - kd_weight if ce_weight is None else ce_weight
        self.kd = KDLoss(tau=tau, loss_weight=kd_weight)
        self.hint = MSELoss(loss_weight=hint_weight)
        self.aux_heads = nn.ModuleDict()

    def setup_from_dry_run(self, resolve: Resolver) -> None:
        """Build the auxiliary classifiers from the dry run's stage shapes."""
        for name in self.aux_names:
            self.aux_heads[name] = self._build_aux_head(
                name, copy.deepcopy(self.aux_head_cfg), resolve)

    def _build_aux_head(self, name: str, cfg: dict, resolve: Resolver) -> nn.Module:
        source = resolve(RecordRef('student', f'{_PREFIX}{name}'))
        deepest = resolve(RecordRef('student', f'{_PREFIX}deepest'))
        logits = resolve(RecordRef('student', f'{_PREFIX}logits'))
        where = f'SelfDistiller aux head {name!r}'
        for what, value, dims in (('aux_sources', source, 4), ('deepest', deepest, 4),
                                  ('logits', logits, 2)):
            if not isinstance(value, torch.Tensor) or value.dim() != dims:
                raise DistillerConfigError(
                    f'{where}: the {what} record must be a {dims}-d tensor; got '
                    f'{getattr(value, "shape", type(value).__name__)}. Point it at another '
                    'module (or set item= on its recorder for a tuple output).')
        cfg.setdefault('in_channels', source.shape[1])
        cfg.setdefault('out_channels', deepest.shape[1])
        cfg.setdefault('num_classes', logits.shape[1])
        if 'num_downsamples' not in cfg:
            steps = _stride2_steps(source.shape[2], deepest.shape[2])
            if steps < 0 or _stride2_steps(source.shape[3], deepest.shape[3]) != steps:
                raise DistillerConfigError(
                    f'{where}: no number of stride-2 convs turns {tuple(source.shape[2:])} '
                    f'into the deepest feature\'s {tuple(deepest.shape[2:])}; give '
                    'aux_head=dict(num_downsamples=...) or record another stage.')
            cfg['num_downsamples'] = steps
        head = MODELS.build(cfg)
        was_training = head.training
        head.eval()
        with torch.no_grad():
            feature, _ = head(source)
        head.train(was_training)
        if feature.shape[1:] != deepest.shape[1:]:
            raise DistillerConfigError(
                f'{where}: its bottleneck gives {tuple(feature.shape[1:])} but the deepest '
                f'feature is {tuple(deepest.shape[1:])}; the hint needs equal shapes.')
        return head

    @staticmethod
    def _gt_labels(data_samples) -> torch.Tensor:
        if not data_samples or any(getattr(s, 'gt_label', None) is None for s in data_samples):
            raise DistillerConfigError(
                'SelfDistiller trains its auxiliary classifiers on the ground-truth labels: '
                'every data sample needs gt_label (soft labels such as mixup are not supported).')
        return torch.cat([s.gt_label.view(-1)[:1] for s in data_samples])

    def extra_losses(self, resolve: Resolver, data_samples) -> Dict[str, torch.Tensor]:
        """The BYOT terms of every auxiliary classifier (the cross-entropy only
        with labels, i.e. not in the build-time check)."""
        target_logits = resolve(RecordRef('student', f'{_PREFIX}logits')).detach()
        target_feature = resolve(RecordRef('student', f'{_PREFIX}deepest')).detach()
        labels = None
        if data_samples is not None:
            labels = self._gt_labels(data_samples).to(target_logits.device)
        losses = {}
        for name, head in self.aux_heads.items():
            feature, logits = head(resolve(RecordRef('student', f'{_PREFIX}{name}')))
            if labels is not None:
                losses[f'loss_{name}_ce'] = self.ce_weight * F.cross_entropy(logits.float(),
                                                                             labels)
            losses[f'loss_{name}_kd'] = self.kd(logits, target_logits)
            losses[f'loss_{name}_hint'] = self.hint(feature, target_feature)
        return losses

    @torch.no_grad()
    def predict_all(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Logits of every classifier (auxiliary ones and ``'deepest'``) on ``inputs``.

        Useful to evaluate the shallow classifiers, which the exported student
        does not contain.
        """
        with self.student_records.recording():
            self.student(inputs, mode='tensor')
        records = self.student_records
        out = {name: head(records[f'{_PREFIX}{name}'].get())[1]
               for name, head in self.aux_heads.items()}
        out['deepest'] = records[f'{_PREFIX}logits'].get()
        records.reset()
        return out
