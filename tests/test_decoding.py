"""The one image decoder: modes, EXIF orientation, and the same pixels from every path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qualoader.decoding import ImageDecodeError, decode_image, load_image, pil_to_tensor


def _encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _ramp16() -> np.ndarray:
    """A 16-bit grey ramp whose top byte alone would give a very different mean than value / 65535."""
    return (np.linspace(0, 40000, 24 * 32).reshape(24, 32)).astype(np.uint16)


def test_sixteen_bit_png_same_brightness_from_every_path(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    from qualoader.data._samples import image_to_tensor
    from qualoader.engine import score_batch
    from qualoader.report.sources import decode_image as report_decode
    from qualoader.report.sources import load_source
    from qualoader.webdataset import decode_image as webdataset_decode

    ramp = _ramp16()
    data = _encode(Image.fromarray(ramp))
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "ramp.png").write_bytes(data)
    expected = float(ramp.astype(np.float64).mean() / 65535.0)

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        from_pil = image_to_tensor(opened)
    decoded = {
        "decoding": decode_image(data),
        "webdataset": webdataset_decode(data),
        "report": report_decode(data),
        "report folder source": load_source(tmp_path).samples[0].decode(),
        "ImageFolder loader": ImageFolder(str(tmp_path), loader=load_image)[0][0],
        "PIL image in a dataset": from_pil,
    }
    for path, image in decoded.items():
        assert image.shape == (1, 24, 32) and image.dtype == torch.float32, path
        brightness = float(score_batch(image[None], ["brightness"])["brightness"][0])
        assert brightness == pytest.approx(expected, abs=1e-6), path


def test_sixteen_bit_png_same_brightness_from_the_precompute_command(tmp_path: Path) -> None:
    from qualoader.cli import main
    from qualoader.data import ScoreStore
    from qualoader.metrics import create_metric

    ramp = _ramp16()
    (tmp_path / "images" / "cls").mkdir(parents=True)
    Image.fromarray(ramp).save(tmp_path / "images" / "cls" / "ramp.png")
    store = tmp_path / "store"
    assert main(["precompute", str(tmp_path / "images"), "--store", str(store), "--metric", "brightness", "--no-progress"]) == 0
    scores = ScoreStore(store).table(create_metric("brightness")).scores()
    assert float(scores[0]) == pytest.approx(float(ramp.astype(np.float64).mean() / 65535.0), abs=1e-6)


def test_eight_bit_grey_and_rgb_keep_uint8() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = decode_image(_encode(Image.fromarray(grey)))
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 4) and torch.equal(out[0], torch.from_numpy(grey))
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = decode_image(_encode(Image.fromarray(rgb)))
    assert torch.equal(out, torch.from_numpy(rgb).permute(2, 0, 1))


def test_rgba_and_grey_alpha_drop_alpha() -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red: the stored colour is kept
    out = decode_image(_encode(Image.fromarray(rgba, mode="RGBA")))
    assert out.shape == (3, 2, 3) and bool((out[0] == 200).all()) and bool((out[1:] == 0).all())
    la = Image.fromarray(np.full((2, 2, 2), 90, dtype=np.uint8), mode="LA")
    out = decode_image(_encode(la))
    assert out.shape == (1, 2, 2) and bool((out == 90).all())


def test_palette_png_with_transparency() -> None:
    palette_image = Image.new("P", (4, 2))
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette_image.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    palette_image.info["transparency"] = 1
    data = _encode(palette_image, transparency=1)
    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.mode == "P" and "transparency" in reopened.info
    out = decode_image(data)
    assert out.shape == (3, 2, 4) and out.dtype == torch.uint8
    red = torch.tensor([255, 0, 0], dtype=torch.uint8)
    blue = torch.tensor([0, 0, 255], dtype=torch.uint8)
    assert torch.equal(out[:, 0, 0], red) and torch.equal(out[:, 0, 1], blue)  # the transparent index keeps its colour


def test_cmyk_jpeg_becomes_rgb() -> None:
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[:, :16] = (200, 40, 40)
    rgb[:, 16:] = (30, 160, 90)
    data = _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.mode == "CMYK"
    out = decode_image(data)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    error = (out.permute(1, 2, 0).int() - torch.from_numpy(rgb).int()).abs().float().mean()
    assert float(error) < 6.0


def test_exif_orientation_is_applied() -> None:
    array = np.zeros((16, 48), dtype=np.uint8)
    array[:, :8] = 255  # a bright band on the left edge of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = _encode(Image.fromarray(array).convert("RGB"), "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data)
    assert out.shape == (3, 48, 16)
    upright = torch.from_numpy(np.rot90(array, k=-1).copy())  # clockwise: the left band goes to the top
    assert float((out[0].float() - upright.float()).abs().mean()) < 4.0
    assert float(out[0, :8].float().mean()) > 200 and float(out[0, 8:].float().mean()) < 40


def test_pil_to_tensor_matches_decode_and_applies_exif() -> None:
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 degrees
    array = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    data = _encode(Image.fromarray(array), exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        from_pil = pil_to_tensor(image)
    assert torch.equal(from_pil, decode_image(data))
    assert torch.equal(from_pil[0], torch.from_numpy(array[::-1, ::-1].copy()))


def test_float_and_bilevel_modes() -> None:
    values = np.array([[-0.5, 0.25], [0.75, 2.0]], dtype=np.float32)
    out = decode_image(_encode(Image.fromarray(values, mode="F"), "TIFF"))
    assert out.dtype == torch.float32 and torch.equal(out[0], torch.tensor([[0.0, 0.25], [0.75, 1.0]]))
    bilevel = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1")
    out = decode_image(_encode(bilevel))
    assert out.dtype == torch.uint8 and out.tolist() == [[[0, 255], [255, 0]]]


def test_load_image_equals_decode_image(tmp_path: Path) -> None:
    data = _encode(Image.fromarray(_ramp16()))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    assert torch.equal(load_image(path), decode_image(data))
    assert torch.equal(load_image(str(path)), decode_image(data))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: decode_image(b"garbage"), ImageDecodeError, "data \\(7 bytes\\) should decode to an image"),
        (lambda: decode_image(b""), ValueError, "should decode to an image"),
        (lambda: decode_image("a.png"), TypeError, "data should be encoded image bytes, but got data of type str"),
        (lambda: load_image("/nonexistent/a.png"), FileNotFoundError, "path should be an existing image file"),
        (lambda: load_image(3), TypeError, "path should be a str or os.PathLike"),
        (lambda: pil_to_tensor(np.zeros((2, 2))), TypeError, "image should be a PIL.Image.Image"),
    ],
)
def test_bad_input(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]


def test_webdataset_and_report_reexport_the_one_decoder() -> None:
    from qualoader.report import sources
    from qualoader.webdataset import _common

    assert _common.decode_image is decode_image and _common.ImageDecodeError is ImageDecodeError
    assert sources.decode_image is decode_image
