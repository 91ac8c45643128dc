"""Distilled vs. undistilled tiny detectors on a synthetic VOC-format set, same schedule.

A check that the detection configs do something, on a CPU, in minutes - not
a VOC result. It writes the synthetic set of
``tools/dataset_converters/make_synthetic_voc_det.py`` (three VOC classes
as coloured shapes on noise), trains a tiny teacher (by default ResNet-18 with
16 base channels, FPN: a ResNet-50 this narrow does not learn from scratch on
so little data) from scratch, then a tiny student (ResNet-18 with 8 base
channels) alone and with the distillation part (recorders, connectors and
losses, unchanged) of each ``configs/detection/voc`` config named, all on the
same schedule and seed, and prints VOC mAP@0.5 (11 points) on the test split.
The data settings are those of the detection configs with the images
resized to ``--image-size``. The tests of ``configs/detection`` build their
tiny detectors and runners with the helpers of this file.

Example:
    python tools/benchmark/detection_voc_synthetic.py --family retinanet \
        --configs fpn_retinanet_r50_r18_voc0712.py head-kd_retinanet_r50_r18_voc0712.py \
        --work-dir work_dirs/det_synthetic
"""
import argparse
import copy
import functools
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
VOC_CONFIGS = osp.join(REPO, 'configs', 'detection', 'voc')
#: Detector family -> the student config whose data settings the runs use.
STUDENT_CONFIGS = {
    'retinanet': osp.join(VOC_CONFIGS, 'retinanet_r18_fpn_1x_voc0712.py'),
    'faster-rcnn': osp.join(VOC_CONFIGS, 'faster-rcnn_r18_fpn_1x_voc0712.py'),
}


@functools.lru_cache(maxsize=None)
def _load(config_path: str):
    """A config file, read once (``mmdet::`` bases make reading slow); callers copy."""
    import mmkd  # noqa: F401
    from mmkd.distillers import load_config
    return load_config(config_path)


def family_of(config_path: str) -> str:
    """``'retinanet'`` or ``'faster-rcnn'``, from a detection config's name."""
    name = osp.basename(config_path)
    for family in STUDENT_CONFIGS:
        if family in name:
            return family
    raise ValueError(f'{config_path}: cannot tell the detector family from its name.')


def tiny_detector(family: str, depth: int = 18, base_channels: int = 8,
                  fpn_channels: int = 32) -> dict:
    """The model of the family's VOC config, shrunk: a ResNet of ``depth``
    with ``base_channels`` in its first stage, a narrow FPN and heads,
    trainable from scratch (nothing frozen, BN in train mode, no
    pre-trained weights). Anchors, classes (20) and losses are mmdet's."""
    model = copy.deepcopy(_load(STUDENT_CONFIGS[family]).model.to_dict())
    expansion = 4 if depth >= 50 else 1
    model['backbone'].update(depth=depth, base_channels=base_channels, init_cfg=None,
                             frozen_stages=-1, norm_eval=False)
    model['neck'].update(in_channels=[base_channels * expansion * 2**i for i in range(4)],
                         out_channels=fpn_channels)
    if family == 'retinanet':
        model['bbox_head'].update(in_channels=fpn_channels, feat_channels=fpn_channels,
                                  stacked_convs=1)
        model['test_cfg'].update(nms_pre=200, max_per_img=50)
    else:
        model['rpn_head'].update(in_channels=fpn_channels, feat_channels=fpn_channels)
        roi = model['roi_head']
        roi['bbox_roi_extractor'].update(out_channels=fpn_channels)
        roi['bbox_head'].update(in_channels=fpn_channels, fc_out_channels=64)
        train = model['train_cfg']
        train['rpn']['sampler'].update(num=64)
        train['rpn_proposal'].update(nms_pre=300, max_per_img=100)
        train['rcnn']['sampler'].update(num=64)
        model['test_cfg']['rpn'].update(nms_pre=300, max_per_img=100)
        model['test_cfg']['rcnn'].update(max_per_img=50)
    return model


