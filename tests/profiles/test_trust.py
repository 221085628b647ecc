"""A received profile runs none of its code unless trusted: hostile entry points, a module beside the profile, TorchScript.

Every hostile file is written inside ``tmp_path`` and the tests run with ``tmp_path`` as the current
folder. Each hostile profile must be refused without running anything (the side effect it would
have is asserted absent) and accepted with trust; where accepting runs it harmlessly here, the side
effect is asserted present, so the refusal is not a network that simply never ran.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from qualoader.cli import main
from qualoader.metrics import create_metric
from qualoader.profiles import (
    TRUSTED_PROFILES_ENV,
    InputDomain,
    InputTransform,
    MetricSpec,
    ProfileError,
    ProfileTrustError,
    QualityProfile,
    ReferenceSpec,
    WeakProfileWarning,
    WeightsFile,
    load_profile,
    save_profile,
)

ROOT = Path(__file__).resolve().parents[2]

#: A module that marks its import in a file, then offers a network factory; written beside the profile.
_BESIDE = '''
from pathlib import Path
Path(__file__).with_name("imported.txt").write_text("the module beside the profile ran at import")
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))
'''


def _net() -> nn.Module:
    """The network ``build()`` of :data:`_BESIDE` returns (same keys and shapes)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    ).eval()


class _WritesOnForward(nn.Module):
    """Scripted, its forward writes 7.0 into ``marker`` through a shared memory map (what a hostile archive did)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(4, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mapped = torch.from_file(self.marker, True, 4, dtype=torch.float32)
        mapped.fill_(7.0)
        return self.fc(self.features(images).flatten(1)) + mapped.sum() * 0


def _profile(folder: Path, source: str, name: str | None, weights: Path, metric: str = "bn-shift", **extra: object) -> Path:
    spec = ReferenceSpec(
        source=source,
        name=name,
        weights=WeightsFile.of(weights),
        transform=InputTransform((28, 28), 1, (0.5,), (0.25,)),
        labels=tuple(f"c{i}" for i in range(10)),
        domain=InputDomain(channels=1, size=(28, 28), mean=(0.5,), std=(0.25,)),
    )
    profile = QualityProfile(f"test/{source}", spec, MetricSpec(metric, {}), **extra)  # type: ignore[arg-type]
    return save_profile(profile, folder / f"{(name or 'scripted').replace(':', '_')}.json")


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "net.pt"
    torch.save(_net().state_dict(), path)
    return path


@pytest.fixture
def beside(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A profile naming ``beside_module:build``, with that module next to it; ``tmp_path`` is the current folder."""
    (tmp_path / "beside_module.py").write_text(_BESIDE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "beside_module", raising=False)
    return _profile(tmp_path, "entry_point", "beside_module:build", weights)


@pytest.fixture
def scripted(tmp_path: Path) -> tuple[Path, Path]:
    """``(archive, marker)``: a TorchScript archive whose forward writes into ``marker`` (16 zero bytes until it runs)."""
    marker = tmp_path / "marker.bin"
    marker.write_bytes(bytes(16))
    archive = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; such archives still circulate
        torch.jit.script(_WritesOnForward(str(marker)).eval()).save(str(archive))
    return archive, marker


@pytest.mark.parametrize("entry", ["os:abort", "sys:exit", "builtins:input"])
def test_hostile_entry_points_are_refused_and_say_what_would_run(entry: str, tmp_path: Path, weights: Path) -> None:
    path = _profile(tmp_path, "entry_point", entry, weights)
    module, _, function = entry.partition(":")
    # Refused at load: had anything been called, os.abort would have killed this process and sys.exit raised SystemExit.
    for call in (lambda: load_profile(path), lambda: create_metric("bn-shift", profile=path)):
        with pytest.raises(ProfileTrustError) as raised:
            call()
        message = str(raised.value)
        assert "\n" not in message and f"imports the Python module {module!r} and calls its {function!r}" in message
        assert "--trust-profile" in message and hashlib.sha256(path.read_bytes()).hexdigest() in message
    assert load_profile(path, trust=True).reference.name == entry  # accepted with trust (building it would run it)


def test_a_module_beside_the_profile_never_runs_untrusted_and_resolves_from_the_current_folder_when_trusted(beside: Path) -> None:
    marker = beside.parent / "imported.txt"
    with pytest.raises(ProfileTrustError, match="imports the Python module 'beside_module'"):
        create_metric("bn-shift", profile=beside)
    assert not marker.exists() and "beside_module" not in sys.modules
    path_before = list(sys.path)
    metric = create_metric("bn-shift", profile=beside, trust_profile=True)
    assert marker.exists(), "trusted, the entry point resolves from the current folder as python -m does"
    assert sys.path == path_before, "the current folder is on sys.path for that one import only"
    assert metric(torch.rand(2, 1, 28, 28)).shape == (2,)


