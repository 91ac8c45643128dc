"""One source for every figure: the metafiles, the model index and the tables
generated from them (tools/benchmark/model_zoo.py, mmkd/benchmark/zoo.py)."""
import glob
import json
import os
import os.path as osp
import re
import statistics
import sys

import pytest
import yaml

from mmkd.benchmark.zoo import (
    MARK_END,
    MARK_START,
    MODEL_INDEX,
    Collection,
    ZooEntry,
    build_metafiles,
    build_pages,
    generated_block,
    load_metafiles,
    write_texts,
)

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
from model_zoo import COLLECTIONS, ZOO  # noqa: E402

# READMEs of folders other work is rewriting now; their results tables get the markers next.
DECIMAL = re.compile(r'[+-]?\d+\.\d+')


def test_model_index_imports_every_metafile():
    with open(osp.join(REPO, MODEL_INDEX)) as f:
        imported = yaml.safe_load(f)['Import']
    on_disk = sorted(osp.relpath(p, REPO) for p in glob.glob(
        osp.join(REPO, 'configs', '**', 'metafile.yml'), recursive=True))
    assert sorted(imported) == on_disk and len(imported) == len(set(imported))


def test_metafiles_hold_the_zoo_and_openmmlab_fields():
    collections, models = load_metafiles(REPO)
    assert list(models) == [e.name for e in ZOO], (  # written from the zoo as it is now
        'the metafiles are not those of ZOO: run python tools/benchmark/model_zoo.py')
    for entry in ZOO:
        model = models[entry.name]
        assert model['Config'] == entry.config and osp.isfile(osp.join(REPO, entry.config))
        assert collections[model['In Collection']]['README'] == osp.join(
            osp.dirname(entry.config), 'README.md')
        assert {'Training Data', 'Epochs', 'Student'} <= set(model['Metadata'])
        per_seed = model['Zoo']['Per Seed']
        for result in model.get('Results', []):
            assert {'Task', 'Dataset', 'Metrics'} <= set(result)
            for label, value in result['Metrics'].items():  # means and stds of the seeds
                values = per_seed[label.replace(' Std', '')].values()
                want = statistics.stdev(values) if label.endswith(' Std') else \
                    statistics.mean(values)
                assert value == pytest.approx(want, abs=0.005), (entry.name, label)
        assert set(per_seed.get(next(iter(model['Zoo']['Logged Metrics'])), {})) <= \
            set(entry.seeds)
    for folder in {osp.dirname(e.config) for e in ZOO}:
        assert folder in COLLECTIONS, folder


def test_committed_tables_are_what_the_metafiles_generate():
    texts, without = build_pages(REPO)
    assert 'docs/model_zoo.md' in texts and 'README.md' in texts
    assert not without, f'pages without results markers: {without}'
    for path, text in texts.items():
        with open(osp.join(REPO, path), encoding='utf-8') as f:
            assert f.read() == text, (
                f'{path} differs from what the metafiles generate: run '
                'python tools/benchmark/model_zoo.py --tables-only')


def _number_set(model: dict) -> set:
    """Every figure the metafile entry of ``model`` holds, as tables write it."""
    found = set()
    zoo = model['Zoo']
    for result in model.get('Results', []):
        found.update(f'{v:.2f}' for v in result['Metrics'].values())
    for seeds in zoo.get('Per Seed', {}).values():
        found.update(f'{v:.2f}' for v in seeds.values())
        found.update(str(s) for s in seeds)
    found.update(f'{v:+.2f}' for v in zoo.get('Gain', {}).values())
    found.update(f'{v:.2f}' for v in zoo.get('Teacher Top 1 Accuracy', {}).values())
    overhead = zoo.get('Overhead', {})
    if 'Ratio' in overhead:
        found.add(f'{overhead["Ratio"]:.2f}')
    if overhead:
        found.add(f'{overhead["Extra Trainable Parameters"]:,}')
    return found


def _table_rows(text: str):
    for line in text.splitlines():
        link = re.search(r'\[([^\]]+\.py)\]\(([^)]+)\)', line)
        if line.startswith('|') and link:
            yield line, link.group(1)


def test_every_figure_in_a_generated_table_is_in_its_metafile():
    _, models = load_metafiles(REPO)
    by_method = {}
    for model in models.values():
        by_method.setdefault(osp.basename(model['Config']), []).append(model)
    pages = [osp.join(REPO, 'docs', 'model_zoo.md'), osp.join(REPO, 'README.md')]
    pages += glob.glob(osp.join(REPO, 'configs', '*', 'README.md'))
    checked = 0
    for page in pages:
        with open(page, encoding='utf-8') as f:
            text = f.read()
        block = text if page.endswith('model_zoo.md') else generated_block(text)
        if block is None:
            continue
        for row, config in _table_rows(block):
            candidates = by_method[config]
            cells = [c.strip() for c in row.strip('|').split('|')]
            model = next(m for m in candidates if cells[0].startswith(m['Zoo']['Method']))
            numbers = _number_set(model)
            for cell in cells[1:]:
                if '.py' in cell:
                    continue
                for figure in DECIMAL.findall(cell):  # top-1, per seed, gains, teachers, c/(a+b)
                    assert figure in numbers, (page, model['Name'], figure, row)
                    checked += 1
    assert checked > 0


