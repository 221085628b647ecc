"""The scoring engine: same scores as each metric alone, one pass for many metrics, mixed sizes, checks."""

from __future__ import annotations

import warnings

import pytest
import torch

from qualoader.engine import METRIC_SUITES, EngineScores, ScoringEngine, parse_metric_spec, resize_target, score_batch
from qualoader.metrics import create_metric

CLASSICAL = list(METRIC_SUITES["classical"])


@pytest.fixture(scope="module")
def photo_bytes(photos: torch.Tensor) -> torch.Tensor:
    """The real photos as uint8, what a decoder hands the engine."""
    return photos.mul(255).round().to(torch.uint8)


def test_parse_metric_spec_expands_suites_and_drops_repeats() -> None:
    assert parse_metric_spec("classical") == CLASSICAL
    assert parse_metric_spec("noise, classical") == ["noise", *[n for n in CLASSICAL if n != "noise"]]
    assert parse_metric_spec(["bn-shift", "sharpness,bn-shift"]) == ["bn-shift", "sharpness"]
    assert parse_metric_spec("pyiqa:niqe") == ["pyiqa:niqe"]  # prefixed names go to create_metric


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("sharpnes", KeyError, "did you mean 'sharpness'"),
        ("classic", KeyError, "did you mean 'classical'"),
        (" , ", ValueError, "spec should name at least one metric"),
        ([], ValueError, "spec should name at least one metric"),
        (3, TypeError, "spec should be a metric name"),
        (["sharpness", 3], TypeError, "spec\\[i\\] should be a metric name or suite"),
    ],
)
def test_parse_metric_spec_bad_input(spec: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_metric_spec(spec)  # type: ignore[arg-type]


@pytest.mark.parametrize("as_uint8", [True, False], ids=["uint8", "float"])
def test_classical_suite_equals_each_metric_alone(photo_bytes: torch.Tensor, as_uint8: bool) -> None:
    images = photo_bytes if as_uint8 else photo_bytes.float() / 255
    result = ScoringEngine("classical").score(images)
    assert isinstance(result, EngineScores) and list(result.scores) == CLASSICAL and result.difficulty == {}
    for name in CLASSICAL:
        expected = create_metric(name)(images).double()
        assert result.scores[name].dtype == torch.float64 and result.scores[name].device.type == "cpu"
        torch.testing.assert_close(result.scores[name], expected, rtol=1e-5, atol=1e-7, msg=name)


def test_chunking_does_not_change_scores(photo_bytes: torch.Tensor) -> None:
    whole = ScoringEngine("classical", chunk_size=64).score(photo_bytes).scores
    chunked = ScoringEngine("classical", chunk_size=4).score(photo_bytes).scores
    for name in CLASSICAL:
        torch.testing.assert_close(chunked[name], whole[name], rtol=1e-6, atol=1e-9, msg=name)


def test_mixed_sizes_keep_input_order(photo_bytes: torch.Tensor) -> None:
    images = [photo_bytes[i, :, : 40 + 8 * (i % 3), : 48 + 4 * (i % 2)] for i in range(photo_bytes.shape[0])]
    images[3] = images[3][:1]  # one grey image among colour ones
    result = ScoringEngine("sharpness,colorfulness,entropy").score(images)
    for name in ("sharpness", "colorfulness", "entropy"):
        metric = create_metric(name)
        expected = torch.stack([metric(image[None])[0] for image in images]).double()
        torch.testing.assert_close(result.scores[name], expected, rtol=1e-5, atol=1e-7, msg=name)


def test_aligned_metric_resizes_before_batching_with_unchanged_scores(photo_bytes: torch.Tensor) -> None:
    metric = create_metric("bn-shift")
    assert resize_target(metric) == tuple(metric.network.input_size) and resize_target(create_metric("noise")) is None
    images = [photo_bytes[i, :, : 60 + 5 * i, : 70 + 3 * i] for i in range(6)]
    calls: list[tuple[int, ...]] = []
    original = metric.score

    def counted(batch: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        calls.append(tuple(batch.shape))
        return original(batch, reference)

    metric.score = counted  # type: ignore[method-assign]
    result = ScoringEngine([metric, "brightness"]).score(images)
    assert calls == [(6, 3, *metric.network.input_size)]  # one network call for six sizes
    expected = torch.stack([original(image[None].float() / 255)[0] for image in images]).double()
    torch.testing.assert_close(result.scores["bn-shift"], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(result.difficulty["bn-shift"], metric.difficulty(result.scores["bn-shift"]).double())


def test_names_subset_and_function_form(photos: torch.Tensor) -> None:
    engine = ScoringEngine(["contrast", create_metric("noise")])
    assert engine.names == ["contrast", "noise"] and engine.calibrated == []
    only = engine.score(photos, names=["noise"])
    assert list(only.scores) == ["noise"]
    torch.testing.assert_close(only.scores["noise"], score_batch(photos, "noise")["noise"])
    assert set(engine.fingerprints()) == {"contrast", "noise"}
    with pytest.raises(ValueError, match="names should be a non-empty subset"):
        engine.score(photos, names=["sharpness"])


def test_grey_batch_without_channel_axis() -> None:
    images = torch.full((2, 16, 16), 0.25)
    torch.testing.assert_close(score_batch(images, "brightness")["brightness"], torch.full((2,), 0.25, dtype=torch.float64))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda x: x * 2, "should have float values in \\[0, 1\\]"),
        (lambda x: x.index_fill(0, torch.tensor([1]), float("nan")), "should be finite"),
    ],
)
def test_out_of_range_floats_raise_once_checked(photos: torch.Tensor, make, match: str) -> None:
    bad = make(photos[:3].clone())
    with pytest.raises(ValueError, match=match):
        ScoringEngine("classical").score(bad)
    ScoringEngine("brightness", check_values=False).score(bad)  # trusted input: no check


