"""Draw what a distillation config distils on one image: per level, the
teacher's value, the student's (after its connector) and their difference.

The distiller is built from the config (its teacher from the teacher's
checkpoint), the student and connectors are loaded from CHECKPOINT (read
safely), IMAGE goes through the config's test pipeline and data preprocessor,
and :meth:`~mmkd.distillers.Distiller.distillation_inputs` gives what every
loss receives for it. Each level (a stage, an FPN level, a list item) is one
row: teacher | student | difference, the first two on one colour scale.
Feature maps are reduced by their channel mean (difference: student minus
teacher) or, with ``--reduce pca``, to the teacher's first three principal
components as RGB (difference: per-pixel L2 norm of student minus teacher);
logits and embeddings ``(rows, classes)`` are drawn as they are.

Example:
    python tools/visualizations/vis_features.py \
        configs/ofd/ofd_resnet56_resnet8_fashionmnist.py \
        work_dirs/zoo/ofd_resnet56_resnet8_seed0/epoch_4.pth image.png --out feats.png
    python tools/visualizations/vis_features.py <det config> <ckpt> street.jpg \
        --records loss_fpn_p3 loss_fpn_p4 --reduce pca
"""
import argparse
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

import mmkd  # noqa: F401  (mmkd:: configs, safe checkpoint loading)
from mmkd.analysis.feature_maps import REDUCTIONS, FeaturePanel, describe_values, feature_panels
from mmkd.distillers import Distiller, build_model_from_config, load_config
from mmkd.distillers.distiller import first_conv_in_channels
from mmkd.utils import register_all_modules

#: Pipeline steps that read files: the tool loads the image itself and has no annotations.
_READERS = ('LoadImageFromFile', 'LoadAnnotations', 'LoadSegAnnotations',
            'LoadPanopticAnnotations')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a distillation config')
    parser.add_argument('checkpoint', help="a checkpoint of it (the student's and connectors' "
                                           'weights)')
    parser.add_argument('image', help='an image file')
    parser.add_argument('--records', nargs='+',
                        help='only these losses, or the losses that read these records or '
                             'connectors (default: every loss)')
    parser.add_argument('--out', default='feats.png', help='the PNG to write')
    parser.add_argument('--reduce', choices=REDUCTIONS, default='mean',
                        help='channel mean, or the first three principal components')
    parser.add_argument('--mode', choices=('tensor', 'loss'), default='tensor',
                        help="the student's forward mode ('loss' needs annotations)")
    parser.add_argument('--teacher-checkpoint', help="overrides the config's teacher checkpoint")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--dpi', type=int, default=100)
    return parser.parse_args(argv)


def _dataset_pipeline(node) -> Optional[list]:
    """The first ``pipeline`` of a (possibly wrapped) dataset config."""
    if isinstance(node, dict):
        if 'pipeline' in node:
            return list(node['pipeline'])
        for key in ('dataset', 'datasets'):
            if key in node:
                found = _dataset_pipeline(node[key])
                if found is not None:
                    return found
    elif isinstance(node, (list, tuple)):
        for item in node:
            found = _dataset_pipeline(item)
            if found is not None:
                return found
    return None


def test_pipeline(cfg: Config) -> list:
    """The config's test pipeline without the steps that read files."""
    pipeline = None
    for key in ('test_dataloader', 'val_dataloader'):
        if cfg.get(key):
            pipeline = _dataset_pipeline(cfg[key].get('dataset'))
            if pipeline is not None:
                break
    if pipeline is None:
        pipeline = cfg.get('test_pipeline')
    if pipeline is None:
        raise ValueError('the config has no test_dataloader / val_dataloader pipeline (nor '
                         'test_pipeline) to prepare the image with.')
    return [step for step in pipeline if str(step['type']).split('.')[-1] not in _READERS]


