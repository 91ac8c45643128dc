"""The documentation says what the code does.

* Config snippets: every fenced ``python`` block of the README, ``docs/`` and the configs'
  READMEs that follows a paragraph naming a ``.py`` file (a link, or ``<!-- snippet: path
  -->``) is that file's content, or a contiguous part of it.
* Checkpoint names: every ``work_dirs/<config>/epoch_<N>.pth`` the pages mention has the
  epoch count of that config's schedule.
* ``make demo`` leaves its teacher where the KD configs look for it.
* The user guides: every ``bash`` block of ``docs/guides/*.md`` runs, in order, in a scratch
  folder (see :func:`guide_script` for the ``<!-- test: ... -->`` marks that make it tiny).
* TensorBoard: a real run with ``TensorboardVisBackend`` writes event files that TensorBoard
  reads back.
* The site: ``sphinx-build -W`` builds ``docs/`` without a warning (also ``make docs``).
"""
import glob
import json
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import REPO, free_port, kd_model, runner_cfg

PYTHON_BIN = osp.dirname(sys.executable)


class Block(NamedTuple):
    path: str  # the page, relative to the repository
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    before: str  # the paragraph (or HTML comment) right before the fence


def fenced_blocks(path: str) -> List[Block]:
    """The fenced code blocks of a Markdown page (fences at the start of a line)."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    blocks, i = [], 0
    while i < len(lines):
        match = re.match(r'^(```+|~~~+)\s*([^\s`]*)', lines[i])
        if not match:
            i += 1
            continue
        fence, lang = match.groups()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        before, j = [], i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        while j >= 0 and lines[j].strip():
            before.insert(0, lines[j])
            j -= 1
        blocks.append(Block(osp.relpath(path, REPO), i + 1, lang,
                            '\n'.join(lines[i + 1:end]), '\n'.join(before)))
        i = end + 1
    return blocks


def pages(*patterns: str) -> List[str]:
    found = []
    for pattern in patterns:
        found += sorted(glob.glob(osp.join(REPO, pattern), recursive=True))
    return [p for p in found if '/_build/' not in p and '/docs/methods/' not in p]


DOC_PAGES = pages('README.md', 'docs/**/*.md', 'configs/**/README.md')


# --------------------------------------------------------------------------- snippets
def named_files(block: Block) -> List[str]:
    """The config files that the paragraph before ``block`` names, as paths in the
    repository: ``<!-- snippet: path -->`` marks, else its links to ``.py`` files under
    ``configs/`` or a guide's example project (links to mmkd's source are not configs)."""
    marked = re.findall(r'<!--\s*snippet:\s*(\S+\.py)\s*-->', block.before)
    if marked:
        return [osp.normpath(path) for path in marked]
    linked = re.findall(r'\]\(([^)\s#]+\.py)\)', block.before)
    paths = [osp.normpath(osp.join(osp.dirname(block.path), path)) for path in linked]
    return [p for p in paths if p.startswith('configs/') or p.startswith('docs/guides/')]


def config_snippets() -> List[Block]:
    return [b for page in DOC_PAGES for b in fenced_blocks(page)
            if b.lang == 'python' and named_files(b)]


def is_contiguous_part(snippet: str, text: str) -> bool:
    lines = [line.rstrip() for line in text.strip('\n').split('\n')]
    part = [line.rstrip() for line in snippet.strip('\n').split('\n')]
    return any(lines[i:i + len(part)] == part for i in range(len(lines) - len(part) + 1))


def test_the_snippet_finder_reads_links_and_marks():
    snippets = config_snippets()
    readme = [b for b in snippets if b.path == 'README.md']
    assert readme, 'the README shows a config file'
    guides = {b.path for b in snippets if b.path.startswith('docs/guides/')}
    assert {'docs/guides/distil_your_own_model.md',
            'docs/guides/write_a_loss_or_connector.md'} <= guides
    assert is_contiguous_part('b = 2\nc = 3', 'a = 1\nb = 2\nc = 3\n')
    assert not is_contiguous_part('a = 1\nc = 3', 'a = 1\nb = 2\nc = 3\n')


@pytest.mark.parametrize('block', config_snippets(), ids=lambda b: f'{b.path}:{b.line}')
def test_config_snippet_is_the_file_it_names(block):
    contents = {}
    for path in named_files(block):
        full = osp.join(REPO, path)
        assert osp.isfile(full), f'{block.path}:{block.line} names {path}, which does not exist'
        with open(full, encoding='utf-8') as f:
            contents[path] = f.read()
    assert any(is_contiguous_part(block.text, text) for text in contents.values()), (
        f'{block.path}:{block.line}: the block is not the content (nor a contiguous part) of '
        f'{" or ".join(contents)}, the file(s) the paragraph before it names; copy it again')


# --------------------------------------------------------------------------- checkpoints
def config_epochs(config_path: str) -> Optional[int]:
    """The number of epochs a config trains (the stages' sum for a StagedTrainLoop)."""
    from mmkd.distillers import load_config
    train_cfg = load_config(config_path).get('train_cfg') or {}
    if 'stages' in train_cfg:
        return sum(stage['epochs'] for stage in train_cfg['stages'])
    return train_cfg.get('max_epochs')


def test_checkpoint_names_match_the_configs_schedules():
    configs = {osp.splitext(osp.basename(p))[0]: p
               for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
               if '/_base_/' not in p}
    for guide_config in glob.glob(osp.join(REPO, 'docs', 'guides', '*', '*.py')):
        configs.setdefault(osp.splitext(osp.basename(guide_config))[0], guide_config)
    epochs: Dict[str, Optional[int]] = {}
    checked, wrong = 0, []
    for page in DOC_PAGES:
        with open(page, encoding='utf-8') as f:
            text = re.sub(r'<!--.*?-->', '', f.read(), flags=re.DOTALL)  # the tests' marks
        for name, epoch in re.findall(r'work_dirs/([\w.-]+)/epoch_(\d+)\.pth', text):
            if name not in configs:
                continue  # a placeholder, or a run named on its command line
            if name not in epochs:
                try:
                    epochs[name] = config_epochs(configs[name])
                except Exception:  # a config this environment cannot read (not a docs error)
                    epochs[name] = None
            if epochs[name] is None:
                continue
            checked += 1
            if int(epoch) != epochs[name]:
                wrong.append(f'{osp.relpath(page, REPO)}: work_dirs/{name}/epoch_{epoch}.pth, '
                             f'but {osp.relpath(configs[name], REPO)} trains {epochs[name]} '
                             'epochs')
    assert checked >= 5
    assert not wrong, '\n'.join(wrong)


# --------------------------------------------------------------------------- make demo
def test_demo_writes_the_teacher_where_the_kd_config_reads_it():
    """tools/demo.py trains each config into tools/train.py's default work dir, so its
    teacher's last checkpoint is the one the KD config names."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('demo', osp.join(REPO, 'tools', 'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    argv = sys.argv
    try:
        sys.argv = ['demo.py']
        args = demo.parse_args()
    finally:
        sys.argv = argv
    from mmkd.distillers import load_config
    teacher = osp.splitext(osp.basename(args.teacher))[0]
    kd = load_config(osp.join(REPO, args.kd))
    epochs = config_epochs(osp.join(REPO, args.teacher))
    expected = osp.join(args.work_dir, teacher, f'epoch_{epochs}.pth')
    assert osp.normpath(kd.model.teacher.checkpoint) == osp.normpath(expected)


# --------------------------------------------------------------------------- guides
GUIDES = pages('docs/guides/*.md')
#: A command line that runs one of these tools gets the block's ``cfg-options``.
TOOL_COMMAND = re.compile(
    r'(tools/(?:train\.py|test\.py|distill\.py|cache_teacher\.py|dist_train\.sh|'
    r'dist_test\.sh)\b[^;&|#\n]*?)'
    r'(\s*(?:;|&&|\|\||\||#|$))', re.MULTILINE)


def test_every_guide_has_commands():
    assert len(GUIDES) >= 4
    for guide in GUIDES:
        assert [b for b in fenced_blocks(guide) if b.lang == 'bash'], guide


def marks(block: Block) -> Dict[str, str]:
    """The ``<!-- test: ... -->`` directives before a block: ``cfg-options K=V ...``,
    ``replace OLD NEW``, ``fails-with TEXT`` and ``skip REASON``, separated by ``;``."""
    found = re.findall(r'<!--\s*test:(.*?)-->', block.before, flags=re.DOTALL)
    directives: Dict[str, str] = {}
    for part in (p.strip() for m in found for p in m.split(';')):
        if part:
            key, _, value = part.partition(' ')
            assert key in ('cfg-options', 'replace', 'fails-with', 'skip'), (
                f'{block.path}:{block.line}: unknown test directive {key!r}')
            directives.setdefault(key, '')
            directives[key] = (directives[key] + '\n' + value.strip()).strip()
    return directives


def block_script(block: Block) -> str:
    """One bash block as the test runs it: each ``replace OLD NEW`` applied, the
    ``cfg-options`` appended to each command that runs one of mmkd's training or test
    tools (:data:`TOOL_COMMAND`)."""
    d = marks(block)
    text = block.text
    for line in filter(None, d.get('replace', '').split('\n')):
        old, new = line.split()
        assert old in text, f'{block.path}:{block.line}: replace {old!r}: not in the block'
        text = text.replace(old, new)
    text = text.replace('\\\n', ' ')  # continued lines
    if 'cfg-options' in d:
        options = ' '.join(d['cfg-options'].split())
        text, count = TOOL_COMMAND.subn(rf'\1 --cfg-options {options}\2', text)
        assert count, f'{block.path}:{block.line}: cfg-options, but no tools/train.py command'
    return text


def guide_script(guide: str) -> str:
    """A guide's bash blocks as one bash script, in the guide's order.

    Marks right before a block (an HTML comment, not shown on the site) make a run small
    or check a failure; each guide says in its text what they change:

    * ``<!-- test: cfg-options K=V ... -->``: appended as ``--cfg-options`` to each
      command of the block that runs ``tools/train.py``, ``tools/test.py``,
      ``tools/distill.py``, ``tools/cache_teacher.py`` or ``tools/dist_train.sh`` (fewer
      images, epochs);
    * ``<!-- test: replace OLD NEW -->``: the block with OLD replaced (a checkpoint name
      that follows the epoch count);
    * ``<!-- test: fails-with TEXT -->``: the block must fail, printing TEXT;
    * ``<!-- test: skip REASON -->``: not run (a server that does not stop).
    """
    lines = ['set -euo pipefail']
    for k, block in enumerate(b for b in fenced_blocks(guide) if b.lang == 'bash'):
        d = marks(block)
        where = f'{block.path}:{block.line}'
        if 'skip' in d:
            assert d['skip'], f'{where}: skip needs a reason'
            note = f"=== {where}: skipped ({d['skip']})"
            lines.append(f'echo {shlex.quote(note)}')
            continue
        script = block_script(block)
        lines.append(f'echo {shlex.quote("=== " + where)}')
        if 'fails-with' in d:
            out = f'"$GUIDE_TMP/block{k}.out"'
            expected = d['fails-with']
            missing = shlex.quote(f'{where}: no {expected!r} in its output')
            lines += ['set +e', f'( set -e\n{script}\n) > {out} 2>&1', 'rc=$?', 'set -e',
                      f'cat {out}',
                      f'if [ $rc -eq 0 ]; then echo "{where}: expected to fail"; exit 1; fi',
                      f'grep -qF -- {shlex.quote(expected)} {out} || {{ echo {missing}; exit 1; }}']
        else:
            lines.append(script)
    return '\n'.join(lines) + '\n'


def write_my_dataset(root: str) -> None:
    """Stand-ins for the user's images: two classes of random JPEGs in CustomDataset's
    layout (data/my_dataset/{train,val}/<class>/*.jpg)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, count in (('train', 4), ('val', 2)):
        for name in ('circle', 'square'):
            folder = osp.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(osp.join(folder, f'{i}.jpg'))


def write_imagenet_weights(torch_home: str) -> None:
    """Randomly initialised stand-ins for the ImageNet checkpoints the guide's configs
    download, where MMEngine's downloader looks first (``$TORCH_HOME/hub/checkpoints``)."""
    import torch
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    folder = osp.join(torch_home, 'hub', 'checkpoints')
    os.makedirs(folder, exist_ok=True)
    for depth, channels, name in ((50, 2048, 'resnet50_8xb32_in1k_20210831-ea4938fc.pth'),
                                  (18, 512, 'resnet18_8xb32_in1k_20210831-fbbb1da6.pth')):
        net = PRETRAIN_MODELS.build(dict(
            type='ImageClassifier', _scope_='mmpretrain', backbone=dict(type='ResNet', depth=depth),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=channels)))
        torch.save({'state_dict': net.state_dict()}, osp.join(folder, name))


#: Where the KD configs of the demo's pair look for the teacher `make demo` trains.
DEMO_TEACHER = 'work_dirs/resnet20_fashionmnist'
#: The guides' runs on Fashion-MNIST: 64 training and 64 test images.
TINY_FASHION_MNIST = ['train_dataloader.dataset.indices=64', 'val_dataloader.dataset.indices=64',
                      'test_dataloader.dataset.indices=64']


@pytest.fixture(scope='session')
def demo_teacher(tmp_path_factory, fashion_mnist_root) -> str:
    """The teacher of `make demo`, trained as tools/demo.py does (on 64 images): its work
    dir."""
    root = tmp_path_factory.mktemp('demo')
    os.makedirs(root / 'data')
    os.symlink(fashion_mnist_root, root / 'data' / 'fashion_mnist')
    subprocess.run([sys.executable, osp.join(REPO, 'tools', 'train.py'),
                    osp.join(REPO, 'configs', 'baselines', 'resnet20_fashionmnist.py'),
                    '--work-dir', DEMO_TEACHER, '--cfg-options', *TINY_FASHION_MNIST],
                   cwd=root, check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS='1'))
    return str(root / DEMO_TEACHER)


@pytest.fixture
def sandbox(tmp_path, fashion_mnist_root) -> str:
    """A scratch folder that looks like the checkout to the guides' commands: links to its
    tools/, configs/ and docs/ and to the Fashion-MNIST files, its own work_dirs/."""
    for name in ('tools', 'configs', 'docs'):
        os.symlink(osp.join(REPO, name), tmp_path / name)
    os.makedirs(tmp_path / 'data')
    os.symlink(fashion_mnist_root, tmp_path / 'data' / 'fashion_mnist')
    return str(tmp_path)


@pytest.mark.parametrize('guide', [osp.join(REPO, 'README.md')] + GUIDES,
                         ids=lambda p: osp.basename(p))
def test_guide_commands_run(guide, sandbox, tmp_path_factory, request):
    """The README's commands and each guide's, as a user runs them (made small as the
    ``<!-- test: -->`` marks say, and as the pages themselves tell)."""
    script = guide_script(guide)
    with open(guide, encoding='utf-8') as f:
        if f'{DEMO_TEACHER}/epoch_4.pth' in f.read():  # the guide starts after `make demo`
            shutil.copytree(request.getfixturevalue('demo_teacher'),
                            osp.join(sandbox, DEMO_TEACHER))
    if 'my_dataset' in script:
        write_my_dataset(osp.join(sandbox, 'data', 'my_dataset'))
    torch_home = str(tmp_path_factory.mktemp('torch_home'))
    if 'resnet50_my_dataset' in script:
        write_imagenet_weights(torch_home)
    env = dict(os.environ, PATH=PYTHON_BIN + os.pathsep + os.environ.get('PATH', ''),
               OMP_NUM_THREADS='1', TORCH_HOME=torch_home,
               PORT=str(free_port()),  # tools/dist_train.sh
               GUIDE_TMP=str(tmp_path_factory.mktemp('guide_out')))
    env.pop('PYTHONPATH', None)
    result = subprocess.run(['bash', '-c', script], cwd=sandbox, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    assert result.returncode == 0, (
        f'{osp.relpath(guide, REPO)}: a command failed\n{result.stdout[-6000:]}')


def test_guide_marks_are_applied():
    block = Block('g.md', 1, 'bash',
                  'for s in 0 1; do python tools/train.py a.py --cfg-options x=$s; done\n'
                  'python tools/test.py a.py work_dirs/a/epoch_30.pth   # the test\n'
                  'python tools/model_converters/export_student.py w/epoch_30.pth s.pth',
                  '<!-- test: cfg-options train_cfg.max_epochs=1; replace epoch_30 epoch_1 -->')
    assert block_script(block).split('\n') == [
        'for s in 0 1; do python tools/train.py a.py --cfg-options x=$s '
        '--cfg-options train_cfg.max_epochs=1; done',
        'python tools/test.py a.py work_dirs/a/epoch_1.pth --cfg-options '
        'train_cfg.max_epochs=1   # the test',
        'python tools/model_converters/export_student.py w/epoch_1.pth s.pth']


# --------------------------------------------------------------------------- TensorBoard
def test_tensorboard_backend_writes_event_files_in_a_run(tmp_path, fashion_mnist_root,
                                                         tiny_teacher):
    pytest.importorskip('tensorboard')  # requirements/tests.txt installs it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = runner_cfg(str(tmp_path), fashion_mnist_root, kd_model(tiny_teacher), epochs=1)
    cfg['visualizer'] = dict(type='Visualizer', vis_backends=[
        dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    events = glob.glob(osp.join(str(tmp_path), '*', 'vis_data', 'events.out.tfevents.*'))
    assert events, 'no TensorBoard event file'
    accumulator = EventAccumulator(osp.dirname(events[0]))
    accumulator.Reload()
    tags = set(accumulator.Tags()['scalars'])
    assert {'loss', 'loss_kd', 'loss_task', 'accuracy/top1'} <= tags, tags
    assert 'teacher/accuracy/top1' in tags
    logged = [json.loads(line) for line in open(glob.glob(osp.join(
        str(tmp_path), '*', 'vis_data', 'scalars.json'))[0])]
    kd_values = [line['loss_kd'] for line in logged if 'loss_kd' in line]
    assert [e.value for e in accumulator.Scalars('loss_kd')] == pytest.approx(kd_values)


# --------------------------------------------------------------------------- the site
def test_docs_build_without_warnings(tmp_path):
    """The whole site, as ``make docs`` builds it (warnings are errors)."""
    pytest.importorskip('sphinx')  # requirements/docs.txt; `make test` installs it
    pytest.importorskip('myst_parser')
    sphinx_build = shutil.which('sphinx-build', path=PYTHON_BIN) or 'sphinx-build'
    result = subprocess.run(
        [sphinx_build, '-W', '--keep-going', '-q', '-b', 'html', '-d',
         str(tmp_path / 'doctrees'), osp.join(REPO, 'docs'), str(tmp_path / 'html')],
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stdout[-6000:]
    html = (tmp_path / 'html')
    assert (html / 'api.html').is_file() and (html / 'methods' / 'kd.html').is_file()
    api = (html / 'api.html').read_text()
    assert 'KDLoss' in api and 'SingleTeacherDistiller' in api
