"""One clear message, at import, for a stack outside the tested ranges."""
import os
import subprocess
import sys
from importlib import metadata

import pytest

from mmkd.utils import versions


def test_the_installed_stack_is_in_range():
    assert versions.version_problems() == []


def test_versions_outside_the_ranges_are_named_with_the_range(monkeypatch):
    fake = {'mmcv': '2.2.0', 'mmengine': '0.9.1', 'mmdet': '3.3.0'}
    real = metadata.version

    def version(name):
        if name == 'mmpretrain':
            raise metadata.PackageNotFoundError(name)
        return fake.get(name) or real(name)

    monkeypatch.setattr(versions.metadata, 'version', version)
    problems = versions.version_problems()
    assert any(p.startswith('mmcv 2.2.0 is installed; mmkd is tested with 2.0.0 <= mmcv < 2.2.0')
               for p in problems)
    assert any(p.startswith('mmengine 0.9.1 is installed') for p in problems)
    assert any(p.startswith('mmpretrain is not installed') for p in problems)
    assert not any(p.startswith('mmdet') for p in problems)
    with pytest.raises(versions.IncompatibleVersionError, match='cannot run on this stack'):
        versions.check_versions()
    monkeypatch.setenv(versions.SKIP_ENV, '1')
    versions.check_versions()  # asked to try anyway


def test_importing_mmkd_checks_before_anything_else(tmp_path):
    # A fake `mmcv` distribution of an untested version, ahead of the real one on the path.
    info = tmp_path / 'mmcv-2.2.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: mmcv\nVersion: 2.2.0\n')
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}' + os.environ.get('PYTHONPATH', ''))
    env.pop(versions.SKIP_ENV, None)
    done = subprocess.run([sys.executable, '-c', 'import mmkd'], capture_output=True, text=True,
                          env=env)
    assert done.returncode != 0
    assert 'mmcv 2.2.0 is installed; mmkd is tested with 2.0.0 <= mmcv < 2.2.0' in done.stderr