def load_batch(model: Distiller, cfg: Config, image: str) -> dict:
    """IMAGE as a batch of one: read (grey when the student takes one channel),
    the test pipeline, then the model's data preprocessor."""
    if not osp.isfile(image):
        raise FileNotFoundError(f'image {image!r} does not exist.')
    grey = first_conv_in_channels(model.student) == 1
    img = mmcv.imread(image, flag='grayscale' if grey else 'color')
    results = dict(img=img, img_path=image, img_id=0, ori_shape=img.shape[:2],
                   img_shape=img.shape[:2])
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmkd')):
        packed = Compose(test_pipeline(cfg))(results)
    return model.data_preprocessor(dict(inputs=[packed['inputs']],
                                        data_samples=[packed['data_samples']]), False)


def build_distiller(cfg: Config, checkpoint: str) -> Distiller:
    """The distiller of ``cfg`` with ``checkpoint`` loaded (strictly), in eval mode."""
    model = build_model_from_config(cfg)
    if not isinstance(model, Distiller):
        raise TypeError(f'{cfg.model.get("type")} is not a teacher-student Distiller: '
                        'nothing to compare.')
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
    return model.eval()


def _image_of(batch: dict) -> np.ndarray:
    img = batch['inputs'][0].detach().float().cpu()
    img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
    return img[0].numpy() if img.shape[0] == 1 else img[:3].permute(1, 2, 0).numpy()


def plot(panels: List[FeaturePanel], image: np.ndarray, out: str, title: str = '',
         dpi: int = 100) -> None:
    """One row per panel: [the input image], teacher, student, difference."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = len(panels)
    fig, axes = plt.subplots(rows, 4, figsize=(13, 2.9 * rows + 0.6), squeeze=False,
                             gridspec_kw=dict(width_ratios=[0.8, 1, 1, 1]))
    for row, panel in enumerate(panels):
        ax_img, ax_t, ax_s, ax_d = axes[row]
        if row == 0:
            ax_img.imshow(image, cmap='gray' if image.ndim == 2 else None)
            ax_img.set_title('input (preprocessed)', fontsize=9)
        ax_img.axis('off')
        low, high = panel.limits
        aspect = 'auto' if panel.kind == 'matrix' else None
        colour = {} if panel.kind == 'pca' else dict(cmap='viridis', vmin=low, vmax=high)
        for ax, value, who in ((ax_t, panel.teacher, 'teacher'),
                               (ax_s, panel.student, 'student')):
            shown = ax.imshow(value, aspect=aspect, **colour)
            ax.set_title(f'{panel.name}: {who}', fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if colour:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        if panel.signed:
            bound = float(np.abs(panel.difference).max()) or 1.0
            diff = ax_d.imshow(panel.difference, cmap='RdBu_r', vmin=-bound, vmax=bound,
                               aspect=aspect)
            ax_d.set_title('student - teacher', fontsize=9)
        else:
            diff = ax_d.imshow(panel.difference, cmap='magma', vmin=0, aspect=aspect)
            ax_d.set_title('|student - teacher| (all channels)', fontsize=9)
        ax_d.set_xticks([])
        ax_d.set_yticks([])
        fig.colorbar(diff, ax=ax_d, fraction=0.046, pad=0.04)
        ax_t.set_ylabel(panel.how, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Tuple[str, List[FeaturePanel]]:
    """Run the tool; returns the PNG's path and the panels drawn."""
    args = parse_args(argv)
    if not MMLogger.check_instance_created('mmkd_vis_features'):  # no weight-init chatter
        MMLogger.get_instance('mmkd_vis_features', log_level='WARNING')
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.teacher_checkpoint:
        cfg.model.teacher.checkpoint = args.teacher_checkpoint
    model = build_distiller(cfg, args.checkpoint)
    batch = load_batch(model, cfg, args.image)
    values = model.distillation_inputs(batch['inputs'], batch['data_samples'], mode=args.mode)
    panels = feature_panels(values, args.reduce, names=args.records,
                            references=model.loss_inputs)
    if not panels:
        raise ValueError(f'nothing to draw: no loss with teacher and student values among '
                         f'{describe_values(values)} (--records {args.records}).')
    title = f'{osp.basename(args.config)}  |  {osp.basename(args.image)}'
    plot(panels, _image_of(batch), args.out, title, args.dpi)
    print(f'wrote {args.out}: ' + ', '.join(p.name for p in panels))
    return args.out, panels


if __name__ == '__main__':
    main()
