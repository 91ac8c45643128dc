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

With ``--overhead N`` it trains nothing but the teacher (if missing) and
times each config's training step against its limit instead, with the
overhead benchmark (``tools/benchmark/distill_overhead.py``: student step,
teacher inference, distillation step, interleaved; N timed rounds, CPU
clock), on the same nets and data.

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


def family_of(config_path: str, net: str = 'student') -> str:
    """``'retinanet'`` or ``'faster-rcnn'``: the family of a distillation
    config's ``net`` (``'student'`` or ``'teacher'``), read from that net's
    ``cfg_path`` (a config of two families distils across them); for a
    name that is not a file, or a net without ``cfg_path``, from the name."""
    names = [osp.basename(config_path)]
    full = config_path if osp.isfile(config_path) else osp.join(VOC_CONFIGS, config_path)
    if osp.isfile(full):
        entry = _load(full).get('model', {}).get(net) or {}
        names.insert(0, osp.basename(entry.get('cfg_path', '')))
    for name in names:
        for family in STUDENT_CONFIGS:
            if family in name:
                return family
    raise ValueError(f'{config_path}: cannot tell the {net} detector family.')


def tiny_detector(family: str, depth: int = 18, base_channels: int = 8,
                  fpn_channels: int = 32, num_classes: int = 20) -> dict:
    """The model of the family's VOC config, shrunk: a ResNet of ``depth``
    with ``base_channels`` in its first stage, a narrow FPN and heads,
    trainable from scratch (nothing frozen, BN in train mode, no
    pre-trained weights). Anchors and losses are mmdet's; ``num_classes``
    (VOC's 20 by default) sets the heads' classes."""
    model = copy.deepcopy(_load(STUDENT_CONFIGS[family]).model.to_dict())
    expansion = 4 if depth >= 50 else 1
    model['backbone'].update(depth=depth, base_channels=base_channels, init_cfg=None,
                             frozen_stages=-1, norm_eval=False)
    model['neck'].update(in_channels=[base_channels * expansion * 2**i for i in range(4)],
                         out_channels=fpn_channels)
    if family == 'retinanet':
        model['bbox_head'].update(in_channels=fpn_channels, feat_channels=fpn_channels,
                                  stacked_convs=1, num_classes=num_classes)
        model['test_cfg'].update(nms_pre=200, max_per_img=50)
    else:
        model['rpn_head'].update(in_channels=fpn_channels, feat_channels=fpn_channels)
        roi = model['roi_head']
        roi['bbox_roi_extractor'].update(out_channels=fpn_channels)
        roi['bbox_head'].update(in_channels=fpn_channels, fc_out_channels=64,
                                num_classes=num_classes)
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
                   val: bool = True, log_interval: int = 1,
                   metainfo: Optional[dict] = None) -> dict:
    """A Runner config with the data settings of the family's VOC config
    (VOC2007 trainval / test of ``data_root``, VOC mAP) and ``model``;
    ``metainfo`` (``classes``, ``palette``) replaces VOC's 20 classes."""
    base = _load(STUDENT_CONFIGS[family])
    voc07 = copy.deepcopy(base.train_dataloader.dataset.dataset.datasets[0].to_dict())
    voc07.update(data_root=data_root, pipeline=_resize_pipeline(voc07['pipeline'], image_size),
                 filter_cfg=dict(filter_empty_gt=True, min_size=16))
    test = copy.deepcopy(base.test_dataloader.dataset.to_dict())
    test.update(data_root=data_root, pipeline=_resize_pipeline(test['pipeline'], image_size))
    if metainfo is not None:
        voc07['metainfo'] = test['metainfo'] = metainfo
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


def median_step_time(work_dir: str) -> float:
    """The median training-step time (s) the run logged (``time`` of each logged step)."""
    import glob

    import numpy as np
    times = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            times += [line['time'] for line in map(json.loads, f)
                      if 'time' in line and 'loss' in line]
    return float(np.median(times)) if times else float('nan')


