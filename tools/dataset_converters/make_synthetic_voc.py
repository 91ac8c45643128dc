"""Write a small synthetic segmentation set in the Pascal VOC 2012 layout.

A few VOC classes drawn as shapes on textured backgrounds, in the layout
mmseg's ``PascalVOCDataset`` reads: see
:mod:`mmkd.datasets.synthetic_voc.segmentation` for what is drawn and how.

Example:
    python tools/dataset_converters/make_synthetic_voc.py --out-dir data/synthetic_voc \
        --train 400 --val 100 --aug 0 --size 64
"""
import argparse

from mmkd.datasets.synthetic_voc import make_synthetic_voc


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='data/synthetic_voc')
    parser.add_argument('--train', type=int, default=400)
    parser.add_argument('--val', type=int, default=100)
    parser.add_argument('--aug', type=int, default=0)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    root = make_synthetic_voc(args.out_dir, args.train, args.val, args.aug, args.size,
                              args.seed)
    print(f'wrote {args.train} train, {args.val} val, {args.aug} aug images to {root}')


if __name__ == '__main__':
    main()
