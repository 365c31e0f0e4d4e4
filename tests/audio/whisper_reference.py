#!/usr/bin/env python3
"""Independent numpy reference of HF's WhisperFeatureExtractor (numpy path) for audio_test.

usage: whisper_reference.py IN.f32 OUT.f32 FEATURE_SIZE N_FFT HOP CHUNK_SECONDS RATE NORMALIZE
IN: little-endian float32 samples at RATE; OUT: float32 [FEATURE_SIZE, frames] row-major,
followed by one int32: the valid frame count.
Written from the algorithm (transformers audio_utils.spectrogram + mel_filter_bank,
WhisperFeatureExtractor._np_extract_fbank_features), with numpy's own FFT and linspace.
"""
import sys

import numpy as np


def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    lin = 3.0 * f / 200.0
    log = 15.0 + np.log(np.maximum(f, 1e-30) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = 200.0 * m / 3.0
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def mel_filters(n_freqs, n_mels, fmin, fmax, sr):
    mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    ff = mel_to_hz(mels)
    fft_freqs = np.linspace(0, sr // 2, n_freqs)
    diff = np.diff(ff)
    slopes = ff[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    return fb * (2.0 / (ff[2:n_mels + 2] - ff[:n_mels]))[None, :]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    n_mels, n_fft, hop, chunk, sr, normalize = (int(a) for a in sys.argv[3:9])
    x = np.fromfile(src, dtype="<f4")
    n = chunk * sr
    used = min(len(x), n)
    wave = np.zeros(n, dtype=np.float32)
    wave[:used] = x[:used]
    if normalize:
        seg = wave[:used].astype(np.float64)
        wave[:used] = ((seg - seg.mean()) / np.sqrt(seg.var() + 1e-7)).astype(np.float32)
    w = np.pad(wave.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    window = np.hanning(n_fft + 1)[:-1]
    frames = 1 + (len(w) - n_fft) // hop
    spec = np.empty((frames, n_fft // 2 + 1), dtype=np.complex64)
    for t in range(frames):
        spec[t] = np.fft.rfft(w[t * hop:t * hop + n_fft] * window)
    power = np.abs(spec, dtype=np.float64) ** 2
    mel = np.maximum(1e-10, mel_filters(n_fft // 2 + 1, n_mels, 0.0, 8000.0, sr).T @ power.T)
    log_spec = np.log10(mel).astype(np.float32)[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    log_spec = (log_spec + 4.0) / 4.0
    valid = min(log_spec.shape[1], -(-used // hop))
    with open(dst, "wb") as f:
        f.write(np.ascontiguousarray(log_spec, dtype="<f4").tobytes())
        f.write(np.array([valid], dtype="<i4").tobytes())


if __name__ == "__main__":
    main()
