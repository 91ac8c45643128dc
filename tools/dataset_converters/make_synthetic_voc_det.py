"""Write a small synthetic detection set in the Pascal VOC 2007 layout.

Each image is a noisy, shaded background with one to three objects of
three VOC classes, each class a shape with its own colour family:

* ``car``: a wide filled rectangle, red;
* ``dog``: a filled ellipse, green;
* ``person``: a tall filled triangle, blue.

Objects are 20 to 50 % of the shorter image side; colours, textures and
positions vary and objects may overlap. The layout is VOC's:
``VOC2007/JPEGImages/*.jpg``, ``VOC2007/Annotations/*.xml`` (1-based pixel
boxes, ``difficult`` 0) and ``VOC2007/ImageSets/Main/{trainval,test}.txt``,
so mmdet's ``VOCDataset`` and the ``mmdet::pascal_voc`` dataset settings
read it when ``data_root`` points at the output folder. The tests of
``configs/detection`` and the measured run of its README use it.

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
