"""annotate_quality / parse_quality_tags on shards of real images."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import pytest
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from qualoader.metrics import QualityMetric, create_metric
from qualoader.webdataset import (
    AnnotateQuality,
    ImageDecodeError,
    MissingImageError,
    MissingTagError,
    SkipAndCount,
    annotate_quality,
    decode_image,
    image_tensor,
    parse_quality_tags,
)


def _read(shards: list[str], *stages: object) -> list[dict]:
    return list(wds.WebDataset(shards, shardshuffle=False, empty_check=False).compose(*stages))


def _write_tar(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_scores_equal_direct_metric(fm_shards: list[str], fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    samples = _read(fm_shards, annotate_quality("sharpness", batch_size=32))
    images = fashion_mnist_test[0][:240]
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(240)]
    expected = create_metric("sharpness")(images)
    got = torch.tensor([s["__quality__"]["sharpness"] for s in samples])
    torch.testing.assert_close(got, expected)
    assert all(set(s["__quality__"]) == {"sharpness"} and "__difficulty__" not in s for s in samples)


def test_original_members_untouched(fm_shards: list[str]) -> None:
    plain = _read(fm_shards)
    annotated = _read(fm_shards, annotate_quality(["sharpness", "contrast"], batch_size=50))
    assert len(plain) == len(annotated) == 240
    for before, after in zip(plain, annotated, strict=True):
        assert after["png"] == before["png"] and after["cls"] == before["cls"]
        assert set(after["__quality__"]) == {"sharpness", "contrast"}


def test_variable_sizes_match_per_image_scoring(photo_shards: list[str]) -> None:
    metric = create_metric("contrast")
    samples = _read(photo_shards, annotate_quality(metric, batch_size=16))
    assert len(samples) == 45
    sizes = {decode_image(s["png"]).shape[-1] for s in samples}
    assert sizes == {48, 64, 80}
    for sample in samples:
        single = metric(decode_image(sample["png"])[None])[0]
        assert sample["__quality__"]["contrast"] == pytest.approx(float(single), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batch_size_does_not_change_scores(photo_shards: list[str], batch_size: int) -> None:
    reference = [s["__quality__"]["sharpness"] for s in _read(photo_shards, annotate_quality("sharpness", batch_size=45))]
    got = [s["__quality__"]["sharpness"] for s in _read(photo_shards, annotate_quality("sharpness", batch_size=batch_size))]
    assert got == pytest.approx(reference, rel=1e-5, abs=1e-7)


def test_difficulty_when_calibrated(fm_shards: list[str], calibrated_sharpness: QualityMetric) -> None:
    samples = _read(fm_shards[:1], annotate_quality(calibrated_sharpness, batch_size=40))
    scores = torch.tensor([s["__quality__"]["sharpness"] for s in samples])
    difficulty = torch.tensor([s["__difficulty__"]["sharpness"] for s in samples])
    torch.testing.assert_close(difficulty, calibrated_sharpness.difficulty(scores))
    assert 0 <= difficulty.min() and difficulty.max() <= 1 and difficulty.std() > 0


def test_stage_is_picklable_and_runs_in_workers(fm_shards: list[str]) -> None:
    stage = annotate_quality("brightness", batch_size=16)
    clone = pickle.loads(pickle.dumps(stage))
    assert isinstance(clone, AnnotateQuality) and clone.fingerprints == stage.fingerprints
    dataset = wds.WebDataset(fm_shards, shardshuffle=False, empty_check=False).compose(stage)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    keys = sorted(sample["__key__"] for sample in loader)
    assert keys == [f"{i:08d}" for i in range(240)]  # split_by_worker: each shard read once


def test_missing_image_member(tmp_path: Path) -> None:
    shard = _write_tar(tmp_path / "m.tar", {"a.cls": b"1", "b.cls": b"2", "b.txt": b"no image here"})
    with pytest.raises(MissingImageError, match="should have one of the image members"):
        _read([shard], annotate_quality("sharpness"))
    handler = SkipAndCount(warn=False)
    assert _read([shard], annotate_quality("sharpness", handler=handler)) == []
    assert handler.counts == {"MissingImageError": 2}


def test_undecodable_image(tmp_path: Path, fm_shards: list[str]) -> None:
    good = next(iter(wds.WebDataset(fm_shards[:1], shardshuffle=False)))["png"]
    shard = _write_tar(tmp_path / "u.tar", {"a.png": good, "b.png": b"\x89PNG not really", "c.png": good[: len(good) // 2]})
    with pytest.raises(ImageDecodeError, match="should decode to an image"):
        _read([shard], annotate_quality("sharpness"))
    handler = SkipAndCount(warn=False)
    samples = _read([shard], annotate_quality("sharpness", handler=handler))
    assert [s["__key__"] for s in samples] == ["a"]
    assert handler.counts == {"ImageDecodeError": 2}


def test_handler_false_stops_stream(fm_shards: list[str], tmp_path: Path) -> None:
    good = next(iter(wds.WebDataset(fm_shards[:1], shardshuffle=False)))["png"]
    shard = _write_tar(tmp_path / "s.tar", {"a.png": good, "b.png": b"junk", "c.png": good})
    samples = _read([shard], annotate_quality("sharpness", handler=_stop))
    assert [s["__key__"] for s in samples] == ["a"]  # samples before the error are delivered, none after


def _stop(exn: Exception) -> bool:
    return False


def test_skip_and_count_limit() -> None:
    handler = SkipAndCount(max_errors=1, warn=False)
    assert handler(ValueError("x"))
    with pytest.raises(KeyError):
        handler(KeyError("y"))
    with pytest.warns(RuntimeWarning, match="skipping after ValueError"):
        SkipAndCount()(ValueError("z"))


def test_parse_quality_tags() -> None:
    tagged = {"__key__": "k", "quality.json": b'{"quality": {"m": 0.5}, "difficulty": {"m": 0.1}, "fingerprints": {"m": "ab"}}'}
    (out,) = list(parse_quality_tags()([tagged]))
    assert out["__quality__"] == {"m": 0.5} and out["__difficulty__"] == {"m": 0.1} and out["__fingerprints__"] == {"m": "ab"}
    with pytest.raises(MissingTagError):
        list(parse_quality_tags()([{"__key__": "u", "png": b""}]))
    with pytest.warns(RuntimeWarning, match="MissingTagError"):
        assert list(parse_quality_tags("skip")([{"__key__": "u"}, tagged])) == [tagged]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"metric": "sharpness", "batch_size": 0}, ValueError),
        ({"metric": "sharpness", "batch_size": 2.0}, TypeError),
        ({"metric": 3}, TypeError),
        ({"metric": []}, TypeError),
        ({"metric": ["sharpness", "sharpness"]}, ValueError),
        ({"metric": "no-such-metric"}, KeyError),
        ({"metric": "psnr"}, ValueError),
        ({"metric": "sharpness", "device": 0}, TypeError),
        ({"metric": "sharpness", "handler": "ignore"}, ValueError),
        ({"metric": "sharpness", "handler": 5}, TypeError),
        ({"metric": "sharpness", "image_keys": "png"}, TypeError),
        ({"metric": "sharpness", "image_keys": ()}, ValueError),
        ({"metric": "sharpness", "quality_key": "q", "difficulty_key": "q"}, ValueError),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error, match="should"):
        annotate_quality(**kwargs)


@pytest.mark.parametrize("spec", ["l8", "torchl8", "pill"])
def test_scoring_after_decode_equals_scoring_bytes(fm_shards: list[str], spec: str) -> None:
    """Grey images decoded by webdataset to numpy, tensors or PIL score exactly as their PNG bytes."""
    reference = [s["__quality__"]["sharpness"] for s in _read(fm_shards[:1], annotate_quality("sharpness"))]
    decoded = wds.WebDataset(fm_shards[:1], shardshuffle=False, empty_check=False).decode(spec).compose(annotate_quality("sharpness"))
    assert [s["__quality__"]["sharpness"] for s in decoded] == reference


def test_scoring_float_rgb_after_decode(fm_shards: list[str]) -> None:
    metric = create_metric("brightness")
    samples = list(
        wds.WebDataset(fm_shards[:1], shardshuffle=False, empty_check=False).decode("torchrgb").compose(annotate_quality(metric))
    )
    images = torch.stack([s["png"] for s in samples])
    assert images.shape == (80, 3, 28, 28) and images.dtype == torch.float32
    torch.testing.assert_close(torch.tensor([s["__quality__"]["brightness"] for s in samples]), metric(images))


def test_image_tensor_layouts_and_errors() -> None:
    import numpy as np
    from PIL import Image

    hwc = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)  # RGBA from webdataset's rgba8 decoder
    assert torch.equal(image_tensor(hwc), torch.from_numpy(hwc[:, :, :3]).permute(2, 0, 1))
    assert image_tensor(torch.zeros(5, 6)).shape == (1, 5, 6)
    assert image_tensor(Image.new("RGB", (4, 2))).shape == (3, 2, 4)
    with pytest.raises(
        ValueError, match="image should have shape \\(C, H, W\\) or \\(H, W\\) with 1, 3 or 4 channels, but got image.shape=\\(5, 6, 3\\)"
    ):
        image_tensor(torch.zeros(5, 6, 3))
    with pytest.raises(TypeError, match="image should have dtype uint8 or floating, but got image.dtype=torch.int64"):
        image_tensor(torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="image should be encoded bytes, a tensor, a numpy array or a PIL image, but got image of type str"):
        image_tensor("a.png")


def test_decode_image_modes() -> None:
    import numpy as np
    from PIL import Image

    def encode(array: np.ndarray, mode: str | None = None) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array, mode=mode).save(buffer, format="PNG")
        return buffer.getvalue()

    grey = decode_image(encode(np.arange(12, dtype=np.uint8).reshape(3, 4)))
    assert grey.shape == (1, 3, 4) and grey.dtype == torch.uint8 and grey[0, 2, 3] == 11
    rgba = decode_image(encode(np.full((2, 5, 4), 7, dtype=np.uint8)))
    assert rgba.shape == (3, 2, 5) and bool((rgba == 7).all())
    deep = decode_image(encode(np.full((2, 2), 65535, dtype=np.uint16)))
    assert deep.dtype == torch.float32 and bool((deep == 1.0).all())
    with pytest.raises(ImageDecodeError):
        decode_image(b"")
