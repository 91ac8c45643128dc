# Pixel-wise KD of the logits (the `pixel_kd` recipe: tau 1, weight 10, the official sum over
# the batch's pixels / (H W)) on the Fashion-MNIST scenes.
_base_ = ['./cwd_deeplabv3plus_r18w16-r18w8-d8_fashion-scenes-64x64.py']

model = dict(recipe='pixel_kd')
