"""Export the student of a distillation checkpoint as a plain checkpoint.

The result holds only the student's weights under their usual names (no
``student.`` prefix, no connectors, no teacher) and plain metadata, so that
mmpretrain / mmdet / mmseg load it without mmkd, also with
``torch.load(weights_only=True)``. For a Deep Mutual Learning cohort,
``--member NAME`` exports that member (``members.NAME.*``).

Example:
    python tools/model_converters/export_student.py \
        work_dirs/kd_resnet56_resnet20_fashionmnist/epoch_10.pth student.pth
    python tools/model_converters/export_student.py \
        work_dirs/dml_resnet8x2_fashionmnist/epoch_4.pth resnet8_2.pth --member resnet8_2
"""
import argparse
import os
import os.path as osp
import sys
from collections import OrderedDict
from typing import Optional

import torch

from mmkd.utils import safe_torch_load

PREFIX = 'student.'
MEMBERS = 'members.'


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


def cohort_members(state: dict) -> list:
    """Names of the cohort members in a state dict, in order of appearance."""
    names = []
    for key in state:
        if key.startswith(MEMBERS):
            name = key[len(MEMBERS):].split('.', 1)[0]
            if name not in names:
                names.append(name)
    return names


def export_student(src: str, dst: str, member: Optional[str] = None,
                   force: bool = False) -> dict:
    """Write the student's checkpoint (or cohort ``member``'s) to ``dst``; returns it.

    ``dst`` may not be ``src`` (that would replace the training checkpoint),
    nor an existing file unless ``force``.
    """
    if osp.exists(dst) and osp.samefile(src, dst):
        raise ValueError(f'the output {dst} is the input checkpoint: exporting would replace '
                         'the training checkpoint (and with it the run\'s resume point); write '
                         'the student to another file.')
    ckpt = safe_torch_load(src, map_location='cpu')
    state = ckpt.get('state_dict', ckpt)
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    members = cohort_members(state)
    if member is not None and member not in members:
        raise ValueError(f'{src} has no cohort member {member!r}; members: {members or "none"}'
                         + ('' if members else ' (not a checkpoint of a MutualLearner)') + '.')
    if member is None and members and not any(k.startswith(PREFIX) for k in state):
        raise ValueError(f'{src} holds a cohort of {len(members)} members {members}: choose one '
                         'with --member NAME.')
    prefix = f'{MEMBERS}{member}.' if member is not None else PREFIX
    student = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
    if not student:
        raise ValueError(f'{src} has no "{PREFIX}*" weights: is it a checkpoint of an mmkd '
                         'distiller? (a plain checkpoint needs no export)')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    keep = {k: plain(meta[k]) for k in ('dataset_meta', 'epoch', 'iter', 'mmengine_version',
                                        'experiment_name') if k in meta}
    keep['exported_from'] = osp.abspath(src)
    if member is not None:
        keep['cohort_member'] = member
    out = {'state_dict': student, 'meta': keep}
    if osp.exists(dst) and not force:
        raise ValueError(f'{dst} exists; pass --force to replace it, or choose another output.')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(out, dst)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint written while distilling')
    parser.add_argument('dst', help='where to write the student checkpoint')
    parser.add_argument('--member', help='the cohort member to export (checkpoints of a '
                        'MutualLearner)')
    parser.add_argument('--force', action='store_true', help='replace an existing output file')
    args = parser.parse_args()
    try:
        out = export_student(args.src, args.dst, args.member, args.force)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f'error: {err}')
    n = sum(v.numel() for v in out['state_dict'].values())
    print(f'wrote {args.dst}: {len(out["state_dict"])} tensors, {n / 1e6:.3f} M values')


if __name__ == '__main__':
    main()
