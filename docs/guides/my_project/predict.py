"""Classify images with the exported student: plain mmpretrain, no mmkd.

Example:
    python my_project/predict.py my_project/resnet18_my_dataset.py student.pth img1.jpg ...
"""
import sys

from mmpretrain import ImageClassificationInferencer

config, checkpoint, *images = sys.argv[1:]
inferencer = ImageClassificationInferencer(config, pretrained=checkpoint, device='cpu')
for image, result in zip(images, inferencer(images)):
    print(f'{image}: {result["pred_class"]} ({result["pred_score"]:.2f})')
