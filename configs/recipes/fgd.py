# FGD (Yang et al., CVPR 2022): at every FPN level, the student imitates the teacher's feature
# weighted by the teacher's spatial and channel attention, separately inside the ground-truth
# boxes (alpha, scaled by 1 / box area) and outside them (beta, / background cells), matches
# its attention maps (gamma, L1) and its global context after a GcBlock per net (lambda).
# The authors' RetinaNet / GFL constants: temp 0.5, alpha 1e-3, beta 5e-4, gamma 5e-4,
# lambda 5e-6 (their Faster / Mask R-CNN students: 5e-5, 2.5e-5, 5e-5, 5e-7). One loss per
# level, as theirs; its blocks (1x1 alignment where the widths differ, the GcBlocks) take
# their widths from the build-time dry run, train with the student and are not exported.
task = 'detection'
description = 'FGD (Yang et al.): focal and global distillation of every FPN level'
distill = dict(
    recorders=dict(fpn=dict(type='ModuleOutputs', source='<fpn>')),
    losses=dict(loss_fgd=dict(type='FGDLoss', student='fpn', teacher='fpn', temp=0.5,
                              alpha_fgd=0.001, beta_fgd=0.0005, gamma_fgd=0.0005,
                              lambda_fgd=0.000005)))