def test_a_trusted_entry_point_does_not_resolve_from_the_profiles_folder(beside: Path, tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the module lies beside the profile, not in the current folder
    with pytest.raises(ProfileError, match="should be an importable 'module:function'.*'beside_module:build'"):
        create_metric("bn-shift", profile=beside, trust_profile=True)
    assert not (tmp_path / "imported.txt").exists()


def test_the_allow_list_trusts_a_profile_by_its_sha256(beside: Path, tmp_path: Path, monkeypatch) -> None:
    allow = tmp_path / "trusted.txt"
    allow.write_text(f"# profiles I checked\n{'0' * 64}\n")
    monkeypatch.setenv(TRUSTED_PROFILES_ENV, str(allow))
    with pytest.raises(ProfileTrustError):
        load_profile(beside)
    allow.write_text(f"{hashlib.sha256(beside.read_bytes()).hexdigest()}  {beside.name}\n")  # sha256sum's own output
    assert load_profile(beside).reference.name == "beside_module:build"
    beside.write_text(beside.read_text().replace("test/entry_point", "test/edited"))  # any edit is another profile
    with pytest.raises(ProfileTrustError):
        load_profile(beside)
    allow.write_text("not a digest\n")
    with pytest.raises(ProfileError, match=f"{TRUSTED_PROFILES_ENV} should name a file of sha256 digests"):
        load_profile(beside)


def test_cli_refuses_in_one_line_and_runs_with_trust_profile(beside: Path, tmp_path: Path, capsys) -> None:
    marker = beside.parent / "imported.txt"
    store = tmp_path / "store"
    argv = ["precompute", "fashion-mnist:test", "--limit", "8", "--profile", str(beside), "--store", str(store), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qualoader precompute: error: profile ") and "\n" not in err and "--trust-profile" in err
    assert not marker.exists() and not store.exists()
    assert main(["calibrate", "--profile", str(beside), "--out", str(tmp_path / "refit.json")]) == 2
    assert "--trust-profile" in capsys.readouterr().err and not marker.exists()
    assert main([*argv, "--trust-profile"]) == 0
    assert marker.exists()
    # export only reads stored scores: the profile needs no trust there and its module is not imported again
    marker.unlink()
    sys.modules.pop("beside_module", None)
    out = tmp_path / "scores.csv"
    assert main(["export", str(store), "--profile", str(beside), "-o", str(out)]) == 0, capsys.readouterr().err
    assert not marker.exists()
    header, first = out.read_text().splitlines()[:2]
    assert header == "index,key,bn-shift,bn-shift_difficulty" and first.split(",")[2]


def test_python_m_qualoader_takes_the_current_folder_off_sys_path(tmp_path: Path) -> None:
    """``python -m`` (and ``-c``) put the current folder first on sys.path; ``qualoader.__main__`` removes it before importing."""
    code = (
        "import atexit, os, runpy, sys; "
        "atexit.register(lambda: print('current folder on sys.path:', '' in sys.path or os.getcwd() in sys.path)); "
        "sys.argv = ['qualoader', '--help']; runpy.run_module('qualoader', run_name='__main__', alter_sys=True)"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}  # the package from this checkout, not from the current folder
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("current folder on sys.path: False")


@pytest.mark.parametrize("metric", ["bn-shift", "confidence"])
def test_torchscript_runs_nothing_untrusted_and_bn_shift_refuses_before_forward(metric: str, scripted, tmp_path: Path) -> None:
    archive, marker = scripted
    path = _profile(tmp_path, "torchscript", None, archive, metric=metric)
    with pytest.raises(ProfileTrustError, match=f"runs the TorchScript program in {str(archive)!r}"):
        create_metric(metric, profile=path)
    assert marker.read_bytes() == bytes(16)
    if metric == "bn-shift":  # trusted, still refused by name before the output-shape check runs forward
        with pytest.raises(ProfileError, match="plain network for 'bn-shift'"):
            create_metric(metric, profile=path, trust_profile=True)
        assert marker.read_bytes() == bytes(16)
    else:
        create_metric(metric, profile=path, trust_profile=True)
        assert marker.read_bytes() != bytes(16), "trusted, its forward ran (the output-shape check)"


def test_a_weak_profile_warns_whenever_it_is_loaded(copied_default: Path, tmp_path: Path, capsys) -> None:
    from dataclasses import replace

    shipped = load_profile(copied_default)
    held_out = {**shipped.provenance["held_out"], "auroc": 0.52, "auroc_ci": [0.44, 0.60]}
    weak = save_profile(replace(shipped, provenance={**shipped.provenance, "held_out": held_out}, path=None), tmp_path / "weak.json")
    with pytest.warns(WeakProfileWarning, match=r"is weak \(held-out AUROC 0.520 \[0.440, 0.600\] does not clear chance") as caught:
        create_metric("bn-shift", profile=weak)
    assert caught[0].filename == __file__  # named at the user's line, not inside qualoader
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakProfileWarning)
        load_profile(copied_default)  # the shipped fit is strong: silent
    assert main(["profile", "show", str(weak)]) == 0
    assert "strength   WEAK: held-out AUROC 0.520" in capsys.readouterr().out
    store = tmp_path / "store"
    argv = ["precompute", "fashion-mnist:test", "--limit", "8", "--profile", str(weak), "--store", str(store), "--no-progress"]
    with pytest.warns(WeakProfileWarning):  # recorded, and printed as one line by the command
        assert main(argv) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "is weak" in line]
    assert len(err) == 1 and err[0].startswith("qualoader precompute: warning: profile ")


def test_a_profile_over_the_json_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from qualoader._json import MAX_JSON_BYTES
    from qualoader.profiles import ProfileError, load_profile

    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:  # sparse: the size check must come before any read
        file.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(ProfileError, match=f"profile '{huge}' should be at most {MAX_JSON_BYTES} bytes, but it has {MAX_JSON_BYTES + 1}"):
        load_profile(huge)