def _resize_pipeline(pipeline: list, size: int) -> list:
    pipeline = copy.deepcopy(pipeline)
    for step in pipeline:
        if step['type'] == 'Resize':
            step['scale'] = (size, size)
    return pipeline


def voc_runner_cfg(family: str, data_root: str, work_dir: str, model: dict, epochs: int = 1,
                   batch_size: int = 4, image_size: int = 128, seed: int = 0, lr: float = 0.01,
                   val: bool = True, log_interval: int = 1) -> dict:
    """A Runner config with the data settings of the family's VOC config
    (VOC2007 trainval / test of ``data_root``, VOC mAP) and ``model``."""
    base = _load(STUDENT_CONFIGS[family])
    voc07 = copy.deepcopy(base.train_dataloader.dataset.dataset.datasets[0].to_dict())
    voc07.update(data_root=data_root, pipeline=_resize_pipeline(voc07['pipeline'], image_size),
                 filter_cfg=dict(filter_empty_gt=True, min_size=16))
    test = copy.deepcopy(base.test_dataloader.dataset.to_dict())
    test.update(data_root=data_root, pipeline=_resize_pipeline(test['pipeline'], image_size))
    loader = dict(num_workers=0, persistent_workers=False)
    cfg = dict(
        default_scope='mmdet',
        work_dir=work_dir,
        model=model,
        train_dataloader=dict(loader, batch_size=batch_size, dataset=voc07,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_sampler=dict(type='AspectRatioBatchSampler')),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=epochs,
                       val_interval=epochs if val else epochs + 1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=1e-4),
                           clip_grad=dict(max_norm=35, norm_type=2)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                              end=20),
                         dict(type='CosineAnnealingLR', by_epoch=True, T_max=epochs)],
        default_hooks=dict(timer=dict(type='IterTimerHook'),
                           logger=dict(type='LoggerHook', interval=log_interval),
                           param_scheduler=dict(type='ParamSchedulerHook'),
                           checkpoint=dict(type='CheckpointHook', interval=epochs),
                           sampler_seed=dict(type='DistSamplerSeedHook')),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        visualizer=dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')]),
        log_processor=dict(by_epoch=True, window_size=1),
        randomness=dict(seed=seed, deterministic=False),
        log_level='WARNING',
    )
    if val:
        cfg.update(val_dataloader=dict(loader, batch_size=batch_size, dataset=test,
                                       drop_last=False,
                                       sampler=dict(type='DefaultSampler', shuffle=False)),
                   val_cfg=dict(type='ValLoop'), val_evaluator=copy.deepcopy(
                       base.val_evaluator.to_dict()))
        cfg.update(test_dataloader=copy.deepcopy(cfg['val_dataloader']),
                   test_cfg=dict(type='TestLoop'), test_evaluator=cfg['val_evaluator'])
    return cfg


def distill_model(config_path: str, student: dict, teacher: dict,
                  teacher_checkpoint: Optional[str]) -> dict:
    """The ``model`` of a distillation config with its student and teacher
    replaced (recorders, connectors and losses as they are)."""
    model = copy.deepcopy(_load(config_path).model.to_dict())
    model.update(student=student, teacher=dict(teacher, checkpoint=teacher_checkpoint))
    return model


def final_map(work_dir: str) -> float:
    """The last ``pascal_voc/mAP`` the run logged."""
    import glob
    found = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            lines = [json.loads(line) for line in f]
            found += [line['pascal_voc/mAP'] for line in lines if 'pascal_voc/mAP' in line]
    if not found:
        raise RuntimeError(f'{work_dir}: no pascal_voc/mAP logged.')
    return found[-1]


