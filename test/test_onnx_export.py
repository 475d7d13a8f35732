"""`panopticdepth export` and the onnxruntime backend: a tiny model exported to ONNX and run through onnxruntime
on the CPU gives the torch model's results (panoptic ids on >= 99.9 % of pixels, depth within 1e-3 relative), at
the traced size and at other sizes (dynamic export), with the config and canonical focal length read back from
the file; a fixed-size export refuses images that do not fit; the CLI writes a file `predict` then runs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402
from tiny_model import random_model, tiny_cfg  # noqa: E402

from panopticdepth_core.checkpoint.io import save_checkpoint  # noqa: E402
from panopticdepth_core.inference.model_files import resolve_model  # noqa: E402
from panopticdepth_core.inference.predictor import Predictor  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
# the tiny model keeps deformable position / encoder / depth heads, so their export form is what runs
CFG = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "160", "MODEL.CANONICAL_FOCAL", "500.0"]


def _images():
    rng = np.random.default_rng(0)
    # 64x96 (the trace size differs), 90x130 (not a multiple of 128: padding), 48x160 (resized)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((64, 96), (90, 130), (48, 160))]


def _assert_same(torch_pred, onnx_pred):
    equal = (torch_pred.panoptic == onnx_pred.panoptic).mean()
    assert equal >= 0.999, f"panoptic ids equal on only {100 * equal:.3f} % of pixels"
    assert (torch_pred.panoptic >= 0).any()  # something detected (random weights: few segments; see the head test)
    np.testing.assert_allclose(onnx_pred.depth, torch_pred.depth, rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from panopticdepth_ros.cli import main

    folder = tmp_path_factory.mktemp("onnx")
    cfg = tiny_cfg(*CFG)
    model = random_model(cfg, label_everything=True)
    weights = save_checkpoint(model, folder / "tiny.safetensors", cfg)
    onnx_path = folder / "tiny.onnx"
    assert main(["export", "--weights", str(weights), "--output", str(onnx_path)]) == 0
    return weights, onnx_path


def test_onnxruntime_equals_torch(exported):
    weights, onnx_path = exported
    model = resolve_model(None, onnx_path)  # the config comes out of the .onnx metadata
    assert model.cfg.MODEL.CANONICAL_FOCAL == 500.0
    torch_predictor = Predictor(resolve_model(None, weights).cfg, weights)
    onnx_predictor = Predictor(model.cfg, onnx_path, providers="cpu")
    assert onnx_predictor.backend == "onnxruntime" and onnx_predictor.focal_canonical == 500.0
    for image in _images():
        for focal in (None, 321.0):
            _assert_same(torch_predictor(image, focal), onnx_predictor(image, focal))


def test_head_outputs_equal(exported):
    """Every map the network outputs, not only the few segments a random model gives, matches torch's."""
    weights, onnx_path = exported
    cfg = resolve_model(None, weights).cfg
    torch_predictor, onnx_predictor = Predictor(cfg, weights), Predictor(cfg, onnx_path, providers="cpu")
    for h, w in ((64, 96), (90, 130)):
        image = torch.from_numpy(_images()[1][:h, :w]).permute(2, 0, 1)
        with torch.inference_mode():
            expected, _, _ = torch_predictor.model.predict_heads([image])
        got, _, _ = onnx_predictor.model.predict_heads([image])
        for name in expected.__dataclass_fields__:
            a, b = getattr(expected, name), getattr(got, name)
            for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
                torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
        kernels = torch.randn(5, cfg.MODEL.KERNEL_HEAD.CONVS_DIM)
        torch.testing.assert_close(onnx_predictor.model.project_thing(kernels),
                                   torch_predictor.model.project_thing(kernels))
        torch.testing.assert_close(onnx_predictor.model.project_stuff(kernels),
                                   torch_predictor.model.project_stuff(kernels))


def test_fixed_size_export(tmp_path, exported):
    from panopticdepth_core.inference.onnx_backend import export_onnx

    weights, _ = exported
    cfg = resolve_model(None, weights).cfg
    torch_predictor = Predictor(cfg, weights)
    path = export_onnx(torch_predictor.model, cfg, tmp_path / "fixed.onnx", size=(64, 100), canonical_focal=500.0)
    onnx_predictor = Predictor(cfg, path, providers="cpu")
    image = _images()[0]
    _assert_same(torch_predictor(image), onnx_predictor(image))  # 64x96 padded to the fixed 128x128
    with pytest.raises(ValueError, match="does not fit"):
        onnx_predictor(np.zeros((64, 300, 3), np.uint8))


def test_backend_choice_errors(exported):
    from panopticdepth_core.checkpoint.onnx_metadata import OnnxBackendError
    from panopticdepth_core.config import ConfigError

    weights, onnx_path = exported
    cfg = resolve_model(None, weights).cfg
    with pytest.raises(ConfigError, match="is an ONNX model"):
        Predictor(cfg, onnx_path, backend="torch")
    with pytest.raises(ConfigError, match="needs an .onnx model"):
        Predictor(cfg, weights, backend="onnxruntime")
    with pytest.raises(OnnxBackendError, match="not available"):
        Predictor(cfg, onnx_path, providers="NoSuchExecutionProvider")


def test_predict_command_runs_the_onnx_file(exported, tmp_path):
    from PIL import Image

    from panopticdepth_ros.cli import main

    _, onnx_path = exported
    Image.fromarray(_images()[1]).save(tmp_path / "frame.png")
    out = tmp_path / "out"
    assert main(["predict", "--input", str(tmp_path / "frame.png"), "--output", str(out), "--weights",
                 str(onnx_path), "--providers", "cpu", "--no-vis", "--quiet"]) == 0
    assert (out / "frame_panoptic.png").is_file()
