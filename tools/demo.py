"""The whole story on Fashion-MNIST: teacher, baseline student, KD student.

Each step is the `tools/train.py` command a user would type (printed before
it runs), into the work dir `tools/train.py` gives that config by default
(``work_dirs/<config name>``): the teacher's checkpoint lands where the KD
configs expect it (``work_dirs/resnet20_fashionmnist/epoch_4.pth``), so
other configs with that teacher run after the demo as they are. A step
whose checkpoint exists is reused. At the end a table compares the three
top-1 accuracies on the Fashion-MNIST test set.

Example:
    python tools/demo.py                      # what `make demo` runs
    python tools/demo.py --teacher configs/baselines/resnet56_fashionmnist.py \
        --kd configs/kd/kd_resnet56_resnet8_fashionmnist.py
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time

from mmkd.analysis.runs import read_run

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--teacher', default='configs/baselines/resnet20_fashionmnist.py')
    parser.add_argument('--student', default='configs/baselines/resnet8_fashionmnist.py')
    parser.add_argument('--kd', default='configs/kd/kd_resnet20_resnet8_fashionmnist.py')
    parser.add_argument('--work-dir', default='work_dirs',
                        help='the runs go to <work-dir>/<config name>, as tools/train.py '
                        'would put them')
    parser.add_argument('--cfg-options', nargs='*', default=[],
                        help='extra overrides for all three runs, e.g. train_cfg.max_epochs=2')
    return parser.parse_args()


def last_top1(work_dir: str) -> float:
    """The last validation top-1 written to a run's scalars.json."""
    run = read_run(work_dir, 'accuracy/top1')
    if run is None:
        raise RuntimeError(f'no accuracy/top1 logged under {work_dir}')
    return run['final']


def train(name: str, config: str, work_dir: str, options: list, step: str) -> float:
    ckpt = osp.join(work_dir, 'last_checkpoint')
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
           '--cfg-options', *options]
    print(f'\n[{step}] {name}\n$ {" ".join(cmd[1:])}', flush=True)
    if osp.isfile(ckpt) and osp.isfile(open(ckpt).read().strip()):
        print(f'    reusing {open(ckpt).read().strip()}', flush=True)
    else:
        start = time.time()
        subprocess.run(cmd, cwd=REPO, check=True)
        print(f'    done in {time.time() - start:.0f} s', flush=True)
    return last_top1(work_dir)


def main():
    args = parse_args()
    os.chdir(REPO)
    # On a small CPU machine: load the in-memory images in the main process
    # (workers only compete for the cores) and validate once, at the end.
    schedule = ['default_hooks.logger.interval=20', 'train_cfg.val_interval=1000',
                'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
                'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
                *args.cfg_options]
    configs = dict(teacher=args.teacher, student=args.student, kd=args.kd)
    dirs = {k: osp.join(args.work_dir, osp.splitext(osp.basename(v))[0])
            for k, v in configs.items()}
    start = time.time()
    results = {}
    results['teacher'] = train('teacher', args.teacher, dirs['teacher'], schedule, '1/3')
    results['student'] = train('baseline student', args.student, dirs['student'], schedule,
                               '2/3')
    teacher_ckpt = open(osp.join(dirs['teacher'], 'last_checkpoint')).read().strip()
    results['kd'] = train('KD student', args.kd, dirs['kd'],
                          schedule + [f'model.teacher.checkpoint={teacher_ckpt}'], '3/3')
    name = {k: osp.splitext(osp.basename(v))[0] for k, v in configs.items()}
    print(f'\nFashion-MNIST test top-1, each run on the schedule of its config '
          f'({time.time() - start:.0f} s in all)')
    print(f'| {"run":<40} | {"top-1 (%)":>9} |\n|{"-" * 42}|{"-" * 11}|')
    for key in ('teacher', 'student', 'kd'):
        print(f'| {key + ": " + name[key]:<40} | {results[key]:>9.2f} |')
    gain = results['kd'] - results['student']
    print(f'\nKD changes the student by {gain:+.2f} points.')
    print(f'The teacher\'s checkpoint: {teacher_ckpt}; the runs: {", ".join(dirs.values())}.')


if __name__ == '__main__':
    main()
