"""Deep Mutual Learning: a cohort of classifiers that teach each other."""
import contextlib
from collections import OrderedDict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine import dist
from mmengine.optim import OptimWrapperDict
from torch import nn

from mmkd.registry import MODELS

from .builder import build_model_from_cfg, model_cfg_from
from .errors import DistillerConfigError
from .nets import MEMBER, DistillationModel, Net
from .norm_mode import batch_statistics

ORDERS = ('sequential', 'synchronous')
ENSEMBLE = 'ensemble'


class CohortMismatchError(RuntimeError):
    """The processes of a distributed cohort do not see the same batch."""


def is_unlabeled(sample) -> bool:
    """Whether a data sample is marked unlabelled (``gt_label`` of -1)."""
    label = sample.get('gt_label', None) if sample is not None else None
    return label is not None and label.numel() > 0 and bool((label < 0).all())


@MODELS.register_module()
class MutualLearner(DistillationModel):
    r"""A cohort of K >= 2 classifiers trained together by Deep Mutual Learning.

    Zhang, Xiang, Hospedales, Lu. *Deep Mutual Learning.* CVPR 2018. There is
    no pre-trained teacher: member :math:`k` minimises its own task loss plus
    the mimicry loss towards its peers (:class:`~mmkd.losses.DMLLoss`),

    .. math::
        L_{\Theta_k} = L_{C_k} + \frac{1}{K-1} \sum_{j \ne k}
        \mathrm{KL}(p_j \,\|\, p_k).

    Each member has its own optimizer wrapper (MMEngine's ``OptimWrapperDict``,
    built by ``CohortOptimWrapperConstructor``) and its own log keys:
    ``<name>/loss`` (what its optimizer minimises), ``<name>/loss_task`` and
    ``<name>/loss_dml``; ``loss`` is the cohort's sum.

    Update orders (``order``):

    * ``'sequential'`` - the paper's Algorithm 1: member 1 is updated, the
      predictions of updated members are computed again on the same batch
      (BN on batch statistics, without moving the stored ones), then member 2 learns from
      them, and so on. K - 1 extra forward passes without grad per step
      (the last member's update is needed by no one).
    * ``'synchronous'`` - every member learns from the predictions all
      members made before any update (one forward pass each).

    Semi-supervised: samples whose ``gt_label`` is -1 (see
    :class:`~mmkd.datasets.PartiallyLabeledDataset`) give no task loss; every
    sample gives the mimicry loss.

    Evaluation: ``predict`` returns data samples whose ``pred_score`` /
    ``pred_label`` are the cohort ensemble's (mean of the members'
    probabilities; or one member's, see ``predict_with``) and whose
    ``member_preds`` field holds each member's ``pred_score`` /
    ``pred_label``. :class:`~mmkd.evaluation.CohortMetric` reports any metric
    for each member and the ensemble.

    Distributed DML (``distributed=True``): launched with one process per
    member (``tools/dist_train.sh CONFIG K``), rank k builds and trains only
    member k; the processes exchange the (N, C) probabilities of each batch
    (``all_gather``), never weights or gradients. Every process must load
    the same batches (``SharedSampler``); use ``runner_type='CohortRunner'``,
    which skips DDP and saves all members into one checkpoint.

    Members are built inside a random-number stream of their own (seeded by
    the run's seed and their index), so a cohort starts from the same
    weights in one process and in K processes.

    Args:
        members: Member configs by name (the update order), or a list (named
            ``member0``, ``member1``, ...). Each is a model dict or
            ``dict(cfg_path=..., **overrides)`` of an mmpretrain-style
            classifier (``extract_feat``, ``head.loss``, ``head`` forward).
        loss: The mimicry loss config (``DMLLoss`` options: ``tau``,
            ``form='js'``, ``ensemble=True`` for DML_e, ``loss_weight``).
        order: ``'sequential'`` or ``'synchronous'``.
        distributed: One member per process (see above).
        predict_with: ``'ensemble'`` or a member name: whose prediction fills
            ``pred_score`` / ``pred_label``.
        data_preprocessor: Applied once to every batch, for all members
            (the runner passes the config's top-level one); by default the
            first member's.
        init_cfg: MMEngine init config.

    Example (config)::

        model = dict(
            type='MutualLearner',
            members=dict(a=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py'),
                         b=dict(cfg_path='mmkd::models/resnet8_fashionmnist.py')),
            loss=dict(type='DMLLoss', tau=1.0))
        optim_wrapper = dict(constructor='CohortOptimWrapperConstructor',
                             optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
        val_evaluator = dict(type='CohortMetric',
                             metric=dict(type='mmpretrain.Accuracy', topk=(1, )))
    """

    def __init__(self, members: Union[Dict[str, dict], Sequence[dict]],
                 loss: Optional[dict] = None, order: str = 'sequential',
                 distributed: bool = False, predict_with: str = ENSEMBLE,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        named = self._parse_members(members)
        if order not in ORDERS:
            raise DistillerConfigError(f'MutualLearner order must be one of {ORDERS}; '
                                       f'got {order!r}.')
        if predict_with != ENSEMBLE and predict_with not in named:
            raise DistillerConfigError(f'predict_with={predict_with!r} is neither '
                                       f'{ENSEMBLE!r} nor a member ({list(named)}).')
        self.member_names: List[str] = list(named)
        self.order = order
        self.distributed = distributed
        self.predict_with = predict_with
        if distributed:
            rank, world = dist.get_rank(), dist.get_world_size()
            if not dist.is_distributed() or world != len(named):
                raise DistillerConfigError(
                    f'distributed=True needs one process per member: {len(named)} members, '
                    f'{world} process(es). Launch with tools/dist_train.sh CONFIG {len(named)}, '
                    'or set distributed=False to train the cohort in one process.')
            local = [self.member_names[rank]]
        else:
            if dist.get_world_size() > 1:
                raise DistillerConfigError(
                    'MutualLearner with distributed=False runs the whole cohort in one process; '
                    'in a multi-process launch set model.distributed=True (one member per '
                    "process) and runner_type='CohortRunner'.")
            local = list(self.member_names)
        self.local_names: List[str] = local

        built = OrderedDict()
        scopes = {}
        for name in local:
            cfg, scopes[name] = model_cfg_from(named[name], f'member {name!r}')
            with self._member_rng(name):
                built[name] = build_model_from_cfg(cfg, scopes[name])
            self._check_member(name, built[name])
        first = built[local[0]]
        if data_preprocessor is None:
            data_preprocessor = first.data_preprocessor
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.members = nn.ModuleDict(built)
        self.dml_loss = MODELS.build(dict(type='DMLLoss') if loss is None else dict(loss))
        if not hasattr(self.dml_loss, 'probs'):
            raise DistillerConfigError(
                f'loss {type(self.dml_loss).__name__} has no `probs(logits)`; MutualLearner '
                'exchanges probabilities between members: use DMLLoss or a subclass.')
        self._register_load_state_dict_pre_hook(self._drop_other_members, with_module=False)

    # ------------------------------------------------------------------ building
    @staticmethod
    def _parse_members(members) -> 'OrderedDict[str, dict]':
        if isinstance(members, dict):
            named = OrderedDict(members)
        elif isinstance(members, (list, tuple)):
            named = OrderedDict((f'member{i}', m) for i, m in enumerate(members))
        else:
            raise DistillerConfigError('MutualLearner members must be a dict {name: model '
                                       f'config}} or a list; got {type(members).__name__}.')
        if len(named) < 2:
            raise DistillerConfigError(f'a cohort needs at least 2 members; got {len(named)}.')
        for name in named:
            if not isinstance(name, str) or not name.isidentifier() or name == ENSEMBLE:
                raise DistillerConfigError(
                    f'member name {name!r}: use a Python identifier other than {ENSEMBLE!r} '
                    '(names prefix log keys and checkpoint keys).')
        return named

    @staticmethod
    def _check_member(name: str, member: nn.Module) -> None:
        head = getattr(member, 'head', None)
        if not hasattr(member, 'extract_feat') or head is None or not hasattr(head, 'loss'):
            raise DistillerConfigError(
                f'member {name!r} ({type(member).__name__}) is not a classifier with '
                '`extract_feat` and a `head` with `loss`: DML members are classifiers such as '
                "mmpretrain's ImageClassifier.")

    @contextlib.contextmanager
    def _member_rng(self, name: str) -> Iterator[None]:
        """A random stream of this member's own, the same in every launch mode."""
        index = self.member_names.index(name)
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        seed = (torch.initial_seed() + 1_000_003 * (index + 1)) % (2**63)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def init_weights(self) -> None:
        for name in self.local_names:
            if hasattr(self.members[name], 'init_weights'):
                with self._member_rng(name):
                    self.members[name].init_weights()

    def _drop_other_members(self, state_dict, prefix, *_args) -> None:
        """A process of a distributed cohort loads only its member's weights."""
        others = [n for n in self.member_names if n not in self.local_names]
        heads = tuple(f'{prefix}members.{n}.' for n in others)
        for key in [k for k in state_dict if heads and k.startswith(heads)]:
            del state_dict[key]

    def nets(self) -> List[Net]:
        """The members held by this process, in update order."""
        return [Net(name, MEMBER, self.members[name], log_prefix=name)
                for name in self.local_names]

    def member_state_dict(self, name: str) -> Dict[str, torch.Tensor]:
        """One member's weights, as the plain classifier holds them."""
        if name not in self.members:
            raise KeyError(f'member {name!r} is not held here; held: {list(self.members)}.')
        return self.members[name].state_dict()

    # ------------------------------------------------------------------ running
    def member_forward(self, name: str, inputs: torch.Tensor) -> Tuple[tuple, torch.Tensor]:
        """A member's features and class scores (logits)."""
        member = self.members[name]
        feats = member.extract_feat(inputs)
        return feats, member.head(feats)

    def _task_losses(self, name: str, feats, logits: torch.Tensor,
                     data_samples) -> Dict[str, torch.Tensor]:
        labelled = [i for i, s in enumerate(data_samples) if not is_unlabeled(s)]
        head = self.members[name].head
        if len(labelled) == len(data_samples):
            losses = head.loss(feats, data_samples)
        elif labelled:
            index = torch.as_tensor(labelled, device=logits.device)
            sub = tuple(f.index_select(0, index) for f in feats) if isinstance(
                feats, (tuple, list)) else feats.index_select(0, index)
            losses = head.loss(sub, [data_samples[i] for i in labelled])
        else:  # a batch without labels: mimicry only
            losses = {'loss': logits.sum() * 0}
        return {('loss_task' if k == 'loss' else k): v for k, v in losses.items()}

    def _exchange(self, own: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Every member's value for this batch (all_gather across processes)."""
        if not self.distributed:
            return dict(own)
        gathered = dist.all_gather(own[self.local_names[0]].contiguous())
        return dict(zip(self.member_names, gathered))

    def _share(self, name: str, probs: Dict[str, torch.Tensor]) -> None:
        """After ``name``'s update, send its new probabilities to every process."""
        if self.distributed:
            dist.broadcast(probs[name], src=self.member_names.index(name))

    def _check_same_batch(self, inputs: torch.Tensor) -> None:
        if not self.distributed:
            return
        x = inputs.detach().double()
        stamp = torch.stack([x.sum(), x.abs().sum(), torch.tensor(float(x.numel()),
                                                                  dtype=x.dtype,
                                                                  device=x.device)])
        stamps = torch.stack(dist.all_gather(stamp))
        if not torch.allclose(stamps, stamps[:1].expand_as(stamps), rtol=1e-9, atol=1e-6):
            raise CohortMismatchError(
                'distributed DML: the processes got different batches, so the members '
                "cannot compare predictions. Use sampler=dict(type='SharedSampler') in "
                'train_dataloader and val_dataloader, and num_workers=0 (worker seeds differ '
                'by rank).')

    def _recompute_probs(self, name: str, inputs: torch.Tensor, optim_wrapper) -> torch.Tensor:
        member = self.members[name]
        with torch.no_grad(), batch_statistics(member, include_eval_layers=False),\
                optim_wrapper.optim_context(member):
            _, logits = self.member_forward(name, inputs)
        return self.dml_loss.probs(logits)

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapperDict) -> Dict[str, torch.Tensor]:
        """One DML step: every member here is updated once on the batch."""
        if not isinstance(optim_wrapper, OptimWrapperDict) or \
                sorted(optim_wrapper.keys()) != sorted(self.local_names):
            got = list(optim_wrapper.keys()) if isinstance(optim_wrapper, OptimWrapperDict) \
                else type(optim_wrapper).__name__
            raise DistillerConfigError(
                f'MutualLearner needs one optimizer wrapper per member {self.local_names}; got '
                f"{got}. Set optim_wrapper=dict(constructor='CohortOptimWrapperConstructor', "
                'optimizer=...) in the config.')
        data = self.data_preprocessor(data, True)
        inputs, samples = data['inputs'], data['data_samples']
        self._check_same_batch(inputs)
        outputs = {}
        for name in self.local_names:
            with optim_wrapper[name].optim_context(self.members[name]):
                feats, logits = self.member_forward(name, inputs)
                outputs[name] = (logits, self._task_losses(name, feats, logits, samples))
        probs = self._exchange({n: self.dml_loss.probs(outputs[n][0]).detach()
                                for n in self.local_names})
        log_vars: Dict[str, torch.Tensor] = OrderedDict()
        last = len(self.member_names) - 1
        for index, name in enumerate(self.member_names):
            if name in outputs:
                logits, losses = outputs[name]
                peers = [probs[n] for n in self.member_names if n != name]
                losses['loss_dml'] = self.dml_loss(logits, peers, teacher_is_prob=True)
                total, parsed = self.parse_losses(losses)
                optim_wrapper[name].update_params(total)
                log_vars.update((f'{name}/{k}', v.detach()) for k, v in parsed.items())
            if self.order == 'sequential' and index < last:
                if name in outputs:
                    probs[name] = self._recompute_probs(name, inputs, optim_wrapper[name])
                self._share(name, probs)
        if self.distributed:
            log_vars = self._gather_logs(log_vars)
        log_vars['loss'] = sum(log_vars[f'{n}/loss'] for n in self.member_names)
        log_vars.move_to_end('loss', last=False)
        return log_vars

    def _gather_logs(self, log_vars: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Every member's log values on every process (rank 0 writes the logs)."""
        device = next(iter(log_vars.values())).device
        merged = OrderedDict()
        for part in dist.all_gather_object({k: float(v) for k, v in log_vars.items()}):
            merged.update((k, torch.tensor(v, device=device)) for k, v in part.items())
        return merged

    def member_probs(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every member's class probabilities (softmax, no temperature)."""
        self._check_same_batch(inputs)
        own = {n: F.softmax(self.member_forward(n, inputs)[1].float(), dim=1)
               for n in self.local_names}
        return self._exchange(own)

    def predict(self, inputs: torch.Tensor, data_samples=None) -> list:
        """Data samples with the ensemble's (or ``predict_with``'s) prediction and
        each member's under ``member_preds``."""
        from mmpretrain.structures import DataSample
        probs = self.member_probs(inputs)
        probs[ENSEMBLE] = torch.stack([probs[n] for n in self.member_names]).mean(0)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(inputs.shape[0])]
        main = probs[self.predict_with]
        for i, sample in enumerate(data_samples):
            sample.set_pred_score(main[i]).set_pred_label(main[i].argmax(0, keepdim=True))
            sample.set_field({n: dict(pred_score=probs[n][i],
                                      pred_label=probs[n][i].argmax(0, keepdim=True))
                              for n in [*self.member_names, ENSEMBLE]}, 'member_preds')
        return data_samples

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return OrderedDict((n, self.member_forward(n, inputs)[1]) for n in self.local_names)
        if mode == 'loss':
            raise RuntimeError(
                "MutualLearner trains through its own train_step (one optimizer per member); "
                "mode='loss' is not used. Under a DDP wrapper? Set model.distributed=True and "
                "runner_type='CohortRunner' for multi-process DML.")
        raise RuntimeError(f'Invalid mode "{mode}". Only supports predict and tensor mode')
