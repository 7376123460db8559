"""PCM checks, rebuffering, resampling and model-file integrity."""
import numpy as np
import pytest

from ellsa_ros.speech import integrity
from ellsa_ros.speech.pcm import Rebuffer, check_rate, clean_frame, resample


def test_clean_frame_repairs_nan_inf_and_clipping():
    x = np.array([np.nan, np.inf, -np.inf, 3.0, -2.0, 0.25], np.float32)
    y = clean_frame(x)
    assert y.dtype == np.float32
    assert y.tolist() == [0.0, 1.0, -1.0, 1.0, -1.0, 0.25]


def test_clean_frame_scales_int16_and_accepts_a_column():
    y = clean_frame(np.array([[16384], [-32768]], np.int16))
    assert y.tolist() == [0.5, -1.0]


@pytest.mark.parametrize("bad, message", [(np.zeros((2, 100), np.float32), "shape"),
                                          (np.zeros(10, np.int32), "dtype")])
def test_clean_frame_refuses_what_is_not_mono_audio(bad, message):
    with pytest.raises(ValueError, match=message):
        clean_frame(bad)


def test_check_rate_names_the_rate():
    with pytest.raises(ValueError, match="44100"):
        check_rate(44100, "VAD")


def test_rebuffer_cuts_any_frame_size_into_windows_without_losing_samples():
    rb = Rebuffer(512)
    x = np.arange(2000, dtype=np.float32)
    out = [w for i in range(0, 2000, 300) for w in rb.push(x[i:i + 300])]
    assert [len(w) for w in out] == [512, 512, 512]
    assert np.array_equal(np.concatenate(out), x[:1536])


@pytest.mark.parametrize("src", [22050, 24000, 44100, 48000, 8000])
def test_resample_keeps_a_tone_and_its_duration(src):
    t = np.arange(src) / src
    y = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), src, 16000)
    assert len(y) == 16000
    want = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.max(np.abs(y[200:-200] - want[200:-200])) < 1e-3


def test_resample_removes_what_the_new_rate_cannot_carry():
    t = np.arange(24000) / 24000
    y = resample(np.sin(2 * np.pi * 10000 * t).astype(np.float32), 24000, 16000)   # above 8 kHz Nyquist
    assert np.sqrt(np.mean(y[200:-200] ** 2)) < 0.01


def test_pinned_model_files_verify():
    root = integrity.verify("hibari-tts")
    assert (root / "assets" / "hibari.onnx").is_file()


def test_changed_model_file_is_refused_with_its_name(monkeypatch):
    pin = integrity.PINS["hibari-tts"]
    files = dict(pin.files, **{"assets/vocab.json": "0" * 64})
    monkeypatch.setitem(integrity.PINS, "hibari-tts", integrity.PinnedModel(pin.distribution, pin.module,
                                                                            pin.version, files))
    with pytest.raises(integrity.IntegrityError, match="vocab.json.*force-reinstall hibari-tts==0.2.1"):
        integrity.verify("hibari-tts")


def test_other_version_is_refused(monkeypatch):
    pin = integrity.PINS["pocketsphinx"]
    monkeypatch.setitem(integrity.PINS, "pocketsphinx",
                        integrity.PinnedModel(pin.distribution, pin.module, "9.9.9", pin.files))
    with pytest.raises(integrity.IntegrityError, match="5.1.1, but 9.9.9 is pinned"):
        integrity.verify("pocketsphinx")


def test_verify_file_detects_a_changed_file(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights")
    import hashlib
    integrity.verify_file(f, hashlib.sha256(b"weights").hexdigest())
    f.write_bytes(b"other weights")
    with pytest.raises(integrity.IntegrityError, match="model.bin"):
        integrity.verify_file(f, "0" * 64)
