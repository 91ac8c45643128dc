"""Write a small synthetic segmentation set in the Pascal VOC 2012 layout.

Shapes of a few VOC classes (a class is a shape and a colour family) on
textured backgrounds, with VOC's conventions: JPEG images, palette PNG
labels in ``SegmentationClass`` (and grey-level ones in
``SegmentationClassAug``, as the SBD conversion writes them), a band of the
ignore label 255 along every object boundary, and split lists in
``ImageSets/Segmentation``. mmseg's ``PascalVOCDataset`` and the
``mmseg::_base_/datasets/pascal_voc12(_aug).py`` configs read it unchanged
when ``data_root`` points at ``<out-dir>/VOC2012``. The tests use it, and
so does the measured run of ``configs/segmentation/voc/README.md``.

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
