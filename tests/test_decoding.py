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


# -- one bad image is named and skippable on every path ---------------------------------------------

_GOOD = 4  # good images per class folder


def _bad_images() -> dict[str, bytes]:
    """Images that decode but cannot be scored by a 3x3 metric: 1x1, 2x30000 (H x W), and a float TIFF holding NaN."""
    nan = np.full((16, 16), 0.5, dtype=np.float32)
    nan[3, 5] = np.nan
    return {
        "tiny.png": _encode(Image.new("L", (1, 1), 9)),
        "long.png": _encode(Image.new("L", (30000, 2), 9)),  # PIL sizes are (W, H)
        "nan.tif": _encode(Image.fromarray(nan, mode="F"), "TIFF"),
    }


def _good(seed: int) -> bytes:
    return _encode(Image.fromarray((np.random.default_rng(seed).random((20, 24)) * 255).astype(np.uint8)))


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for number, (name, data) in enumerate(_bad_images().items()):
        folder = root / f"class{number}"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(data)
        for i in range(_GOOD):
            (folder / f"good{i}.png").write_bytes(_good(10 * number + i))
    return root


@pytest.fixture
def bad_shard(tmp_path: Path) -> Path:
    import tarfile

    shard = tmp_path / "bad.tar"
    with tarfile.open(shard, "w") as tar:
        members = [(f"good{i}.png", _good(i)) for i in range(_GOOD)] + list(_bad_images().items())
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return shard


def test_check_scorable_names_the_image() -> None:
    from qualoader.decoding import check_scorable

    good = torch.zeros(1, 3, 3)
    assert check_scorable(good, "x", min_size=3) is good
    with pytest.raises(ImageDecodeError, match=r"^x should be at least 3x3 pixels .*, but got 2x30000 \(H x W\)$"):
        check_scorable(torch.zeros(1, 2, 30000), "x", min_size=3)
    inf = torch.zeros(1, 4, 4)
    inf[0, 1, 1], inf[0, 2, 2] = float("inf"), float("nan")
    with pytest.raises(ImageDecodeError, match="x should have finite pixel values, but got 2 NaN/Inf values"):
        check_scorable(inf, "x")
    assert check_scorable(torch.full((1, 4, 4), 255, dtype=torch.uint8), "x").dtype == torch.uint8  # ints cannot be NaN


def test_nan_tiff_and_huge_header_refused_by_name(tmp_path: Path) -> None:
    import struct
    import zlib

    path = tmp_path / "nan.tif"
    path.write_bytes(_bad_images()["nan.tif"])
    with pytest.raises(ImageDecodeError, match=r"nan\.tif'? should have finite pixel values, but got 1 NaN/Inf values"):
        load_image(path)
    # A PNG whose header claims 12000 x 12000 pixels: refused from the header, before 144 MB are decoded.
    png = bytearray(_encode(Image.new("L", (4, 4))))
    header = b"IHDR" + struct.pack(">II", 12000, 12000) + bytes(png[24:29])
    png[12:29] = header
    png[29:33] = struct.pack(">I", zlib.crc32(header))
    (tmp_path / "huge.png").write_bytes(bytes(png))
    with (
        pytest.warns(Image.DecompressionBombWarning),  # Pillow's own warning starts at 89 M pixels
        pytest.raises(ImageDecodeError, match=r"huge\.png'? should be at most 134217728 pixels, but got 12000x12000"),
    ):
        load_image(tmp_path / "huge.png")


def test_precompute_names_bad_images_and_skips_them(bad_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qualoader.cli import main
    from qualoader.data import ScoreStore

    command = ["precompute", str(bad_folder), "--metric", "sharpness", "--no-progress", "--store"]
    assert main([*command, str(tmp_path / "raise")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qualoader precompute: error: ") and err.count("\n") == 1 and "tiny.png" in err  # the first bad file, by name
    assert main([*command, str(tmp_path / "skip"), "--on-error", "skip"]) == 0
    (table,) = ScoreStore(tmp_path / "skip").tables()
    names = sorted(Path(reason.split("file '")[1].split("'")[0]).name for reason in table.skipped().values())
    assert names == ["long.png", "nan.tif", "tiny.png"]
    scores = table.scores()
    assert int(np.isfinite(scores).sum()) == 3 * _GOOD and len(scores) == 3 * _GOOD + 3  # good ones scored, bad ones NaN


@pytest.mark.parametrize("command", ["tag", "score"])
def test_tag_and_score_name_bad_images_and_skip_them(
    command: str, bad_shard: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qualoader.cli import main
    from qualoader.webdataset import SkippedSampleWarning, read_sidecar

    def run(out: Path, *extra: str) -> int:
        target = [str(out)] if command == "tag" else ["--out", str(out)]
        return main([command, str(bad_shard), *target, "--metric", "sharpness", "--no-progress", *extra])

    assert run(tmp_path / "raise") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qualoader {command}: error: {bad_shard}: sample 'tiny': image should be at least 3x3 pixels")
    assert err.count("\n") == 1
    with pytest.warns(SkippedSampleWarning):
        assert run(tmp_path / "skip", "--on-error", "skip") == 0
    sidecar = read_sidecar(next((tmp_path / "skip").glob("*.quality.json")))
    assert sorted(sidecar.keys) == [f"good{i}" for i in range(_GOOD)]
    reasons = {entry.key: (entry.error, entry.message) for entry in sidecar.skipped_samples}
    assert sorted(reasons) == ["long", "nan", "tiny"] and {error for error, _ in reasons.values()} == {"ImageDecodeError"}
    assert "2x30000" in reasons["long"][1] and "1x1" in reasons["tiny"][1] and "NaN" in reasons["nan"][1]


def test_report_lists_bad_images(bad_folder: Path) -> None:
    from qualoader.metrics import create_metric
    from qualoader.report.scoring import score_source
    from qualoader.report.sources import load_source

    table = score_source(load_source(str(bad_folder)), {"sharpness": create_metric("sharpness")})
    assert len(table.samples) == 3 * _GOOD and np.isfinite(table.scores["sharpness"]).all()
    assert sorted(problem.split(":")[0].split("/")[-1] for problem in table.problems) == ["long", "nan", "tiny"]
