"""Teachers from elsewhere: their own data preprocessor and input size, a torchvision (or
timm) classifier as teacher, checkpoints by URL."""
import functools
import http.server
import threading

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

from mmkd.distillers import DistillerConfigError
from mmkd.registry import MODELS
from mmkd.utils import UnsafeCheckpointError

from conftest import tiny_classifier

STUDENT_NORM = dict(type='mmpretrain.ClsDataPreprocessor', mean=[100.0, 110.0, 120.0],
                    std=[50.0, 55.0, 60.0], to_rgb=False)
TEACHER_NORM = dict(type='mmpretrain.ClsDataPreprocessor', mean=[123.675, 116.28, 103.53],
                    std=[58.395, 57.12, 57.375], to_rgb=True)


pytestmark = pytest.mark.usefixtures('one_thread')


def rgb_classifier(depth: int = 8, widths=(4, 4, 8, 8)) -> dict:
    model = tiny_classifier(depth, widths)
    model['backbone']['in_channels'] = 3
    return model


def raw_batch(n: int = 4, size: int = 28) -> dict:
    """What a dataloader gives: uint8 BGR images and their labels."""
    gen = torch.Generator().manual_seed(0)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
                        for _ in range(n)],
                data_samples=[DataSample().set_gt_label(i % 10) for i in range(n)])


def normalised(raw: dict, norm: dict) -> torch.Tensor:
    """The batch normalised by hand, as the preprocessor config says."""
    x = torch.stack(raw['inputs']).float()
    if norm['to_rgb']:
        x = x.flip(1)
    mean = torch.tensor(norm['mean']).view(1, 3, 1, 1)
    return (x - mean) / torch.tensor(norm['std']).view(1, 3, 1, 1)


def distiller(**teacher_keys):
    return MODELS.build(dict(
        type='Distiller', recipe='kd', dry_run_shape=(3, 28, 28),
        student=dict(rgb_classifier(), data_preprocessor=STUDENT_NORM),
        teacher=dict(rgb_classifier(14, (8, 8, 16, 16)), checkpoint=None, **teacher_keys)))


def capture(module, store: dict, key: str, inputs: bool = False):
    def hook(_m, args, out):
        store[key] = (args[0] if inputs else out).detach().clone()
    return module.register_forward_hook(hook)


def test_a_teacher_with_its_own_preprocessing_gives_its_own_logits_in_the_distiller():
    model = distiller(preprocess='own', data_preprocessor=TEACHER_NORM, input_size=(32, 32))
    raw = raw_batch()
    seen = {}
    handles = [capture(model.teacher.head.fc, seen, 'teacher'),
               capture(model.student.backbone.stem[0], seen, 'student_in', inputs=True)]
    model.train()
    model.train_step(raw, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0)))
    for handle in handles:
        handle.remove()
    teacher_in = torch.nn.functional.interpolate(normalised(raw, TEACHER_NORM), size=(32, 32),
                                                 mode='bilinear', align_corners=False)
    with torch.no_grad():
        alone = model.teacher(teacher_in, mode='tensor')
    torch.testing.assert_close(seen['teacher'], alone, rtol=1e-5, atol=1e-5)
    # The student kept its own preprocessing.
    torch.testing.assert_close(seen['student_in'], normalised(raw, STUDENT_NORM))
    # The teacher evaluation hook and tools see the teacher's batch the same way.
    batch = model.preprocessor_of('teacher')(raw, False)
    torch.testing.assert_close(batch['inputs'], teacher_in)
    assert model.preprocessor_of('student') is model.data_preprocessor
    # Its preprocessing runs on copies of the data samples: the student's are untouched.
    assert all('gt_score' not in s for s in raw['data_samples'])


def test_a_teacher_without_own_inputs_changes_nothing():
    model = distiller()
    assert model.preprocessor_of('teacher') is model.data_preprocessor
    assert not model.data_preprocessor._forward_pre_hooks  # no raw batch kept
    # The teacher's config may name another preprocessor: without preprocess='own' the
    # teacher still gets the student's inputs (as before teachers could have their own).
    model = distiller(data_preprocessor=TEACHER_NORM)
    assert model.preprocessor_of('teacher') is model.data_preprocessor
    # input_size alone resizes the student's inputs for the teacher.
    model = distiller(input_size=(32, 32))
    seen = {}
    capture(model.teacher.backbone.stem[0], seen, 'in', inputs=True)
    data = model.data_preprocessor(raw_batch(), True)
    model.train()(**data, mode='loss')
    assert seen['in'].shape[-2:] == (32, 32)