# --------------------------------------------------------------------------- generation
def _fake_run(zoo: str, name: str, seed: int, values: dict, epochs: int = 4,
              teacher: float = None, stamp: str = '20261203_120000', finished: bool = True):
    """A run dir as MMEngine leaves it: scalars.json lines, a log, checkpoints."""
    run = osp.join(zoo, f'{name}_seed{seed}')
    os.makedirs(osp.join(run, stamp, 'vis_data'))
    with open(osp.join(run, stamp, 'vis_data', 'scalars.json'), 'w') as f:
        if teacher is not None:
            f.write(json.dumps({'teacher/accuracy/top1': teacher, 'step': 0}) + '\n')
        for epoch in range(1, epochs + 1):
            f.write(json.dumps({'lr': 0.1, 'loss': 1.0, 'time': 0.3, 'epoch': epoch,
                                'iter': 50, 'step': 50 * epoch}) + '\n')
            line = {k: v - (epochs - epoch) for k, v in values.items()}
            f.write(json.dumps(dict(line, data_time=0.1, time=0.2, step=epoch)) + '\n')
    with open(osp.join(run, stamp, f'{stamp}.log'), 'w') as f:
        f.write('System environment:\n    CUDA available: False\nRuntime environment:\n')
    for epoch in range(1, epochs + (1 if finished else 0)):
        open(osp.join(run, f'epoch_{epoch}.pth'), 'wb').close()


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    """Runs of three entries in a zoo dir, READMEs with markers in an output root."""
    monkeypatch.chdir(REPO)  # the configs are read from the repository
    zoo, root = str(tmp_path / 'zoo'), str(tmp_path / 'out')
    r8 = {0: 83.45, 1: 83.23, 2: 84.79}
    kd = {0: 85.63, 2: 86.17}  # seed 1 is missing
    for seed, value in r8.items():
        _fake_run(zoo, 'resnet8', seed, {'accuracy/top1': value})
    for seed, value in kd.items():
        _fake_run(zoo, 'kd', seed, {'accuracy/top1': value}, teacher=87.11)
    _fake_run(zoo, 'kd', 1, {'accuracy/top1': 99.0}, teacher=87.11, finished=False)
    dml = {'resnet8_1/accuracy/top1': 82.56, 'resnet8_2/accuracy/top1': 82.66,
           'ensemble/accuracy/top1': 82.77}
    _fake_run(zoo, 'dml', 0, dml, stamp='20261204_080000')
    entries = [
        ZooEntry('resnet8', 'ResNet-8 alone', 'configs/baselines/resnet8_fashionmnist.py',
                 baseline=None, teacher=''),
        ZooEntry('kd', 'KD', 'configs/kd/kd_resnet56_resnet8_fashionmnist.py'),
        ZooEntry('dml', 'DML', 'configs/dml/dml_resnet8x2_fashionmnist.py',
                 metric='resnet8_1/accuracy/top1', teacher='', seeds=(0, ),
                 also={'resnet8_2/accuracy/top1': 'resnet8', 'ensemble/accuracy/top1': None}),
    ]
    collections = {'configs/baselines': Collection('Baselines', compare=()),
                   'configs/kd': Collection('KD', ('Distilling the Knowledge in a Neural Network',
                                                   'https://arxiv.org/abs/1503.02531')),
                   'configs/dml': Collection('DML', compare=('resnet8', 'kd'))}
    overheads = {'kd': dict(ratio=0.9512, parameters=dict(student=77754, extra_trainable=0),
                            legs=[dict(label='(a) student train step', median=0.37),
                                  dict(label='(b) teacher inference', median=0.9),
                                  dict(label='(c) distillation step', median=1.2)],
                            settings=dict(device='cpu', threads=1, batch_size=128, iters=8,
                                          precision='fp32'))}
    for folder in ('configs/baselines', 'configs/kd', 'configs/dml'):
        os.makedirs(osp.join(root, folder))
        with open(osp.join(root, folder, 'README.md'), 'w') as f:
            f.write(f'# {folder}\n\nBefore.\n\n{MARK_START}\nold table\n{MARK_END}\n\nAfter.\n')
    with open(osp.join(root, 'README.md'), 'w') as f:
        f.write(f'# mmkd\n\n{MARK_START}\n{MARK_END}\nThe rest.\n')
    return dict(zoo=zoo, root=root, entries=entries, collections=collections,
                overheads=overheads, r8=r8, kd=kd, dml=dml)


def _generate(fake) -> list:
    texts = build_metafiles(fake['entries'], fake['collections'], fake['zoo'],
                            fake['overheads'])
    written = write_texts(fake['root'], texts)
    pages, without = build_pages(fake['root'])
    assert without == []
    return written + write_texts(fake['root'], pages)


