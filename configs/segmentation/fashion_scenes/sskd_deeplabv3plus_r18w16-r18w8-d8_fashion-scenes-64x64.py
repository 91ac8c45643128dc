# Structured KD (pixel-wise + pair-wise, the `structured_kd` recipe: pixel-wise KD of the logits
# at weight 10 and the pair-wise similarities of 2 x 2-pooled regions of the decode head's last
# feature at weight 0.5) on the Fashion-MNIST scenes.
_base_ = ['./cwd_deeplabv3plus_r18w16-r18w8-d8_fashion-scenes-64x64.py']

model = dict(recipe='structured_kd')
