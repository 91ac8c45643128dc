"""The model zoo: OpenMMLab metafiles from the runs, and every table of figures from them.

For each entry of ``ZOO`` and each of its seeds the run lives in
``work_dirs/zoo/<name>_seed<S>`` (or where ``run_dirs`` says). A run counts
as finished when its final checkpoint (``epoch_<max_epochs>.pth``) exists and
its log has the final validation. From the finished runs (and the cached
overhead measurements, ``work_dirs/zoo/overhead/<name>.json``) the tool
writes

* ``configs/<method>/metafile.yml`` for every method folder of the zoo
  (OpenMMLab's format, plus each seed's value, the teachers' top-1 as the
  runs logged it, the runs' dates and devices, the overhead figures and the
  commands) and ``model-index.yml``, which imports them;

then, from the metafiles alone (:mod:`mmkd.benchmark.zoo`):

* ``docs/model_zoo.md`` (the whole page), ``docs/model_zoo.png`` (top-1
  against the overhead ratio c/(a+b)) and ``docs/model_zoo.log`` (this run's
  log);
* the block between ``<!-- results:start -->`` and ``<!-- results:end -->`` of
  each method's README and of the repository's README.

A run missing on this machine leaves no figure in the metafile; the page
lists the command that makes it. ``--overhead`` measures the missing overhead
figures with ``tools/benchmark/distill_overhead.py``; ``--tables-only``
regenerates the tables from the metafiles as they are, without runs.

Example:
    python tools/benchmark/model_zoo.py                        # metafiles and tables
    python tools/benchmark/model_zoo.py --overhead --iters 20  # also measure overheads
    python tools/benchmark/model_zoo.py --tables-only          # tables from the metafiles
"""
import argparse
import json
import logging
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional

from mmkd.benchmark.zoo import (
    Collection,
    ZooEntry,
    build_metafiles,
    build_pages,
    load_metafiles,
    plot_zoo,
    write_texts,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Add a line when a method lands. Students are ResNet-8 (the cheapest net), the teacher is the
# ResNet-56 of configs/baselines/resnet56_fashionmnist.py; the setting is
# configs/_base_/datasets/fashion_mnist_15k.py (15k training images) with
# configs/_base_/schedules/sgd_cosine_4e.py (4 epochs). Tables list the entries in this order
# (grouped by method folder).
ZOO: List[ZooEntry] = [
    ZooEntry('resnet56', 'ResNet-56 alone (the teacher)',
             'configs/baselines/resnet56_fashionmnist.py', baseline=None, student='ResNet-56',
             teacher='', seeds=(0, ), run_dirs={0: 'work_dirs/resnet56_fashionmnist'}),
    ZooEntry('resnet20', 'ResNet-20 alone', 'configs/baselines/resnet20_fashionmnist.py',
             baseline=None, student='ResNet-20', teacher='',
             run_dirs={0: 'work_dirs/resnet20_fashionmnist'}),
    ZooEntry('resnet8', 'ResNet-8 alone (baseline)', 'configs/baselines/resnet8_fashionmnist.py',
             baseline=None, teacher=''),
    ZooEntry('kd_resnet56_resnet8', 'KD (Hinton et al., 2015)',
             'configs/kd/kd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('kd_cached_resnet56_resnet8', 'KD, cached teacher (teacher-free epochs)',
             'configs/kd/kd_resnet56_resnet8_fashionmnist_cached.py'),
    ZooEntry('kd_resnet20_resnet8', 'KD from a ResNet-20 (what make demo runs)',
             'configs/kd/kd_resnet20_resnet8_fashionmnist.py', teacher='ResNet-20'),
    ZooEntry('kd_resnet56_resnet20', 'KD to a ResNet-20',
             'configs/kd/kd_resnet56_resnet20_fashionmnist.py', baseline='resnet20',
             student='ResNet-20'),
    ZooEntry('ofd_resnet56_resnet8', 'OFD (Heo et al., 2019)',
             'configs/ofd/ofd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('fitnets_resnet56_resnet8', 'FitNets (Romero et al., 2015)',
             'configs/fitnets/fitnets_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('fsp_resnet56_resnet8', 'FSP (Yim et al., 2017)',
             'configs/fsp/fsp_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('reviewkd_resnet56_resnet8', 'ReviewKD (Chen et al., 2021)',
             'configs/reviewkd/reviewkd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('rkd_kd_resnet56_resnet8', 'RKD + KD (Park et al., 2019)',
             'configs/rkd/rkd_kd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('mt_arithmetic_resnet56_resnet20_resnet8', 'Multi-teacher KD, arithmetic mean',
             'configs/multi_teacher/mt_arithmetic_resnet56_resnet20_resnet8_fashionmnist.py',
             teacher='ResNet-56 + ResNet-20'),
    ZooEntry('mt_geometric_resnet56_resnet20_resnet8', 'Multi-teacher KD, geometric mean',
             'configs/multi_teacher/mt_geometric_resnet56_resnet20_resnet8_fashionmnist.py',
             teacher='ResNet-56 + ResNet-20'),
    ZooEntry('byot_resnet8', 'Be Your Own Teacher (Zhang et al., 2019)',
             'configs/self_distillation/byot_resnet8_fashionmnist.py', teacher=''),
    ZooEntry('dml_resnet8x2', 'DML, 2 x ResNet-8 (Zhang et al., 2018)',
             'configs/dml/dml_resnet8x2_fashionmnist.py', metric='resnet8_1/accuracy/top1',
             also={'resnet8_2/accuracy/top1': 'resnet8', 'ensemble/accuracy/top1': 'resnet8'},
             teacher=''),
    ZooEntry('dml_resnet8x3', 'DML, 3 x ResNet-8',
             'configs/dml/dml_resnet8x3_fashionmnist.py', metric='resnet8_1/accuracy/top1',
             also={'resnet8_2/accuracy/top1': 'resnet8', 'resnet8_3/accuracy/top1': 'resnet8',
                   'ensemble/accuracy/top1': 'resnet8'}, teacher=''),
    ZooEntry('dml_resnet20x2', 'DML, 2 x ResNet-20',
             'configs/dml/dml_resnet20x2_fashionmnist.py', metric='resnet20_1/accuracy/top1',
             also={'resnet20_2/accuracy/top1': 'resnet20', 'ensemble/accuracy/top1': 'resnet20'},
             baseline='resnet20',
             student='ResNet-20', teacher='', seeds=(0, 1)),
    ZooEntry('dml_resnet20_resnet56', 'DML, ResNet-20 + ResNet-56',
             'configs/dml/dml_resnet20_resnet56_fashionmnist.py',
             metric='resnet20/accuracy/top1',
             also={'resnet56/accuracy/top1': 'resnet56', 'ensemble/accuracy/top1': None},
             baseline='resnet20',
             student='ResNet-20', teacher='', seeds=(0, )),
    ZooEntry('dkd_resnet56_resnet8', 'DKD (Zhao et al., CVPR 2022)',
             'configs/dkd/dkd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('dist_resnet56_resnet8', 'DIST (Huang et al., NeurIPS 2022)',
             'configs/dist/dist_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('kd_ls_resnet56_resnet8', 'KD + logit standardisation (Sun et al., CVPR 2024)',
             'configs/logit_standardization/kd_ls_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('dkd_ls_resnet56_resnet8', 'DKD + logit standardisation (Sun et al., CVPR 2024)',
             'configs/logit_standardization/dkd_ls_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('at_resnet56_resnet8', 'AT (Zagoruyko and Komodakis, ICLR 2017)',
             'configs/at/at_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('pkt_resnet56_resnet8', 'PKT (Passalis and Tefas, ECCV 2018)',
             'configs/pkt/pkt_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('sp_resnet56_resnet8', 'SP (Tung and Mori, ICCV 2019)',
             'configs/sp/sp_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('vid_resnet56_resnet8', 'VID (Ahn et al., CVPR 2019)',
             'configs/vid/vid_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('crd_resnet56_resnet8', 'CRD (Tian et al., ICLR 2020)',
             'configs/crd/crd_resnet56_resnet8_fashionmnist.py'),
    ZooEntry('crd_kd_resnet56_resnet8', 'CRD + KD (Tian et al., ICLR 2020)',
             'configs/crd/crd_kd_resnet56_resnet8_fashionmnist.py'),
]

# One per method folder of the zoo: the metafile's collection (name, paper) and the entries its
# README shows beside its own.
COLLECTIONS: Dict[str, Collection] = {
    'configs/baselines': Collection(
        'Baselines', ('Deep Residual Learning for Image Recognition',
                      'https://arxiv.org/abs/1512.03385'),
        techniques=('SGD with Momentum', 'Weight Decay', 'Cosine Annealing'), compare=()),
    'configs/kd': Collection(
        'KD', ('Distilling the Knowledge in a Neural Network', 'https://arxiv.org/abs/1503.02531'),
        compare=('resnet8', 'resnet20')),
    'configs/ofd': Collection(
        'OFD', ('A Comprehensive Overhaul of Feature Distillation',
                'https://arxiv.org/abs/1904.01866')),
    'configs/fitnets': Collection(
        'FitNets', ('FitNets: Hints for Thin Deep Nets', 'https://arxiv.org/abs/1412.6550')),
    'configs/fsp': Collection(
        'FSP', ('A Gift from Knowledge Distillation: Fast Optimization, Network Minimization and '
                'Transfer Learning', 'https://openaccess.thecvf.com/content_cvpr_2017/html/'
                'Yim_A_Gift_From_CVPR_2017_paper.html')),
    'configs/reviewkd': Collection(
        'ReviewKD', ('Distilling Knowledge via Knowledge Review',
                     'https://arxiv.org/abs/2104.09044')),
    'configs/rkd': Collection(
        'RKD', ('Relational Knowledge Distillation', 'https://arxiv.org/abs/1904.05068')),
    'configs/multi_teacher': Collection(
        'Multi-teacher KD', ('Learning from Multiple Teacher Networks',
                             'https://doi.org/10.1145/3097983.3098135'),
        compare=('resnet8', 'kd_resnet56_resnet8', 'kd_resnet20_resnet8')),
    'configs/self_distillation': Collection(
        'BYOT', ('Be Your Own Teacher: Improve the Performance of Convolutional Neural Networks '
                 'via Self Distillation', 'https://arxiv.org/abs/1905.08094'),
        techniques=('Self-Distillation', )),
    'configs/dml': Collection(
        'DML', ('Deep Mutual Learning', 'https://arxiv.org/abs/1706.00384'),
        techniques=('Mutual Learning', ), compare=('resnet8', 'resnet20', 'resnet56')),
    'configs/dkd': Collection(
        'DKD', ('Decoupled Knowledge Distillation', 'https://arxiv.org/abs/2203.08679')),
    'configs/dist': Collection(
        'DIST', ('Knowledge Distillation from A Stronger Teacher',
                 'https://arxiv.org/abs/2205.10536')),
    'configs/logit_standardization': Collection(
        'Logit Standardization', ('Logit Standardization in Knowledge Distillation',
                                  'https://arxiv.org/abs/2403.01427'),
        compare=('resnet8', 'kd_resnet56_resnet8', 'dkd_resnet56_resnet8')),
    'configs/at': Collection(
        'AT', ('Paying More Attention to Attention: Improving the Performance of Convolutional '
               'Neural Networks via Attention Transfer', 'https://arxiv.org/abs/1612.03928')),
    'configs/pkt': Collection(
        'PKT', ('Learning Deep Representations with Probabilistic Knowledge Transfer',
                'https://arxiv.org/abs/1803.10837')),
    'configs/sp': Collection(
        'SP', ('Similarity-Preserving Knowledge Distillation', 'https://arxiv.org/abs/1907.09682')),
    'configs/vid': Collection(
        'VID', ('Variational Information Distillation for Knowledge Transfer',
                'https://arxiv.org/abs/1904.05835')),
    'configs/crd': Collection(
        'CRD', ('Contrastive Representation Distillation', 'https://arxiv.org/abs/1910.10699')),
}
ZOO_DIR = 'work_dirs/zoo'

log = logging.getLogger('model_zoo')


def overhead_of(entry: ZooEntry, measure: bool, iters: int) -> Optional[dict]:
    """The cached overhead figures of ``entry``, measured first if asked."""
    path = osp.join(ZOO_DIR, 'overhead', f'{entry.name}.json')
    if not osp.isfile(path) and measure:
        os.makedirs(osp.dirname(path), exist_ok=True)
        command = [sys.executable, osp.join('tools', 'benchmark', 'distill_overhead.py'),
                   entry.config, '--iters', str(iters), '--out', path]
        log.info('measuring overhead: %s', ' '.join(command))
        done = subprocess.run(command, capture_output=True, text=True)
        log.info('%s', done.stdout.strip())
        if done.returncode != 0:
            log.warning('overhead of %s failed:\n%s', entry.name, done.stderr[-2000:])
            return None
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='docs/model_zoo.md', help='the zoo page to write')
    parser.add_argument('--overhead', action='store_true',
                        help='measure the overhead of entries without cached figures')
    parser.add_argument('--only', nargs='+',
                        help='entry names whose overhead --overhead measures (default: all)')
    parser.add_argument('--iters', type=int, default=20, help='timed rounds of --overhead')
    parser.add_argument('--tables-only', action='store_true',
                        help='regenerate the tables from the metafiles as they are (no runs)')
    args = parser.parse_args(argv)
    os.chdir(REPO)
    stem = osp.splitext(args.out)[0]
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    log.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(stem + '.log', 'w')):
        handler.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%Y-%m-%d %H:%M:%S'))
        log.addHandler(handler)
    log.info('model zoo: %s', ' '.join(sys.argv))
    if not args.tables_only:
        overheads = {}
        for entry in ZOO:
            measure = args.overhead and (not args.only or entry.name in args.only)
            figures = overhead_of(entry, measure, args.iters)
            if figures:
                overheads[entry.name] = figures
                log.info('%s: overhead ratio %s, extra trainable parameters %s', entry.name,
                         figures.get('ratio'), figures['parameters'].get('extra_trainable'))
        texts = build_metafiles(ZOO, COLLECTIONS, ZOO_DIR, overheads, log)
        for path in write_texts('.', texts):
            log.info('wrote %s', path)
    texts, without = build_pages('.', args.out)
    for path in write_texts('.', texts):
        log.info('wrote %s', path)
    for path in without:
        log.warning('%s has no <!-- results:start --> ... <!-- results:end --> block: its '
                    'table is not generated; add the two markers where it goes.', path)
    _, models = load_metafiles('.')
    left_out = plot_zoo(models, stem + '.png')
    log.info('drew %s (no overhead ratio yet: %s)', stem + '.png', ', '.join(left_out) or '-')


if __name__ == '__main__':
    main()