def summary_table(results: Dict[str, float], step_times: Optional[Dict[str, float]] = None
                  ) -> str:
    """A Markdown table of mAP in %: one row a run, mean and standard deviation over its seeds
    (``'<label> (seed <s>)'`` keys), each seed's value listed; with ``step_times`` (same
    keys), the median step time over the student alone's of the same seed, averaged."""
    import numpy as np
    rows: Dict[str, List[float]] = {}
    ratios: Dict[str, List[float]] = {}
    for key, value in results.items():
        label, _, seed = key.partition(' (seed ')
        rows.setdefault(label, []).append(100 * value)
        alone = (step_times or {}).get(f'student alone (seed {seed}')
        if step_times and key in step_times and alone:
            ratios.setdefault(label, []).append(step_times[key] / alone)
    lines = ['| run | seeds | mAP | per seed | step time / alone |', '|---|---|---|---|---|']
    for label, values in rows.items():
        spread = f' ± {np.std(values, ddof=1):.1f}' if len(values) > 1 else ''
        ratio = f'{np.mean(ratios[label]):.2f}' if label in ratios else '-'
        lines.append(f'| {label} | {len(values)} | {np.mean(values):.1f}{spread} | '
                     f'{", ".join(f"{v:.1f}" for v in values)} | {ratio} |')
    return '\n'.join(lines)


def _train(cfg: dict) -> None:
    from mmengine.config import Config
    from mmengine.runner import Runner
    Runner.from_cfg(Config(cfg)).train()


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--family', choices=sorted(STUDENT_CONFIGS), default='retinanet')
    parser.add_argument('--configs', nargs='*', default=[],
                        help='distillation configs in configs/detection/voc to run')
    parser.add_argument('--dataset', choices=['shapes', 'fashion_scenes'], default='shapes',
                        help="'shapes': coloured shapes of three VOC classes "
                        "(make_synthetic_voc_det.py); 'fashion_scenes': real photographed "
                        'objects of six classes with look-alike distractors '
                        '(make_fashion_scenes.py)')
    parser.add_argument('--work-dir', default='work_dirs/det_synthetic')
    parser.add_argument('--data-root', help='default: data/synthetic_voc_det (shapes), '
                        'data/fashion_scenes (fashion_scenes)')
    parser.add_argument('--trainval', type=int, default=240)
    parser.add_argument('--test', type=int, default=100)
    parser.add_argument('--scene-size', type=int, default=64,
                        help='fashion_scenes: scenes are SIZE to 1.25 SIZE px (then resized '
                        'to --image-size)')
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
    parser.add_argument('--overhead', type=int, metavar='ROUNDS',
                        help='time each config with the overhead benchmark (ROUNDS timed '
                        'rounds after 3 warm-up ones) instead of training it')
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)

    import mmkd  # noqa: F401
    from mmkd.datasets.synthetic_voc import (
        make_fashion_scenes,
        make_synthetic_voc_det,
        prepared_description,
        scenes_description,
        set_description,
    )
    from mmkd.datasets.synthetic_voc.fashion_scenes import CLASSES
    from mmkd.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    metainfo, num_classes = None, 20
    if args.dataset == 'fashion_scenes':
        args.data_root = args.data_root or 'data/fashion_scenes'
        wanted = scenes_description(args.trainval, args.test, args.scene_size, seed=0)
        write = functools.partial(make_fashion_scenes, args.data_root,
                                  osp.join(REPO, 'data', 'fashion_mnist'), args.trainval,
                                  args.test, args.scene_size, 0)
        metainfo, num_classes = dict(classes=tuple(CLASSES)), len(CLASSES)
    else:
        args.data_root = args.data_root or 'data/synthetic_voc_det'
        wanted = set_description(args.trainval, args.test, args.image_size, seed=0)
        write = functools.partial(make_synthetic_voc_det, args.data_root, args.trainval,
                                  args.test, args.image_size, 0)
    voc2007 = osp.join(args.data_root, 'VOC2007')
    if prepared_description(voc2007) is None:
        write()
    written = prepared_description(voc2007)
    if written != wanted:
        raise ValueError(f'{args.data_root} holds a set written with {written}, '
                         f'not {wanted}: pass another --data-root, or delete that folder to '
                         'write the set asked for.')
    run_cfg = functools.partial(voc_runner_cfg, batch_size=args.batch_size,
                                image_size=args.image_size, log_interval=10, metainfo=metainfo)
    family = args.family
    work = osp.join(args.work_dir, family)
    results: Dict[str, float] = {}
    started = time.time()

    teachers, step_times = {}, {}

    def teacher_of(teacher_family: str):
        """The teacher of a family, trained once (reused from an earlier run)."""
        if teacher_family not in teachers:
            model = tiny_detector(teacher_family, depth=args.teacher_depth,
                                  base_channels=args.teacher_width, num_classes=num_classes)
            teacher_dir = osp.join(args.work_dir, teacher_family,
                                   f'teacher_r{args.teacher_depth}w{args.teacher_width}')
            checkpoint = osp.join(teacher_dir, f'epoch_{args.teacher_epochs}.pth')
            if osp.isfile(checkpoint):
                print(f'{teacher_family} teacher: reusing {checkpoint}', flush=True)
            else:
                _train(run_cfg(teacher_family, args.data_root, teacher_dir, model,
                               args.teacher_epochs, seed=0))
            label = 'teacher' if teacher_family == family else f'teacher ({teacher_family})'
            results[label] = final_map(teacher_dir)
            print(f'{label}: mAP {results[label]:.4f}', flush=True)
            teachers[teacher_family] = (model, checkpoint)
        return teachers[teacher_family]

    teacher_of(family)

    student = tiny_detector(family, depth=18, base_channels=8, num_classes=num_classes)
    if args.overhead:
        return overheads(args, family, student, teacher_of, run_cfg)
    runs = [('student alone', None)] + [(c, c) for c in args.configs]
    for seed in args.seeds:
        for label, config in runs:
            name = 'student' if config is None else osp.splitext(config)[0]
            run_dir = osp.join(work, f'{name}_seed{seed}')
            if config is None:
                model = student
            else:
                path = osp.join(VOC_CONFIGS, config)
                if family_of(path) != family:
                    raise ValueError(f'{config} distils a {family_of(path)} student; run it '
                                     f'with --family {family_of(path)}.')
                model = distill_model(path, student, *teacher_of(family_of(path, 'teacher')))
            if not osp.isfile(osp.join(run_dir, f'epoch_{args.epochs}.pth')):
                _train(run_cfg(family, args.data_root, run_dir, model, args.epochs, seed=seed))
            results[f'{label} (seed {seed})'] = final_map(run_dir)
            step_times[f'{label} (seed {seed})'] = median_step_time(run_dir)
            print(f'{label} seed {seed}: mAP {results[f"{label} (seed {seed})"]:.4f}',
                  flush=True)

    print(f'\n{family} on the {args.dataset} VOC-format set ({args.trainval} trainval / '
          f'{args.test} test images, resized to {args.image_size} px), VOC mAP@0.5 (11 points):')
    print(summary_table(results, step_times))
    print('step time / alone: the median logged training-step time over the student alone\'s '
          '(same seed); wall clock of runs that shared the machine, a rough figure.')
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