@pytest.mark.parametrize(
    ("metrics", "error", "match"),
    [
        ("psnr", ValueError, "should be no-reference metrics, but got the full-reference metric 'psnr'"),
        ([create_metric("noise"), create_metric("noise")], ValueError, "distinct names, but got 'noise' twice"),
        ([], ValueError, "at least one metric"),
        ([3], TypeError, "metric names or QualityMetric instances"),
        (3, TypeError, "metrics should be a metric name"),
        ("sharpnes", KeyError, "did you mean"),
    ],
)
def test_bad_metrics(metrics: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ScoringEngine(metrics)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ("a", TypeError, "images should be a tensor"),
        ([], ValueError, "at least one image"),
        ([torch.zeros(3, 8, 8), "x"], TypeError, "images\\[1\\] should be a tensor"),
        (torch.zeros(2, 4, 8, 8), ValueError, "C in \\{1, 3\\}"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), TypeError, "dtype uint8 or floating"),
        ([torch.zeros(1, 1, 3, 8, 8)], ValueError, "images\\[0\\] should have shape \\(C, H, W\\)"),
    ],
)
def test_bad_images(images: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ScoringEngine("brightness").score(images)  # type: ignore[arg-type]


def test_k_metrics_in_one_pass_equal_k_passes(photo_bytes: torch.Tensor) -> None:
    together = ScoringEngine("sharpness,noise,entropy").score(photo_bytes).scores
    for name in ("sharpness", "noise", "entropy"):
        torch.testing.assert_close(together[name], ScoringEngine(name).score(photo_bytes).scores[name])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_one_host_synchronisation_per_batch_on_cuda(photo_bytes: torch.Tensor) -> None:
    engine = ScoringEngine("classical,bn-shift", "cuda")
    images = [photo_bytes[i, :, : 64 + i, :64] for i in range(6)] + [photo_bytes[6].float() / 255]
    engine.score(images)  # warm-up: kernels and caches
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = engine.score(images)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]
    cpu = ScoringEngine("classical,bn-shift", "cpu").score(images)
    for name in result.scores:
        torch.testing.assert_close(result.scores[name], cpu.scores[name], rtol=1e-3, atol=1e-5, msg=name)


def test_reference_metric_domain_guard_sees_the_original_sizes(photo_bytes: torch.Tensor) -> None:
    from qualoader.profiles import DomainWarning

    engine = ScoringEngine("bn-shift")
    with pytest.warns(DomainWarning, match="far outside the input domain"):
        engine.score(photo_bytes[:2])  # 128 px colour photos for a 28 px grey network, resized by the engine


def _count_forwards(metrics: list) -> list[int]:
    """Count the forward passes of every metric's reference network (one counter per network object)."""
    calls = [0]
    for metric in metrics:
        metric.network.model.register_forward_pre_hook(lambda _module, _inputs: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_aligned_metrics_of_one_network_share_one_forward(fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    images = fashion_mnist_test[0][:48]
    names = ["bn-shift", "confidence", "task-guided"]
    metrics = [create_metric(name) for name in names]
    assert len({id(metric.network) for metric in metrics}) == 3  # three copies of one network: shared by identity of weights
    calls = _count_forwards(metrics)
    shared = ScoringEngine(metrics).score(images).scores
    assert calls[0] == 1
    for name in names:  # the same scores as each metric through its own pass
        torch.testing.assert_close(shared[name], ScoringEngine(name).score(images).scores[name], rtol=0, atol=0, msg=name)


def test_metrics_of_different_networks_run_their_own_forward(fashion_mnist_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    from qualoader.reference import default_reference

    other = default_reference()
    with torch.no_grad():
        next(other.model.parameters()).add_(1e-3)  # other weights: another function, so no sharing
    metrics = [create_metric("bn-shift"), create_metric("task-guided"), create_metric("confidence", reference=other)]
    calls = _count_forwards(metrics)
    images = fashion_mnist_test[0][:8]
    scores = ScoringEngine(metrics).score(images).scores
    assert calls[0] == 2  # bn-shift and task-guided share the default network's pass; confidence runs its own
    torch.testing.assert_close(scores["confidence"], ScoringEngine([metrics[2]]).score(images).scores["confidence"], rtol=0, atol=0)


@pytest.mark.parametrize(("metric", "side", "size"), [("blockiness", 8, 9), ("noise-reduced", 11, 12)])
def test_images_below_a_metrics_min_size_are_refused_naming_it(metric: str, side: int, size: int) -> None:
    built = create_metric("noise", downscale=4) if metric == "noise-reduced" else create_metric(metric)
    engine = ScoringEngine(["sharpness", built])
    images = [torch.rand(3, 40, 40), torch.rand(3, side, 30)]  # one image of the batch too small
    expected = rf"at least {size}x{size} pixels .* for metric '{built.name}', but got images.shape=\(1, 3, {side}, 30\)"
    with pytest.raises(ValueError, match=expected):
        engine.score(images)
    assert engine.score(images[:1]).scores[built.name].shape == (1,)
