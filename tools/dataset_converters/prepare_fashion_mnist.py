"""Put Fashion-MNIST into ``data/fashion_mnist`` from Debian's package.

Debian ships the dataset as ``dataset-fashion-mnist`` (idx files, gzipped).
This script installs the package with apt when it is missing and we run as
root, then gunzips the four idx files into one folder, which mmpretrain's
``FashionMNIST(data_root=..., download=False)`` reads.

Example:
    python tools/dataset_converters/prepare_fashion_mnist.py --out-dir data/fashion_mnist
"""
import argparse
import gzip
import os
import os.path as osp
import shutil
import subprocess
import sys

PACKAGE = 'dataset-fashion-mnist'
SOURCE_DIR = '/usr/share/datasets/fashion-mnist'
FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
         't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')
# Sizes of the gunzipped idx files: a truncated copy is caught here.
EXPECTED_BYTES = {
    'train-images-idx3-ubyte': 16 + 60000 * 28 * 28,
    'train-labels-idx1-ubyte': 8 + 60000,
    't10k-images-idx3-ubyte': 16 + 10000 * 28 * 28,
    't10k-labels-idx1-ubyte': 8 + 10000,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='data/fashion_mnist')
    parser.add_argument('--source-dir', default=SOURCE_DIR,
                        help='folder holding the *-idx?-ubyte.gz files')
    parser.add_argument('--no-apt', action='store_true',
                        help='never try to install the Debian package')
    return parser.parse_args()


def missing_sources(source_dir: str) -> list:
    return [f for f in FILES if not osp.isfile(osp.join(source_dir, f + '.gz'))]


def apt_install() -> bool:
    """Install the Debian package; True when it worked."""
    if os.name != 'posix' or os.geteuid() != 0 or shutil.which('apt-get') is None:
        return False
    print(f'installing {PACKAGE} with apt-get ...', flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', 'install', '-y', '--no-install-recommends', PACKAGE]
    if subprocess.call(cmd, env=env) != 0:
        subprocess.call(['apt-get', 'update'], env=env)
        return subprocess.call(cmd, env=env) == 0
    return True


def prepare(out_dir: str, source_dir: str = SOURCE_DIR, allow_apt: bool = True) -> str:
    """Gunzip the idx files into ``out_dir``; returns ``out_dir``.

    Raises:
        FileNotFoundError: when the files are neither there nor installable,
            with the command that fixes it.
    """
    if missing_sources(source_dir) and allow_apt and source_dir == SOURCE_DIR:
        apt_install()
    missing = missing_sources(source_dir)
    if missing:
        raise FileNotFoundError(
            f'Fashion-MNIST files {missing} are not in {source_dir}. Install them with '
            f'`sudo apt-get install {PACKAGE}` (Debian/Ubuntu), or pass --source-dir '
            'pointing at a folder with the four *-idx?-ubyte.gz files.')
    os.makedirs(out_dir, exist_ok=True)
    for name in FILES:
        dst = osp.join(out_dir, name)
        if osp.isfile(dst) and osp.getsize(dst) == EXPECTED_BYTES[name]:
            continue
        with gzip.open(osp.join(source_dir, name + '.gz'), 'rb') as fin, \
                open(dst + '.part', 'wb') as fout:
            shutil.copyfileobj(fin, fout)
        if osp.getsize(dst + '.part') != EXPECTED_BYTES[name]:
            raise ValueError(f'{name}: {osp.getsize(dst + ".part")} bytes after gunzip, '
                             f'expected {EXPECTED_BYTES[name]}; the source file is damaged.')
        os.replace(dst + '.part', dst)
    open(osp.join(out_dir, '.prepared'), 'w').close()
    return out_dir


def main():
    args = parse_args()
    try:
        out = prepare(args.out_dir, args.source_dir, allow_apt=not args.no_apt)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'Fashion-MNIST ready in {out}')


if __name__ == '__main__':
    main()