def overheads(args: argparse.Namespace, family: str, student: dict, teacher_of,
              run_cfg) -> Dict[str, float]:
    """``--overhead``: each config's step over the student's step alone
    (``c / a``) and over its limit (``c / (a + b)``) from the overhead
    benchmark, on the student, teacher and data its training run would use.
    (b) is the teacher's whole ``tensor``-mode forward, while the step runs a
    teacher only as far as its records: a config that distils the FPN skips
    the teacher's heads, and its ``c / (a + b)`` can be below 1."""
    from distill_overhead import measure_overhead
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    if not MMLogger.check_instance_created('mmkd_benchmark'):  # no weight-init chatter
        MMLogger.get_instance('mmkd_benchmark', log_level='WARNING')
    rows, figures = [], {}
    for config in args.configs:
        path = osp.join(VOC_CONFIGS, config)
        model = distill_model(path, student, *teacher_of(family_of(path, 'teacher')))
        cfg = Config(run_cfg(family, args.data_root, osp.join(args.work_dir, 'overhead'), model,
                             args.epochs, seed=0))
        result = measure_overhead(cfg, warmup=3, iters=args.overhead, threads=args.threads,
                                  memory=False, progress=False, clock='cpu')
        legs = {kind: sum(leg.median for leg in result.legs if leg.label.startswith(kind))
                for kind in ('(a)', '(b)', '(c)')}
        figures[config] = result.ratio
        rows.append(f'| {config} | {legs["(a)"]:.3f} | {legs["(b)"]:.3f} | {legs["(c)"]:.3f} '
                    f'| {legs["(c)"] / legs["(a)"]:.2f} | {result.ratio:.2f} |')
        print(f'{config}: c / (a + b) = {result.ratio:.2f}', flush=True)
    print(f'\n{family}, batch {args.batch_size}, {args.image_size} px, {args.threads} thread(s), '
          f'3 warm-up + {args.overhead} timed rounds, CPU clock (medians, seconds):')
    print('| config | (a) student step | (b) teacher inference | (c) distillation step '
          '| c / a | c / (a + b) |')
    print('|---|---|---|---|---|---|')
    print('\n'.join(rows))
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, f'overhead_{family}.json'), 'w') as f:
        json.dump(figures, f, indent=1)
    return figures


if __name__ == '__main__':
    main()
