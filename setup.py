"""Install mmkd. Configs ship inside the package as ``mmkd/.mim/configs`` so
that ``mmkd::`` config paths resolve for editable and regular installs alike."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def version() -> str:
    namespace: dict = {}
    with open(osp.join(HERE, 'mmkd', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def add_mim_extension() -> None:
    """Expose ``configs/`` and ``tools/`` under ``mmkd/.mim``.

    An editable install gets symlinks, so edits are seen at once: ``develop``
    (old pip, ``--no-use-pep517``) or ``editable_wheel`` (PEP 660, current
    pip). A wheel or sdist build gets copies.
    """
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install', 'build')):
        mode = 'copy'
    else:
        return
    mim_dir = osp.join(HERE, 'mmkd', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(HERE, name), osp.join(mim_dir, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_dir), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmkd',
        version=version(),
        description='Knowledge distillation for the OpenMMLab stack',
        long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read(),
        long_description_content_type='text/markdown',
        packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
        include_package_data=True,
        package_data={'mmkd': ['.mim/configs/**/*', '.mim/tools/**/*', '.mim/model-index.yml']},
        python_requires='>=3.9',
        install_requires=['mmengine>=0.10.7', 'mmpretrain>=1.2.0'],
        extras_require={'det': ['mmdet>=3.3.0'], 'seg': ['mmsegmentation>=1.2.2']},
        license='Apache-2.0',
        zip_safe=False,
    )
