"""Type stubs of the compiled module ``mfr_eeg._core`` (see ``python/src/lib.rs``)."""

from os import PathLike
from typing import Any, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

_Float2D = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]

class ModelError(Exception): ...
class DenoiseError(ValueError): ...

class Model:
    @staticmethod
    def load(path: Union[str, PathLike[str]]) -> Model: ...
    @staticmethod
    def from_bytes(data: bytes) -> Model: ...
    @staticmethod
    def default() -> Model: ...
    @property
    def d_in(self) -> int: ...
    @property
    def d_sae(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def hop(self) -> int: ...
    @property
    def sample_rate_hz(self) -> float: ...
    @property
    def int8(self) -> bool: ...
    @property
    def path(self) -> str: ...
    @property
    def metadata(self) -> dict[str, Any]: ...

class Streamer:
    def __init__(
        self,
        model: Optional[Model],
        n_channels: int,
        sfreq: float,
        *,
        scale: float = 1.0,
        notch: Optional[float] = None,
        notch_harmonics: bool = False,
        bandpass: Optional[tuple[float, float]] = None,
        order: int = 4,
        hop: Optional[int] = None,
        ola: Optional[str] = None,
        names: Optional[list[str]] = None,
        above_model_band: str = "keep",
        block_seconds: float = 1.0,
        gate: Optional[str] = None,
        gate_slow: Optional[str] = None,
        keep_slow: bool = False,
    ) -> None: ...
    def push(self, chunk: _Float2D) -> _Float2D: ...
    def finish(self) -> _Float2D: ...
    @property
    def latency(self) -> int: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def n_channels(self) -> int: ...
    @property
    def released(self) -> int: ...
    @property
    def faults(self) -> int: ...

class CoreStreamer:
    def __init__(
        self,
        model: Optional[Model],
        n_channels: int,
        sfreq: float,
        *,
        hop: Optional[int] = None,
        scale: float = 1.0,
    ) -> None: ...
    def push(self, chunk: _Float2D) -> _Float2D: ...
    @property
    def latency(self) -> int: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def n_channels(self) -> int: ...
    @property
    def faults(self) -> int: ...

class EyeStream:
    def __init__(
        self,
        ch_names: Sequence[str],
        sfreq: float,
        *,
        eog: Optional[Sequence[str]] = None,
        scale: float = 1.0,
    ) -> None: ...
    def push(self, chunk: _Float2D) -> _Float2D: ...
    def finish(self) -> _Float2D: ...
    @property
    def latency(self) -> int: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def references(self) -> str: ...
    @property
    def active(self) -> bool: ...

def denoise(
    x: _Float2D,
    sfreq: float,
    model: Optional[Model] = None,
    *,
    scale: float = 1.0,
    notch: Optional[float] = None,
    notch_harmonics: bool = False,
    bandpass: Optional[tuple[float, float]] = None,
    order: int = 4,
    hop: Optional[int] = None,
    ola: Optional[str] = None,
    threads: int = 0,
    names: Optional[Sequence[str]] = None,
    above_model_band: str = "keep",
    gate: Optional[str] = None,
    gate_slow: Optional[str] = None,
    keep_slow: bool = False,
) -> _Float2D: ...
def denoise_file(
    input: Union[str, PathLike[str]],
    output: Union[str, PathLike[str]],
    model: Optional[Model] = None,
    *,
    channels: Optional[Sequence[str]] = None,
    notch: Optional[float] = None,
    notch_harmonics: bool = False,
    bandpass: Optional[tuple[float, float]] = None,
    order: int = 4,
    hop: Optional[int] = None,
    ola: Optional[str] = None,
    threads: int = 0,
    above_model_band: str = "keep",
    allow_clipping: bool = False,
    spatial: bool = True,
    eog: Optional[Sequence[str]] = None,
    eye_only: bool = False,
    gate: Optional[str] = None,
    gate_slow: Optional[str] = None,
    keep_slow: bool = False,
) -> dict[str, Any]: ...
