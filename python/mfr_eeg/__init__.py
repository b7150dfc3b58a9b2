"""EEG artifact removal with TopK sparse autoencoders trained with Mutual Feature Regularization.

- ``denoise(x, sfreq, model=None, **options)``: a ``[channels, samples]`` array through the
  pipeline of ``mfr-eeg denoise`` (prefilters, resampling to the model's rate and back,
  reflected edges); returns a new array of the same shape and dtype.
- ``denoise_raw(raw, picks="eeg", ...)``: the same on an ``mne.io.Raw``; returns a copy with
  ``info`` and annotations kept.
- ``denoise_file(input, output, ...)``: an EDF/EDF+/BDF file exactly as the CLI does.
- ``Streamer(model, n_channels, sfreq, **options)``: the pipeline of ``denoise`` fed in chunks;
  ``push(chunk)`` returns the samples that became final, ``finish()`` the rest, and together
  they equal ``denoise`` of the whole recording bit for bit. Delay: at most ``latency``
  samples (4.25 s at 256 Hz: a 1 s block, the baseline's 2.25 s look-ahead, the 1 s window).
- ``CoreStreamer(model, n_channels, sfreq)``: the allocation-free streaming core alone, for
  the lowest delay; ``push(chunk)`` returns as many samples as it is given, delayed by
  ``latency`` samples (``d_in - 1``: 255 samples, 1.0 s, for the default 256 Hz model). It has
  no baseline stage, so its input must be free of DC offsets (e.g. high-passed).
- ``EyeStream(ch_names, sfreq, eog=None)``: the multi-channel eye stage of ``mfr-eeg denoise``
  (a Wiener filter that learns the blink pattern as it streams) for arrays fed in chunks;
  ``push(chunk)`` returns the cleaned samples ``latency`` samples late (0.5 s), EOG channels
  unchanged; chain it before ``Streamer`` or ``CoreStreamer``.
- ``Model.load(path)`` / ``Model.default()``: a validated model and its ``metadata``.

Work runs in Rust with the GIL released. Errors raise ``ModelError`` or ``DenoiseError`` (a
``ValueError``) with the CLI's messages; arrays that are not 2-D float32/float64 raise
``TypeError``.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from ._core import CoreStreamer as _CoreStreamer
from ._core import DenoiseError, Model, ModelError
from ._core import EyeStream as _EyeStream
from ._core import Streamer as _Streamer
from ._core import denoise as _denoise
from ._core import denoise_file as _denoise_file

__all__ = [
    "CoreStreamer",
    "DenoiseError",
    "EyeStream",
    "Model",
    "ModelError",
    "Streamer",
    "denoise",
    "denoise_file",
    "denoise_raw",
    "UNITS",
]

#: Factors from a unit to microvolts, the unit the shipped models were trained in.
UNITS = {"uV": 1.0, "µV": 1.0, "mV": 1e3, "V": 1e6, "nV": 1e-3}

ModelLike = Union[Model, str, "os.PathLike[str]", None]


def _model(model: ModelLike) -> Optional[Model]:
    if model is None or isinstance(model, Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        return Model.load(os.fspath(model))
    raise TypeError(f"model must be a Model, a path or None, got {type(model).__name__}")


def _scale(unit: Union[str, float]) -> float:
    if isinstance(unit, str):
        try:
            return UNITS[unit]
        except KeyError:
            raise ValueError(f"unknown unit {unit!r}; use one of {sorted(UNITS)} or a factor to uV") from None
    return float(unit)


def _check_array(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be a float32 or float64 array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"x must be 2-D [channels, samples], got shape {a.shape}")
    return a


def _pipeline_options(
    unit: Union[str, float],
    notch: Optional[float],
    notch_harmonics: bool,
    bandpass: Optional[tuple[float, float]],
    order: int,
    hop: Optional[int],
    ch_names: Optional[Sequence[str]],
    above_model_band: str,
    ola: Optional[str] = None,
) -> dict:
    """The compiled functions' keyword arguments for the pipeline options ``denoise`` and
    ``Streamer`` share."""
    return dict(
        scale=_scale(unit),
        notch=notch,
        notch_harmonics=notch_harmonics,
        bandpass=None if bandpass is None else (float(bandpass[0]), float(bandpass[1])),
        order=order,
        hop=hop,
        ola=ola,
        names=None if ch_names is None else [str(c) for c in ch_names],
        above_model_band=above_model_band,
    )


def denoise(
    x: Any,
    sfreq: float,
    model: ModelLike = None,
    *,
    unit: Union[str, float] = "uV",
    notch: Optional[float] = None,
    notch_harmonics: bool = False,
    bandpass: Optional[tuple[float, float]] = None,
    order: int = 4,
    hop: Optional[int] = None,
    threads: int = 0,
    ch_names: Optional[Sequence[str]] = None,
    above_model_band: str = "keep",
    ola: Optional[str] = None,
    gate: Optional[str] = None,
    gate_slow: Optional[str] = None,
    keep_slow: bool = False,
) -> np.ndarray:
    """Denoise ``x`` [channels, samples] sampled at ``sfreq`` Hz; returns a new array.

    ``unit`` is the unit of ``x`` ("uV", "mV", "V", "nV" or a factor to microvolts). The
    options are the CLI's: ``notch`` (50 or 60 Hz), ``notch_harmonics``, ``bandpass`` (low,
    high) Hz with Butterworth ``order``, the overlap-add ``hop`` (default: the model's) and
    taper ``ola`` ("hann" or "sine"; default: the model's), ``threads`` (0: one per core),
    and ``above_model_band`` ("keep" or "drop": what happens
    above the model's Nyquist frequency when ``sfreq`` is higher). ``ch_names`` name channels
    in error messages. ``gate`` ("LO,HI", "off", "model" or "after-eye"), ``gate_slow`` ("LO,HI,HALF") and
    ``keep_slow`` choose the correction gate as ``denoise --gate/--gate-slow/--keep-slow`` do.
    """
    a = _check_array(x)
    opts = _pipeline_options(unit, notch, notch_harmonics, bandpass, order, hop, ch_names, above_model_band, ola)
    return _denoise(a, float(sfreq), _model(model), threads=threads, gate=gate, gate_slow=gate_slow, keep_slow=keep_slow, **opts)


def denoise_file(input: Union[str, os.PathLike], output: Union[str, os.PathLike], model: ModelLike = None, **options: Any) -> dict:
    """Denoise an EDF/EDF+/BDF file into ``output`` exactly as ``mfr-eeg denoise`` does.

    Options: ``channels`` (labels), ``notch``, ``notch_harmonics``, ``bandpass``, ``order``,
    ``hop``, ``ola``, ``threads``, ``above_model_band``, ``allow_clipping``, ``spatial`` (the CLI's
    multi-channel eye stage, on by default as there; ``False`` is ``--no-spatial``), ``eog``
    (reference labels), ``eye_only`` (``--eye-only``: the eye stage alone), ``gate``
    ("LO,HI", "off", "model" or "after-eye": the correction gate instead of the default), ``gate_slow`` ("LO,HI,HALF":
    a separate ramp for the correction's slow part), ``keep_slow`` (``--keep-slow``: the model
    corrects only the fast part of each window). Returns a summary dict (channels, samples, clipped, seconds, notes, and
    ``eye``: the eye stage's summary line, or None when it did not run).
    """
    return _denoise_file(os.fspath(input), os.fspath(output), _model(model), **options)


def _pick_indices(raw: Any, picks: Any) -> list[int]:
    try:  # MNE's own rules for picks ("eeg", names, indices, slices).
        from mne._fiff.pick import _picks_to_idx
    except ImportError:  # pragma: no cover - older or newer MNE
        names = raw.copy().pick(picks).ch_names
        return [raw.ch_names.index(n) for n in names]
    return [int(i) for i in _picks_to_idx(raw.info, picks, exclude=())]


def denoise_raw(
    raw: Any,
    picks: Any = "eeg",
    model: ModelLike = None,
    *,
    copy: bool = True,
    spatial: bool = True,
    eog: Optional[Sequence[str]] = None,
    verbose: Any = None,
    **options: Any,
) -> Any:
    """Denoise the ``picks`` channels of an ``mne.io.Raw``; returns a copy (unless
    ``copy=False``) whose ``info`` and annotations are those of ``raw``.

    MNE holds EEG in volts; the data are converted to microvolts for the model and back.
    As ``mfr-eeg denoise`` does, the multi-channel eye stage (:class:`EyeStream`) runs first
    when ``spatial`` and the recording has references for it: the EOG channels (``eog``, else
    channels of type ``eog`` or labelled EOG/VEOG/HEOG) or else the frontal picks. EOG channels
    are references only (left unchanged unless picked). Without references the stage is
    skipped, unless ``eog`` was given: then ``DenoiseError``. Other options as for
    :func:`denoise`.
    """
    import mne

    out = raw.copy() if copy else raw
    out.load_data()
    idx = _pick_indices(out, picks)
    if not idx:
        raise DenoiseError(f"no channels match picks={picks!r}")
    names = [out.ch_names[i] for i in idx]
    sfreq = out.info["sfreq"]
    m = _model(model)

    with mne.utils.use_log_level(verbose):
        if spatial and _eye_stage_raw(out, idx, eog) and options.get("gate") is None and not options.get("keep_slow"):
            # As the CLI: after the eye stage the model's slow corrections pass only when large.
            options = {**options, "gate": "after-eye"}
        out.apply_function(lambda data: denoise(data, sfreq, m, unit="V", ch_names=names, **options), picks=idx, channel_wise=False)
    return out


def _eye_stage_raw(raw: Any, idx: Sequence[int], eog: Optional[Sequence[str]]) -> bool:
    """Runs :class:`EyeStream` over the picks ``idx`` of ``raw`` (in place), the EOG
    channels beside them as references; False if the recording has no references for it."""
    types = raw.get_channel_types()
    wanted = set(eog or [])
    extra = [i for i, (n, t) in enumerate(zip(raw.ch_names, types)) if i not in idx and (t == "eog" or n in wanted)]
    chans = list(idx) + extra
    try:
        stage = EyeStream([raw.ch_names[i] for i in chans], raw.info["sfreq"], eog=eog, unit="V")
    except DenoiseError:
        if eog is not None:
            raise
        return False
    cleaned = np.concatenate([stage.push(raw.get_data(picks=chans)), stage.finish()], axis=1)
    raw.apply_function(lambda _: cleaned[: len(idx)], picks=idx, channel_wise=False)
    return True


class _Stream:
    """What every streamer does (the compiled handle is ``self._s``)."""

    _s: Any

    def push(self, chunk: Any) -> np.ndarray:
        """Push ``[n_channels, n]`` samples; returns the processed samples that are ready."""
        return self._s.push(_check_array(chunk))

    @property
    def latency(self) -> int:
        """Most samples between an input sample and its output."""
        return self._s.latency

    @property
    def latency_s(self) -> float:
        """The delay in seconds."""
        return self._s.latency_s


class _DenoiseStream(_Stream):
    """What both denoising streamers report besides."""

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return self._s.n_channels

    @property
    def faults(self) -> int:
        """Samples replaced by 0 because they were NaN, infinite or huge."""
        return self._s.faults


class Streamer(_DenoiseStream):
    """The pipeline of :func:`denoise` fed in chunks, for ``n_channels`` channels at ``sfreq`` Hz.

    ``push(chunk)`` takes ``[n_channels, n]`` (any n, float32 or float64, in ``unit``) and
    returns ``[n_channels, m]``: the samples that became final (whole blocks of
    ``block_seconds``, so m varies and is often 0). ``finish()`` ends the recording and returns
    the rest. Concatenated, the outputs equal :func:`denoise` of the whole recording with the
    same options, bit for bit, however the stream is cut into chunks. A sample comes out at most
    ``latency`` samples after it went in: a block, the look-ahead of the centred baseline
    median (2.25 s) and of the model's window. Memory stays bounded by the block and its margins.
    The options are :func:`denoise`'s.
    """

    def __init__(
        self,
        model: ModelLike,
        n_channels: int,
        sfreq: float,
        *,
        unit: Union[str, float] = "uV",
        notch: Optional[float] = None,
        notch_harmonics: bool = False,
        bandpass: Optional[tuple[float, float]] = None,
        order: int = 4,
        hop: Optional[int] = None,
        ch_names: Optional[Sequence[str]] = None,
        above_model_band: str = "keep",
        block_seconds: float = 1.0,
        ola: Optional[str] = None,
        gate: Optional[str] = None,
        gate_slow: Optional[str] = None,
        keep_slow: bool = False,
    ):
        opts = _pipeline_options(unit, notch, notch_harmonics, bandpass, order, hop, ch_names, above_model_band, ola)
        self._s = _Streamer(
            _model(model),
            int(n_channels),
            float(sfreq),
            block_seconds=float(block_seconds),
            gate=gate,
            gate_slow=gate_slow,
            keep_slow=keep_slow,
            **opts,
        )

    def finish(self) -> np.ndarray:
        """End the recording; returns the remaining ``[n_channels, m]`` samples."""
        return self._s.finish()

    @property
    def released(self) -> int:
        """Samples per channel returned so far."""
        return self._s.released


class CoreStreamer(_DenoiseStream):
    """The allocation-free streaming core for ``n_channels`` channels at the model's rate.

    ``push(chunk)`` takes ``[n_channels, n]`` (any n, float32 or float64, in ``unit``) and
    returns ``[n_channels, n]``: the denoised signal delayed by ``latency`` samples
    (``d_in - 1``, i.e. 255 samples = 1.0 s for the default model; the first ``latency``
    outputs are the warm-up). How the stream is cut into chunks does not change the output.
    The core allocates nothing per push; this wrapper copies each chunk in and out. It is the
    core alone: unlike :class:`Streamer` it does not set each channel's baseline aside first,
    so DC-coupled input should be high-passed before it.
    """

    def __init__(self, model: ModelLike, n_channels: int, sfreq: float, *, hop: Optional[int] = None, unit: Union[str, float] = "uV"):
        self._s = _CoreStreamer(_model(model), int(n_channels), float(sfreq), hop=hop, scale=_scale(unit))


class EyeStream(_Stream):
    """The multi-channel eye stage of ``mfr-eeg denoise`` for arrays fed in chunks.

    A streaming multi-channel Wiener filter that learns the blink pattern from the recording
    (no calibration step): blinks are detected on the EOG channels (``eog``, else channels
    labelled EOG/VEOG/HEOG) or else on the frontal channels of ``ch_names``, and removed from
    every channel. ``push(chunk)`` takes ``[n_channels, n]`` (float32 or float64, in ``unit``)
    and returns the cleaned samples released so far, ``latency`` samples (0.5 s) late; EOG
    channels come out unchanged. ``finish()`` returns the rest. Chunking does not change the
    output. Chain it before :class:`Streamer` for the whole of ``denoise``'s processing.
    Raises ``DenoiseError`` if ``ch_names`` has neither EOG nor frontal channels.
    """

    def __init__(self, ch_names: Sequence[str], sfreq: float, *, eog: Optional[Sequence[str]] = None, unit: Union[str, float] = "uV"):
        self._s = _EyeStream([str(c) for c in ch_names], float(sfreq), eog=None if eog is None else [str(e) for e in eog], scale=_scale(unit))

    def finish(self) -> np.ndarray:
        """End the recording; returns the samples still held."""
        return self._s.finish()

    @property
    def references(self) -> str:
        """Which references the stage uses."""
        return self._s.references

    @property
    def active(self) -> bool:
        """Whether the filter acts now (a blink source has been found)."""
        return self._s.active