def _train(cfg: dict) -> None:
    from mmengine.config import Config
    from mmengine.runner import Runner
    Runner.from_cfg(Config(cfg)).train()


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--family', choices=sorted(STUDENT_CONFIGS), default='retinanet')
    parser.add_argument('--configs', nargs='*', default=[],
                        help='distillation configs in configs/detection/voc to run')
    parser.add_argument('--work-dir', default='work_dirs/det_synthetic')
    parser.add_argument('--data-root', default='data/synthetic_voc_det')
    parser.add_argument('--trainval', type=int, default=240)
    parser.add_argument('--test', type=int, default=100)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--teacher-epochs', type=int, default=8)
    parser.add_argument('--teacher-depth', type=int, default=18, choices=[18, 34, 50, 101],
                        help='ResNet depth of the teacher (the VOC configs use ResNet-50/101; '
                        'at 16 base channels a ResNet-50 does not learn on a few hundred images)')
    parser.add_argument('--teacher-width', type=int, default=16,
                        help="channels of the teacher's first stage (the student has 8)")
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (1 is fastest on a shared machine)')
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)

    import mmkd  # noqa: F401
    from mmkd.datasets.synthetic_voc import (
        make_synthetic_voc_det,
        prepared_description,
        set_description,
    )
    from mmkd.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    voc2007 = osp.join(args.data_root, 'VOC2007')
    if prepared_description(voc2007) is None:
        make_synthetic_voc_det(args.data_root, args.trainval, args.test, args.image_size, seed=0)
    written = prepared_description(voc2007)
    wanted = set_description(args.trainval, args.test, args.image_size, seed=0)
    if written != wanted:
        raise ValueError(f'{args.data_root} holds a synthetic set written with {written}, '
                         f'not {wanted}: pass another --data-root, or delete that folder to '
                         'write the set asked for.')
    family = args.family
    work = osp.join(args.work_dir, family)
    results: Dict[str, float] = {}
    started = time.time()

    teacher = tiny_detector(family, depth=args.teacher_depth, base_channels=args.teacher_width)
    teacher_dir = osp.join(work, f'teacher_r{args.teacher_depth}w{args.teacher_width}')
    checkpoint = osp.join(teacher_dir, f'epoch_{args.teacher_epochs}.pth')
    if osp.isfile(checkpoint):
        print(f'teacher: reusing {checkpoint}', flush=True)
    else:
        _train(voc_runner_cfg(family, args.data_root, teacher_dir, teacher, args.teacher_epochs,
                              args.batch_size, args.image_size, seed=0, log_interval=10))
    results['teacher'] = final_map(teacher_dir)
    print(f'teacher: mAP {results["teacher"]:.4f}', flush=True)

    student = tiny_detector(family, depth=18, base_channels=8)
    runs = [('student alone', None)] + [(c, c) for c in args.configs]
    for seed in args.seeds:
        for label, config in runs:
            name = 'student' if config is None else osp.splitext(config)[0]
            run_dir = osp.join(work, f'{name}_seed{seed}')
            model = student if config is None else distill_model(
                osp.join(VOC_CONFIGS, config), student, teacher, checkpoint)
            _train(voc_runner_cfg(family, args.data_root, run_dir, model, args.epochs,
                                  args.batch_size, args.image_size, seed=seed,
                                  log_interval=10))
            results[f'{label} (seed {seed})'] = final_map(run_dir)
            print(f'{label} seed {seed}: mAP {results[f"{label} (seed {seed})"]:.4f}',
                  flush=True)

    print(f'\n{family} on the synthetic VOC-format set ({args.trainval} trainval / '
          f'{args.test} test images, {args.image_size} px), VOC mAP@0.5 (11 points):')
    print('| run | mAP |\n|---|---|')
    for label, value in results.items():
        print(f'| {label} | {100 * value:.1f} |')
    print(f'total time {time.time() - started:.0f} s')
    alone = [v for k, v in results.items() if k.startswith('student alone')]
    if alone and results['teacher'] <= max(alone):
        print(f'note: the teacher ({100 * results["teacher"]:.1f}) is not better than the '
              f'student alone ({100 * max(alone):.1f}); train it longer or wider '
              '(--teacher-epochs, --teacher-width) before reading the distillation rows.')
    os.makedirs(work, exist_ok=True)
    with open(osp.join(work, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    main()
