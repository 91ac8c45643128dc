# kq_resnet8_fashionmnist.py without the knowledge-quantification hook: the run that
# measures the hook's time overhead (compare its training time with the hooked run's).
_base_ = ['./kq_resnet8_fashionmnist.py']
custom_hooks = [dict(type='TeacherEvaluationHook')]
