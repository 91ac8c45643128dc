"""The versions of the stack mmkd is tested with, checked once at import."""
import os
from importlib import metadata
from typing import Dict, List, Optional, Tuple

from packaging.version import Version

#: distribution -> (lowest, first excluded) version, and the version the tests ran with.
TESTED_RANGES: Dict[str, Tuple[str, str]] = {
    'torch': ('2.0.0', '3.0.0'),
    'mmengine': ('0.10.0', '0.11.0'),
    'mmcv': ('2.0.0', '2.2.0'),
    'mmpretrain': ('1.0.0', '1.3.0'),
    'mmdet': ('3.0.0', '3.4.0'),
    'mmsegmentation': ('1.0.0', '1.3.0'),
}
TESTED_WITH = {'torch': '2.14.1', 'mmengine': '0.10.7', 'mmcv': '2.1.0', 'mmpretrain': '1.2.0',
               'mmdet': '3.3.0', 'mmsegmentation': '1.2.2'}
#: Needed by every part of mmkd; the others only by the detection / segmentation parts.
REQUIRED = ('torch', 'mmengine', 'mmcv', 'mmpretrain')
#: Set to 1 to import mmkd with versions outside the tested ranges.
SKIP_ENV = 'MMKD_SKIP_VERSION_CHECK'


class IncompatibleVersionError(ImportError):
    """A package of the stack is missing or outside the range mmkd is tested with."""


def _installed(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def version_problems() -> List[str]:
    """One line per package that is missing (if required) or out of its range."""
    problems = []
    for name, (low, high) in TESTED_RANGES.items():
        found = _installed(name)
        if found is None:
            if name in REQUIRED:
                problems.append(f'{name} is not installed (mmkd needs {low} <= {name} < {high};'
                                f' tested with {TESTED_WITH[name]})')
            continue
        if not Version(low) <= Version(Version(found).base_version) < Version(high):
            problems.append(f'{name} {found} is installed; mmkd is tested with {low} <= {name} '
                            f'< {high} (tested: {TESTED_WITH[name]})')
    return problems


def check_versions() -> None:
    """Refuse, with one message, a stack outside the tested ranges.

    Raises:
        IncompatibleVersionError: naming each package, the version found and
            the range (set ``MMKD_SKIP_VERSION_CHECK=1`` to import anyway).
    """
    if os.environ.get(SKIP_ENV) == '1':
        return
    problems = version_problems()
    if problems:
        raise IncompatibleVersionError(
            'mmkd cannot run on this stack:\n  ' + '\n  '.join(problems) + '\nInstall the '
            'tested versions (see docs/get_started.md, or `make install` on a bare machine), '
            f'or set {SKIP_ENV}=1 to try anyway.')
