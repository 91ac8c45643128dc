"""Export the student of a distillation checkpoint as a plain checkpoint.

The result holds only the student's weights under their usual names (no
``student.`` prefix, no connectors, no teacher) and plain metadata, so that
mmpretrain / mmdet / mmseg load it without mmkd, also with
``torch.load(weights_only=True)``.

Example:
    python tools/model_converters/export_student.py \
        work_dirs/kd_resnet56_resnet20_fashionmnist/epoch_10.pth student.pth
"""
import argparse
import os
import os.path as osp
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from mmkd.utils import safe_torch_load  # noqa: E402

PREFIX = 'student.'


def plain(value):
    """Metadata reduced to str/int/float/bool/None, lists and dicts."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, 'item'):  # numpy / torch scalars
        return value.item()
    return str(value)


def export_student(src: str, dst: str) -> dict:
    """Write the student's checkpoint to ``dst``; returns it."""
    ckpt = safe_torch_load(src, map_location='cpu')
    state = ckpt.get('state_dict', ckpt)
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    student = OrderedDict((k[len(PREFIX):], v) for k, v in state.items() if k.startswith(PREFIX))
    if not student:
        raise ValueError(f'{src} has no "{PREFIX}*" weights: is it a checkpoint of an mmkd '
                         'distiller? (a plain checkpoint needs no export)')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    keep = {k: plain(meta[k]) for k in ('dataset_meta', 'epoch', 'iter', 'mmengine_version',
                                        'experiment_name') if k in meta}
    keep['exported_from'] = osp.abspath(src)
    out = {'state_dict': student, 'meta': keep}
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(out, dst)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint written while distilling')
    parser.add_argument('dst', help='where to write the student checkpoint')
    args = parser.parse_args()
    try:
        out = export_student(args.src, args.dst)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f'error: {err}')
    n = sum(v.numel() for v in out['state_dict'].values())
    print(f'wrote {args.dst}: {len(out["state_dict"])} tensors, {n / 1e6:.3f} M values')


if __name__ == '__main__':
    main()
