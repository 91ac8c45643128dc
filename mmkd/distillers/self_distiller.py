"""Self-distillation: Be Your Own Teacher (Zhang et al., ICCV 2019)."""
import copy
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from mmkd.losses import KDLoss
from mmkd.losses.functional import class_indices, tempered_log_softmax, tempered_softmax
from mmkd.registry import MODELS

from .distiller import Distiller
from .errors import DistillerConfigError
from .references import RecordRef, Resolver

_PREFIX = 'byot_'  # names of the records this distiller adds to the student's
#: Forms of the deepest-to-shallow KD term: the authors' soft cross-entropy, or Hinton's KD.
KD_FORMS = ('soft_ce', 'kl_tau2')


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor,
                       tau: float) -> torch.Tensor:
    r"""BYOT's KD term as the authors' code computes it (no :math:`\tau^2`).

    .. math::
        \mathrm{CE}_\tau(q_i, q_C) = -\frac{1}{N} \sum_{n=1}^{N} \sum_{c}
        \mathrm{softmax}(q_{C,n} / \tau)_c \, \log \mathrm{softmax}(q_{i,n} / \tau)_c

    It differs from :math:`\mathrm{KL}(\mathrm{softmax}(q_C/\tau) \,\|\,
    \mathrm{softmax}(q_i/\tau))` by the entropy of the target, a constant
    for the student: the gradient is the KL's. Computed in fp32.

    Args:
        logits: The auxiliary classifier's logits :math:`q_i`, (N, C).
        target_logits: The deepest classifier's logits :math:`q_C`, (N, C);
            used as they are (detach them first).
        tau: Temperature :math:`\tau`.
    """
    target = tempered_softmax(target_logits, tau)
    return -(target * tempered_log_softmax(logits, tau)).sum(1).mean()


