"""Write the Fashion-MNIST scenes: real photographed objects on textured backgrounds, in the
Pascal VOC 2007 layout, with boxes (detection) and label maps (segmentation).

See :mod:`mmkd.datasets.synthetic_voc.fashion_scenes` for what is drawn and how. The same
arguments write the same files; the command prints the sizes of what it wrote.

Example:
    python tools/dataset_converters/make_fashion_scenes.py --out-dir data/fashion_scenes \
        --trainval 1000 --test 300 --size 96 --preview work_dirs/fashion_scenes.png
"""
import argparse
import os.path as osp

from mmengine.utils import ProgressBar

from mmkd.datasets.synthetic_voc import make_fashion_scenes
from mmkd.datasets.synthetic_voc.fashion_scenes import preview, statistics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='data/fashion_scenes')
    parser.add_argument('--fashion-mnist', default='data/fashion_mnist',
                        help='folder with the four Fashion-MNIST IDX files (`make data`)')
    parser.add_argument('--trainval', type=int, default=1000)
    parser.add_argument('--test', type=int, default=300)
    parser.add_argument('--size', type=int, default=96,
                        help='scenes are SIZE to 1.25 SIZE pixels on a side')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--preview', help='also write a PNG of the first 8 test scenes')
    args = parser.parse_args()
    bar = ProgressBar(args.trainval + args.test)
    out = make_fashion_scenes(args.out_dir, args.fashion_mnist, args.trainval, args.test,
                              args.size, args.seed, progress=lambda done, total: bar.update())
    root = osp.join(out, 'VOC2007')
    print(f'\nwrote {root} (seed {args.seed}):')
    for split, s in statistics(root).items():
        boxes = ', '.join(f'{c} {n}' for c, n in s['boxes'].items())
        share = ', '.join(f'{c} {100 * v:.1f}%' for c, v in s['pixel_share'].items())
        print(f'  {split}: {s["images"]} images, {s["sides"][0]}-{s["sides"][1]} px a side; '
              f'boxes: {boxes} (+{s["difficult"]} difficult); labelled pixels: {share}')
    if args.preview:
        preview(root, [f'test_{i:05d}' for i in range(min(8, args.test))], args.preview)
        print(f'preview: {args.preview}')


if __name__ == '__main__':
    main()
