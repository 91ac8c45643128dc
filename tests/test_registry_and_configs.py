"""Registry scoping and the mmkd:: config scope."""
import glob
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmkd
from mmkd.distillers import load_config
from mmkd.registry import HOOKS, MODELS

from conftest import REPO


def test_mmkd_scope_builds_its_own_and_prefixed_components():
    with DefaultScope.overwrite_default_scope('mmkd'):
        net = MODELS.build(dict(type='CIFARResNet', depth=8))
        assert type(net).__name__ == 'CIFARResNet'
        pretrain_resnet = MODELS.build(dict(type='mmpretrain.ResNet', depth=18))
        assert type(pretrain_resnet).__module__.startswith('mmpretrain')
        assert MODELS.get('mmdet.RetinaNet').__module__.startswith('mmdet')
        assert MODELS.get('mmseg.EncoderDecoder').__module__.startswith('mmseg')
        assert HOOKS.get('TeacherEvaluationHook') is not None
        # MMEngine's own components come through the parent registry.
        assert HOOKS.get('CheckpointHook') is not None


def test_custom_imports_register_mmkd_in_a_fresh_interpreter():
    code = textwrap.dedent("""
        from mmengine.config import Config
        from mmengine.registry import MODELS, init_default_scope
        cfg = Config(dict(custom_imports=dict(imports=['mmkd.models'],
                                              allow_failed_imports=False)))
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
        init_default_scope('mmpretrain')
        net = MODELS.build(dict(type='mmkd.CIFARResNet', depth=8))
        print(type(net).__name__)
    """)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert out.strip().endswith('CIFARResNet')


def test_mmkd_config_scope_in_base_and_in_paths(tmp_path):
    mim = osp.join(osp.dirname(mmkd.__file__), '.mim', 'configs')
    assert osp.isfile(osp.join(mim, '_base_', 'default_runtime.py')), \
        'configs are not shipped under mmkd/.mim (reinstall with make install)'
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['mmkd::_base_/datasets/fashion_mnist.py', "
                     "'mmkd::_base_/default_runtime.py']\nfoo = 1\n")
    cfg = Config.fromfile(str(child))
    assert cfg.default_scope == 'mmkd'
    assert cfg.train_dataloader.dataset.type == 'FashionMNIST'
    baseline = load_config('mmkd::baselines/resnet20_fashionmnist.py')
    assert baseline.model.backbone.depth == 20


def test_missing_config_is_named():
    with pytest.raises(FileNotFoundError, match='nothing_here.py'):
        load_config('mmkd::nothing_here.py')
    with pytest.raises(FileNotFoundError, match='not installed'):
        load_config('notapackage::x.py')


BASELINES = sorted(osp.relpath(p, osp.join(REPO, 'configs')) for p in glob.glob(
    osp.join(REPO, 'configs', 'baselines', '*.py')))


@pytest.mark.parametrize('name', BASELINES)
def test_baseline_configs_build_their_models(name):
    cfg = load_config(osp.join(REPO, 'configs', name))
    model = MODELS.build(cfg.model)
    assert model.backbone.depth == cfg.model.backbone.depth


@pytest.mark.parametrize('name, teacher_depth, student_depth', [
    ('kd/kd_resnet56_resnet20_fashionmnist.py', 56, 20),
    ('kd/kd_resnet56_resnet8_fashionmnist.py', 56, 8),
    ('kd/kd_resnet20_resnet8_fashionmnist.py', 20, 8),
])
def test_kd_configs_build_their_distillers(name, teacher_depth, student_depth):
    cfg = load_config(osp.join(REPO, 'configs', name))
    assert cfg.model.teacher.checkpoint == \
        f'work_dirs/resnet{teacher_depth}_fashionmnist/epoch_4.pth'
    cfg.model.teacher.checkpoint = None  # random teacher: the wiring is what is tested
    with pytest.warns(UserWarning, match='randomly initialised'), \
            DefaultScope.overwrite_default_scope(cfg.default_scope):
        # As the Runner does, hand the config's top-level data_preprocessor to the model.
        distiller = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    assert type(distiller.teacher.backbone).__name__ == 'CIFARResNet'
    assert distiller.teacher.backbone.depth == teacher_depth
    assert distiller.student.backbone.depth == student_depth
    assert list(distiller.distill_losses) == ['loss_kd']
    # One preprocessor, shared with the student, normalising as the dataset config says.
    assert distiller.data_preprocessor is distiller.student.data_preprocessor
    assert distiller.data_preprocessor.mean.flatten().tolist() == pytest.approx([72.94])


ALL_CONFIGS = sorted(
    osp.relpath(p, osp.join(REPO, 'configs'))
    for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p.split(osp.sep) and 'recipes' not in p.split(osp.sep))  # no model


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_every_config_loads_and_names_a_registered_model(name):
    cfg = load_config(osp.join(REPO, 'configs', name))
    model_type = cfg.model['type']
    scope = cfg.model.get('_scope_') or cfg.get('default_scope') or 'mmkd'
    with MODELS.switch_scope_and_registry(scope) as registry:
        assert registry.get(model_type) is not None, \
            f'{name}: {model_type} is not registered in scope {scope}'


KQ_CONFIGS = [n for n in ALL_CONFIGS if n.startswith('knowledge_quantification/')
              and not n.endswith('_nohook.py')]


def test_knowledge_quantification_configs_share_one_setting():
    """The compared runs differ in the method only: same data, epochs, schedule and hook."""
    settings = []
    for name in KQ_CONFIGS:
        cfg = load_config(osp.join(REPO, 'configs', name))
        settings.append((cfg.train_dataloader.dataset.indices, cfg.train_cfg.max_epochs,
                         str(cfg.param_scheduler), str(cfg.custom_hooks)))
    assert len(KQ_CONFIGS) == 3
    assert len(set(settings)) == 1
    indices, epochs, _, hooks = settings[0]
    assert (indices, epochs) == (5000, 5)
    assert 'KnowledgeQuantificationHook' in hooks


def _pipelines(node, key: str = ''):
    """Every list of transforms in a config (keys ``pipeline`` / ``*_pipeline``)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _pipelines(v, str(k))
    elif isinstance(node, (list, tuple)):
        if key == 'pipeline' or key.endswith('_pipeline'):
            yield node
        for item in node:
            yield from _pipelines(item, key)


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_prefixed_transforms_are_their_packages_own(name):
    # MMEngine finds 'pkg.Name' in pkg's own registry only (not in MMCV's under it) when the
    # dataset is built in pkg's scope, as tools/train.py builds it: 'mmseg.LoadImageFromFile'
    # is not a transform there.
    from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS
    cfg = load_config(osp.join(REPO, 'configs', name))
    for pipeline in _pipelines(cfg.to_dict()):
        for transform in pipeline:
            kind = transform.get('type') if isinstance(transform, dict) else None
            if not isinstance(kind, str) or '.' not in kind:
                continue
            with ROOT_TRANSFORMS.switch_scope_and_registry(kind.split('.')[0]) as registry:
                assert registry.get(kind) is not None, (
                    f'{name}: {kind} is not a transform of {kind.split(".")[0]}; MMCV\'s '
                    'transforms are named without a package prefix')