def test_own_preprocessing_refuses_what_would_desynchronise_the_nets():
    with pytest.raises(DistillerConfigError, match='mixes images'):
        MODELS.build(dict(
            type='Distiller', recipe='kd', dry_run_shape=(3, 28, 28),
            student=dict(rgb_classifier(), data_preprocessor=dict(
                STUDENT_NORM, num_classes=10,
                batch_augments=dict(augments=dict(type='Mixup', alpha=0.2)))),
            teacher=dict(rgb_classifier(), checkpoint=None, preprocess='own')))
    with pytest.raises(DistillerConfigError, match="preprocess='raw'; use one of"):
        distiller(preprocess='raw')
    model = distiller(preprocess='own').train()
    with pytest.raises(DistillerConfigError, match='model.data_preprocessor\\(data, training\\)'):
        model(torch.randn(2, 3, 28, 28), None, mode='loss')
    # Outside training too: a teacher never silently gets the student's inputs.
    with pytest.raises(DistillerConfigError, match='no raw batch of 2 image'):
        model.eval().distillation_inputs(torch.randn(2, 3, 28, 28))


def test_own_preprocessing_holds_in_eval_mode_tools():
    # vis_features.py: the preprocessor, then distillation_inputs in eval mode.
    model = distiller(preprocess='own', data_preprocessor=TEACHER_NORM).eval()
    raw = raw_batch(2)
    data = model.data_preprocessor(raw, False)
    seen = {}
    capture(model.teacher.backbone.stem[0], seen, 'teacher_in', inputs=True)
    model.distillation_inputs(data['inputs'], data['data_samples'])
    torch.testing.assert_close(seen['teacher_in'], normalised(raw, TEACHER_NORM))


# --------------------------------------------------------------------------- other zoos
def test_a_torchvision_classifier_as_teacher(tmp_path):
    torchvision = pytest.importorskip('torchvision')
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    path = str(tmp_path / 'resnet18.pth')
    torch.save(net.state_dict(), path)  # a plain torchvision state dict
    model = MODELS.build(dict(
        type='Distiller', recipe='kd', dry_run_shape=(3, 32, 32),
        student=dict(rgb_classifier(), data_preprocessor=STUDENT_NORM),
        teacher=dict(type='TorchvisionClassifier', arch='resnet18', num_classes=10,
                     checkpoint=path, preprocess='own')))
    assert model.records['teacher']['logits'].source == 'model.fc'  # found by role
    raw = raw_batch(2, 32)
    seen = {}
    capture(model.teacher.model.fc, seen, 'logits')
    model.train_step(raw, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0)))
    with torch.no_grad():  # torchvision's own net on its ImageNet-normalised RGB input
        reference = net(normalised(raw, TEACHER_NORM))
    torch.testing.assert_close(seen['logits'], reference, rtol=1e-4, atol=1e-4)
    predicted = model.teacher(normalised(raw, TEACHER_NORM), mode='predict')
    assert predicted[0].pred_score.shape == (10, )


def test_a_timm_classifier_as_teacher_through_mmpretrain():
    pytest.importorskip('timm')  # mmpretrain's TimmClassifier needs timm installed
    model = MODELS.build(dict(
        type='Distiller', recipe='kd', dry_run_shape=(3, 32, 32),
        student=rgb_classifier(),
        teacher=dict(type='mmpretrain.TimmClassifier', model_name='resnet18', num_classes=10,
                     pretrained=False, checkpoint=None)))
    assert model.records['teacher']['logits'].source == 'model.fc'
    assert model(torch.randn(2, 3, 32, 32), [DataSample().set_gt_label(1)] * 2,
                 mode='loss')['loss_kd'] >= 0


# --------------------------------------------------------------------------- URLs
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_teacher_checkpoint_by_url_loads_through_the_safe_loader(tmp_path, monkeypatch):
    teacher = rgb_classifier(14, (8, 8, 16, 16))
    source = MODELS.build(dict(teacher))  # mmpretrain's ImageClassifier
    source.init_weights()
    served = tmp_path / 'served'
    served.mkdir()
    torch.save(dict(state_dict=source.state_dict(), meta=dict(epoch=3)), served / 'teacher.pth')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))  # a fresh download cache
    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(_Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/teacher.pth'
        model = MODELS.build(dict(type='Distiller', recipe='kd', dry_run_shape=(3, 28, 28),
                                  student=rgb_classifier(), teacher=dict(teacher, checkpoint=url)))
        for key, value in source.state_dict().items():
            assert torch.equal(model.teacher.state_dict()[key], value), key
        # A file that would run code when unpickled is refused, by URL as by path.
        class Evil:
            def __reduce__(self):
                return (print, ('pwned', ))
        torch.save(dict(state_dict=source.state_dict(), evil=Evil()), served / 'evil.pth')
        with pytest.raises(UnsafeCheckpointError, match='builtins.print'):
            MODELS.build(dict(type='Distiller', recipe='kd', dry_run_shape=(3, 28, 28),
                              student=rgb_classifier(), teacher=dict(
                                  teacher, checkpoint=url.replace('teacher', 'evil'))))
    finally:
        server.shutdown()
        server.server_close()