def test_metafiles_and_tables_from_runs(fake_repo):
    fake = fake_repo
    written = _generate(fake)
    assert sorted(written) == sorted([
        'configs/baselines/metafile.yml', 'configs/kd/metafile.yml', 'configs/dml/metafile.yml',
        MODEL_INDEX, 'docs/model_zoo.md', 'configs/baselines/README.md',
        'configs/kd/README.md', 'configs/dml/README.md', 'README.md'])
    with open(osp.join(fake['root'], 'configs', 'kd', 'metafile.yml')) as f:
        kd_file = yaml.safe_load(f)
    assert kd_file['Collections'][0]['Paper']['URL'] == 'https://arxiv.org/abs/1503.02531'
    kd = kd_file['Models'][0]
    assert kd['Config'] == 'configs/kd/kd_resnet56_resnet8_fashionmnist.py'
    assert kd['Metadata']['Epochs'] == 4 and kd['Metadata']['Parameters'] == 77754
    # Figures computed here from the runs' values: the unfinished seed 1 is not among them.
    kd_mean = (85.63 + 86.17) / 2
    kd_std = abs(85.63 - 86.17) / 2 ** 0.5
    r8_mean = sum(fake['r8'].values()) / 3
    metrics = kd['Results'][0]['Metrics']
    assert metrics['Top 1 Accuracy'] == pytest.approx(kd_mean, abs=0.005)
    assert metrics['Top 1 Accuracy Std'] == pytest.approx(kd_std, abs=0.005)
    assert kd['Zoo']['Per Seed']['Top 1 Accuracy'] == {0: 85.63, 2: 86.17}
    assert kd['Zoo']['Gain']['Top 1 Accuracy'] == pytest.approx(
        round(kd_mean, 2) - round(r8_mean, 2), abs=1e-9)
    assert kd['Zoo']['Teacher Top 1 Accuracy'] == {'teacher': 87.11}
    assert kd['Zoo']['Overhead']['Ratio'] == 0.95
    assert [r['Seed'] for r in kd['Zoo']['Runs']] == [0, 2]
    assert kd['Zoo']['Runs'][0]['Measured'] == '2026-12-03'
    assert kd['Zoo']['Runs'][0]['Device'] == 'cpu'
    with open(osp.join(fake['root'], 'configs', 'dml', 'metafile.yml')) as f:
        dml = yaml.safe_load(f)['Models'][0]
    assert dml['Results'][0]['Metrics'] == {'Top 1 Accuracy (resnet8_1)': 82.56,
                                            'Top 1 Accuracy (resnet8_2)': 82.66,
                                            'Top 1 Accuracy (ensemble)': 82.77}
    assert set(dml['Zoo']['Gain']) == {'Top 1 Accuracy (resnet8_1)',
                                       'Top 1 Accuracy (resnet8_2)'}  # ensemble: no baseline

    # The tables say what the metafiles say; the hand-written text stays.
    with open(osp.join(fake['root'], 'configs', 'kd', 'README.md')) as f:
        readme = f.read()
    assert readme.startswith('# configs/kd\n\nBefore.\n\n') and readme.endswith('\n\nAfter.\n')
    assert 'old table' not in readme
    kd_row = next(line for line in readme.splitlines() if line.startswith('| KD |'))
    assert f'{kd_mean:.2f} ± {kd_std:.2f}' in kd_row and '85.63, 86.17' in kd_row
    assert f'{round(kd_mean, 2) - round(r8_mean, 2):+.2f}' in kd_row
    assert 'ResNet-56 (87.11)' in kd_row and '| 0.95 | 0 |' in kd_row
    assert '| ResNet-8 alone |' in readme  # the entry it is compared with
    with open(osp.join(fake['root'], 'configs', 'dml', 'README.md')) as f:
        dml_readme = f.read()
    assert '| DML: ensemble |' in dml_readme and '| DML: resnet8_2 |' in dml_readme
    with open(osp.join(fake['root'], 'docs', 'model_zoo.md')) as f:
        page = f.read()
    assert ('python tools/train.py configs/kd/kd_resnet56_resnet8_fashionmnist.py --work-dir '
            f'{fake["zoo"]}/kd_seed1 --cfg-options randomness.seed=1') in page
    assert 'Measured 2026-12-03 to 2026-12-04 on cpu' in page
    with open(osp.join(fake['root'], 'README.md')) as f:
        assert f.read().endswith(f'{MARK_END}\nThe rest.\n')


def test_generation_is_idempotent(fake_repo):
    _generate(fake_repo)
    files = {p: open(p).read() for p in glob.glob(osp.join(fake_repo['root'], '**', '*.*'),
                                                   recursive=True)}
    assert _generate(fake_repo) == []  # the same runs: nothing to write
    assert {p: open(p).read() for p in files} == files
    # A new finished seed changes the metafile and every table that shows it.
    _fake_run(fake_repo['zoo'], 'kd', 1, {'accuracy/top1': 86.74}, teacher=87.11,
              stamp='20261203_130000')
    changed = _generate(fake_repo)
    assert 'configs/kd/metafile.yml' in changed and 'configs/dml/README.md' in changed
