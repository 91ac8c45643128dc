"""The runner of a distributed cohort: one member per process, no DDP."""
from mmengine.device import get_device
from mmengine.dist import gather_object, get_rank, is_main_process
from mmengine.runner import Runner
from mmengine.runner.checkpoint import weights_to_cpu
from torch import nn

from mmkd.distillers import MutualLearner
from mmkd.registry import RUNNERS
from mmkd.utils import unwrap

from .checkpoint_hook import CohortCheckpointHook


def is_distributed_cohort(model: nn.Module) -> bool:
    """Whether ``model`` is a cohort that holds one member per process."""
    model = unwrap(model)
    return isinstance(model, MutualLearner) and model.distributed


@RUNNERS.register_module()
class CohortRunner(Runner):
    """MMEngine's Runner for distributed Deep Mutual Learning.

    With ``model.distributed=True`` each process holds a different member,
    which MMEngine's defaults would break in three places; this runner:

    * does not wrap the model in DDP (members are not replicas; they share
      probabilities inside ``MutualLearner.train_step``, nothing else);
    * initialises each member on its own process without broadcasting rank
      0's weights over the others;
    * gathers every member's weights, optimizer and scheduler states to rank
      0 before a checkpoint is saved, so one checkpoint holds the cohort
      (:class:`CohortCheckpointHook`), and on resume each process takes its
      own member's states.

    For any other model it is MMEngine's Runner.

    Example (config)::

        runner_type = 'CohortRunner'
        model = dict(type='MutualLearner', distributed=True, members=...)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cohort_hook = CohortCheckpointHook()
        self.register_hook(self.cohort_hook)

    def wrap_model(self, model_wrapper_cfg, model: nn.Module) -> nn.Module:
        if not is_distributed_cohort(model):
            return super().wrap_model(model_wrapper_cfg, model)
        self.logger.info('distributed cohort: each process trains its own member, without DDP.')
        return model.to(get_device())

    def _init_model_weights(self) -> None:
        if not is_distributed_cohort(self.model):
            return super()._init_model_weights()
        unwrap(self.model).init_weights()  # no broadcast: the members differ

    def save_checkpoint(self, *args, **kwargs) -> None:
        """Gather the cohort on rank 0 (all processes call it), then save there."""
        if is_distributed_cohort(self.model):
            model = unwrap(self.model)
            name = model.local_names[0]
            own = dict(model=weights_to_cpu(model.member_state_dict(name)), optimizer=None,
                       param_schedulers=None)
            if self.optim_wrapper is not None and name in getattr(self.optim_wrapper, 'keys',
                                                                   lambda: ())():
                own['optimizer'] = self.optim_wrapper[name].state_dict()
            if isinstance(self.param_schedulers, dict) and name in self.param_schedulers:
                own['param_schedulers'] = [s.state_dict() for s in self.param_schedulers[name]]
            parts = gather_object((name, own), dst=0)
            if is_main_process():
                self.cohort_hook.peer_states = {n: s for n, s in parts if n != name}
            if get_rank() != 0:
                return
        super().save_checkpoint(*args, **kwargs)
