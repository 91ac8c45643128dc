"""``mmkd::`` configs resolve after every install route: editable (PEP 660 and legacy),
wheel, sdist; each installed from a copy of the repository into a scratch location."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import REPO

# --ignore-installed: install beside the environment's own mmkd, never uninstalling it.
PIP = [sys.executable, '-m', 'pip', '--disable-pip-version-check', 'install', '--no-deps',
       '--no-build-isolation', '--ignore-installed', '-q']
VENV_SITE = sysconfig.get_paths()['purelib']
PROBE = osp.join(REPO, 'tests', 'install_probe.py')


@pytest.fixture
def source(tmp_path) -> str:
    """The repository's files (tracked and new, not ignored) in a scratch folder."""
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    src = str(tmp_path / 'src')
    for name in files:
        if name.startswith(('work_dirs/', 'data/')) or not osp.isfile(osp.join(REPO, name)):
            continue
        os.makedirs(osp.join(src, osp.dirname(name)), exist_ok=True)
        shutil.copy2(osp.join(REPO, name), osp.join(src, name))
    return src


def run(cmd, cwd=None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f'{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}'
    return done.stdout


def probe(tmp_path, install_site: str) -> str:
    user = str(tmp_path / 'user_config.py')
    with open(user, 'w') as f:
        f.write("_base_ = ['mmkd::kd/kd_resnet56_resnet8_fashionmnist.py']\n")
    return run([sys.executable, '-S', PROBE, VENV_SITE, install_site, user])


def prefix_site(prefix: str) -> str:
    return sysconfig.get_paths(vars={'base': prefix, 'platbase': prefix})['purelib']


@pytest.mark.parametrize('legacy', [False, True], ids=['pep660', 'setup.py develop'])
def test_editable_install(tmp_path, source, legacy):
    prefix = str(tmp_path / 'prefix')
    run(PIP + ['--no-use-pep517' if legacy else '--use-pep517', '-e', source,
               '--prefix', prefix])
    assert osp.islink(osp.join(source, 'mmkd', '.mim', 'configs'))  # edits are seen at once
    site = prefix_site(prefix)
    if legacy:  # its .egg-link is read by easy-install; a .pth says the same
        with open(osp.join(site, 'mmkd-source.pth'), 'w') as f:
            f.write(source + '\n')
    out = probe(tmp_path, site)
    assert f'mmkd from {osp.join(source, "mmkd")}' in out and 'built ImageClassifier' in out


def test_wheel_install(tmp_path, source):
    dist = str(tmp_path / 'dist')
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
         '-w', dist, source])
    wheel = glob.glob(osp.join(dist, 'mmkd-*.whl'))[0]
    target = str(tmp_path / 'target')
    run(PIP + ['--target', target, wheel])
    assert osp.isfile(osp.join(target, 'mmkd', '.mim', 'configs', 'kd',
                               'kd_resnet56_resnet8_fashionmnist.py'))  # a copy, not a link
    out = probe(tmp_path, target)
    assert f'mmkd from {osp.join(target, "mmkd")}' in out and 'built ImageClassifier' in out


def test_the_environment_keeps_its_own_mmkd():
    """The routes above install beside the environment's mmkd, never over it."""
    done = subprocess.run([sys.executable, '-c', 'import mmkd, os; print(os.path.dirname('
                           'mmkd.__file__))'], cwd=osp.dirname(REPO), capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.strip() == osp.join(REPO, 'mmkd'), done.stderr


def test_sdist_install(tmp_path, source):
    dist = str(tmp_path / 'dist')
    run([sys.executable, 'setup.py', '-q', 'sdist', '-d', dist], cwd=source)
    archive = glob.glob(osp.join(dist, 'mmkd-*.tar.gz'))[0]
    target = str(tmp_path / 'target')
    run(PIP + ['--target', target, archive])
    out = probe(tmp_path, target)
    assert f'mmkd from {osp.join(target, "mmkd")}' in out and 'built ImageClassifier' in out