def feature_l2_distance(feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""BYOT's hint as the authors' code computes it: ``torch.dist``, the L2 norm
    of the whole difference over the batch (not squared, not averaged).

    .. math::
        \| A_i - F_C \|_2 = \Big(\sum_{n, c} (A_{i,nc} - F_{C,nc})^2\Big)^{1/2}

    Computed in fp32; the gradient at a zero difference is zero.
    """
    return torch.linalg.vector_norm((feature.float() - target.float()).flatten())


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
    classifier :math:`i` with logits :math:`q_i` and pooled bottleneck
    feature :math:`f_i` (the vector its fc classifies), the terms of the
    authors' final code (``pytorch-self-distillation-final``, ``train.py``):

    .. math::
        \mathcal{L}_i = (1 - \alpha)\, \mathrm{CE}(q_i, y)
        + \alpha\, \mathrm{CE}_\tau\big(q_i, q_C\big)
        + \lambda\, \big\| W_i f_i + b_i - f_C \big\|_2

    where :math:`q_C` is the deepest classifier's logits and :math:`f_C` the
    deepest feature pooled over its positions (what the neck hands the
    deepest fc), both fixed targets (detached: no gradient flows from the
    auxiliary terms into them). :math:`\mathrm{CE}_\tau` is the soft
    cross-entropy at temperature :math:`\tau`, without :math:`\tau^2`
    (:func:`soft_cross_entropy`); the hint is the L2 norm of the whole
    difference over the batch (``torch.dist``, :func:`feature_l2_distance`)
    after a learnable linear adaptation :math:`(W_i, b_i)` per classifier
    (the authors' ``adaptation_layers``, ``nn.Linear``, trained with the
    student and not exported). As in that code the hint is left out for the
    classifier on the stage just below the deepest one (``if index != 1``;
    its comment says "the shallowest", its index is the deepest auxiliary
    classifier): by default every classifier but the last of
    ``aux_sources`` gets it (``hint_on`` names them otherwise). The terms are
    logged as ``loss_<name>_ce``, ``loss_<name>_kd`` and ``loss_<name>_hint``.

    ``kd_loss='kl_tau2'`` replaces the KD term by Hinton's
    :math:`\tau^2\, \mathrm{KL}(\mathrm{softmax}(q_C/\tau) \,\|\,
    \mathrm{softmax}(q_i/\tau))` (:class:`~mmkd.losses.KDLoss`; mmkd's form
    before issue #19, :math:`\tau^2 = 9` times the authors' gradient at
    :math:`\tau = 3`), for comparison with KD configs' scales.

    The auxiliary classifiers and adaptation layers live in the distiller
    (``aux_heads``, ``hint_adapters``), not in the student: ``predict`` and
    ``tensor`` run the plain student and
    ``tools/model_converters/export_student.py`` writes a plain checkpoint
    without them. This class is a :class:`Distiller` without teachers plus
    those classifiers and their terms; extra connectors and losses on the
    student's records work as in :class:`Distiller`.

    Fidelity: docs/fidelity.md#byot

    Args:
        student: Student model dict or ``dict(cfg_path=...)``.
        aux_sources: Name -> module path (or recorder config) of each
            shallow stage that gets a classifier, shallow to deep, e.g.
            ``dict(layer1='backbone.layer1', layer2='backbone.layer2')``.
        deepest: Module path or recorder config of the deepest feature (the
            one pooled by the neck). The default records the last output
            of ``backbone``.
        logits: Module path or recorder config of the deepest classifier's
            logits.
        aux_head: Config of the auxiliary classifiers; ``in_channels``,
            ``out_channels``, ``num_classes`` and ``num_downsamples`` left
            out are taken from the dry run.
        tau: KD temperature :math:`\tau` (the authors' code uses 3).
        kd_weight: :math:`\alpha` (the authors' code uses 0.3).
        hint_weight: :math:`\lambda` (the authors' code uses 0.03).
        ce_weight: Weight of the auxiliary cross-entropy; defaults to
            :math:`1 - \alpha`.
        kd_loss: ``'soft_ce'`` (the authors' code) or ``'kl_tau2'``.
        hint_on: Names of the auxiliary classifiers that get the hint;
            ``None``: all but the last of ``aux_sources`` (the authors' rule).
        recorders: See :class:`Distiller`, as ``student_recorders``,
            ``connectors``, ``losses``, ``dry_run_shape``,
            ``student_channels_last``, ``data_preprocessor`` and ``init_cfg``.

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
                 ce_weight: Optional[float] = None, kd_loss: str = 'soft_ce',
                 hint_on: Optional[Sequence[str]] = None, recorders: Optional[dict] = None,
                 student_recorders: Optional[dict] = None, connectors: Optional[dict] = None,
                 losses: Optional[dict] = None, dry_run_shape: Optional[Sequence[int]] = None,
                 student_channels_last: bool = True, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if not aux_sources or not isinstance(aux_sources, dict):
            raise DistillerConfigError(
                'SelfDistiller needs aux_sources=dict(<name>=<module path of a shallow stage>, '
                "...), e.g. dict(layer1='backbone.layer1', layer2='backbone.layer2').")
        if kd_loss not in KD_FORMS:
            raise DistillerConfigError(f'SelfDistiller kd_loss must be one of {KD_FORMS}; got '
                                       f'{kd_loss!r}.')
        if tau <= 0:
            raise DistillerConfigError(f'SelfDistiller tau must be positive; got {tau}.')
        names = list(aux_sources)
        hint_on = names[:-1] if hint_on is None else list(hint_on)
        unknown = [n for n in hint_on if n not in aux_sources]
        if unknown:
            raise DistillerConfigError(f'SelfDistiller hint_on names {unknown}, which are not '
                                       f'auxiliary classifiers; aux_sources: {names}.')
        own = {f'{_PREFIX}deepest': _recorder_cfg(deepest, 'deepest'),
               f'{_PREFIX}logits': _recorder_cfg(logits, 'logits')}
        for name, source in aux_sources.items():
            own[f'{_PREFIX}{name}'] = _recorder_cfg(source, f'aux_sources[{name!r}]')
        super().__init__(student, recorders=recorders,
                         student_recorders={**dict(student_recorders or {}), **own},
                         connectors=connectors, losses=losses, dry_run_shape=dry_run_shape,
                         student_channels_last=student_channels_last,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.aux_names = names
        self.aux_head_cfg = copy.deepcopy(dict(aux_head))
        self.tau = tau
        self.kd_weight = kd_weight
        self.hint_weight = hint_weight
        self.ce_weight = 1.0 - kd_weight if ce_weight is None else ce_weight
        self.kd_loss = kd_loss
        self.hint_on = hint_on
        self.kd = KDLoss(tau=tau, loss_weight=kd_weight) if kd_loss == 'kl_tau2' else None
        self.aux_heads = nn.ModuleDict()
        self.hint_adapters = nn.ModuleDict()

    def setup_from_dry_run(self, resolve: Resolver) -> None:
        """Build the auxiliary classifiers from the dry run's stage shapes, and the
        linear adaptation of each hinted one (its pooled width -> the deepest's)."""
        deepest_channels = resolve(RecordRef('student', f'{_PREFIX}deepest')).shape[1]
        for name in self.aux_names:
            head = self._build_aux_head(name, copy.deepcopy(self.aux_head_cfg), resolve)
            self.aux_heads[name] = head
            if name in self.hint_on:
                self.hint_adapters[name] = nn.Linear(head.fc.in_features, deepest_channels)

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
        labels = class_indices(data_samples, 'SelfDistiller')
        if labels is None:
            raise DistillerConfigError(
                'SelfDistiller trains its auxiliary classifiers on the ground-truth labels: '
                'every data sample needs gt_label (soft labels such as mixup are not supported).')
        return labels

    def extra_losses(self, resolve: Resolver, data_samples) -> Dict[str, torch.Tensor]:
        """The BYOT terms of every auxiliary classifier (the cross-entropy only
        with labels, i.e. not in the build-time check)."""
        target_logits = resolve(RecordRef('student', f'{_PREFIX}logits')).detach()
        # The deepest classifier's feature: the deepest map pooled over its positions.
        target_feature = resolve(RecordRef('student', f'{_PREFIX}deepest')).detach()
        target_feature = target_feature.float().mean((2, 3))
        labels = None
        if data_samples is not None:
            labels = self._gt_labels(data_samples).to(target_logits.device)
        losses = {}
        for name, head in self.aux_heads.items():
            feature, logits = head(resolve(RecordRef('student', f'{_PREFIX}{name}')))
            if labels is not None:
                losses[f'loss_{name}_ce'] = self.ce_weight * F.cross_entropy(logits.float(),
                                                                             labels)
            if self.kd is not None:
                losses[f'loss_{name}_kd'] = self.kd(logits, target_logits)
            else:
                losses[f'loss_{name}_kd'] = self.kd_weight * soft_cross_entropy(
                    logits, target_logits, self.tau)
            if name in self.hint_adapters:
                adapted = self.hint_adapters[name](feature.float().mean((2, 3)))
                losses[f'loss_{name}_hint'] = self.hint_weight * feature_l2_distance(
                    adapted, target_feature)
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
