"""Write a small synthetic detection set in the Pascal VOC 2007 layout.

Three VOC classes drawn as shapes on noisy, shaded backgrounds, in the
layout mmdet's ``VOCDataset`` reads: see
:mod:`mmkd.datasets.synthetic_voc.detection` for what is drawn and how.

Example:
    python tools/dataset_converters/make_synthetic_voc_det.py --out-dir data/synthetic_voc_det \
        --trainval 400 --test 100 --size 128
"""
import argparse

from mmkd.datasets.synthetic_voc import make_synthetic_voc_det


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='data/synthetic_voc_det')
    parser.add_argument('--trainval', type=int, default=400)
    parser.add_argument('--test', type=int, default=100)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    out = make_synthetic_voc_det(args.out_dir, args.trainval, args.test, args.size, args.seed)
    print(f'wrote {args.trainval} trainval and {args.test} test images to {out}/VOC2007')


if __name__ == '__main__':
    main()
