# As mt_arithmetic_*, with the normalised geometric mean of the teachers' softened
# probabilities as the target (softmax of the mean of the logits / tau).
_base_ = ['./mt_arithmetic_resnet56_resnet20_resnet8_fashionmnist.py']

model = dict(losses=dict(loss_kd=dict(combine='geometric')))
