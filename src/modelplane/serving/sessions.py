"""onnxruntime sessions, one per model version, loaded once and kept warm.

Loading reads the artifact from the content-addressed file store (verified by
hash) and builds a session; it takes milliseconds to seconds, so it happens off
the predict path (at a route swap) or, for a version no route references, on the
first request naming it, once, with concurrent first requests waiting for the
same load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import onnxruntime as ort

from modelplane.codec.tensors import numpy_dtype
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import ModelVersion, TensorSpec, VersionKey
from modelplane.registry.artifacts import ArtifactStore

_log = logging.getLogger(__name__)


def _describe(dtype: str, shape: Sequence[int]) -> str:
    return f"{dtype} {list(shape)}"


class _InputCheck:
    """One input's expected dtype and shape, precomputed for a cheap check per call."""

    __slots__ = ("dtype", "fixed", "rank", "spec")

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec
        self.dtype = numpy_dtype(spec.dtype)
        self.rank = len(spec.shape)
        # (axis, size) of every fixed dimension; -1 (or any negative) is dynamic.
        self.fixed = tuple((axis, size) for axis, size in enumerate(spec.shape) if size >= 0)

    def check(self, array: np.ndarray) -> None:
        shape = array.shape
        if (
            array.dtype != self.dtype
            or len(shape) != self.rank
            or any(shape[axis] != size for axis, size in self.fixed)
        ):
            raise InvalidArgument(
                f"input '{self.spec.name}': expected "
                f"{_describe(self.spec.dtype.value, self.spec.shape)}, got "
                f"{_describe(str(array.dtype), shape)}"
            )


class LoadedModel:
    """A version's session plus its signature checks."""

    __slots__ = ("_all_outputs", "_checks", "_output_set", "_required", "key", "session", "version")

    def __init__(self, version: ModelVersion, session: ort.InferenceSession) -> None:
        self.version = version
        self.key = VersionKey(version.model, version.version)
        self.session = session
        self._checks = {spec.name: _InputCheck(spec) for spec in version.signature.inputs}
        self._required = frozenset(self._checks)
        self._all_outputs = [spec.name for spec in version.signature.outputs] or [
            output.name for output in session.get_outputs()
        ]
        self._output_set = frozenset(self._all_outputs)

    def validate(self, inputs: dict[str, np.ndarray]) -> None:
        checks = self._checks
        for name, array in inputs.items():
            check = checks.get(name)
            if check is None:
                raise InvalidArgument(
                    f"input '{name}': model '{self.key.model}' version {self.key.version} "
                    f"has no such input; it takes {sorted(self._required)}"
                )
            check.check(array)
        if len(inputs) != len(checks):
            missing = sorted(self._required.difference(inputs))
            spec = self._checks[missing[0]].spec
            raise InvalidArgument(
                f"input '{spec.name}': required, expected {_describe(spec.dtype.value, spec.shape)}"
            )

    def run(
        self, inputs: dict[str, np.ndarray], output_names: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Validates ``inputs`` against the signature, runs the session.

        ``output_names`` empty means every output.
        """
        self.validate(inputs)
        if output_names:
            for name in output_names:
                if name not in self._output_set:
                    raise InvalidArgument(
                        f"output_names: model '{self.key.model}' version {self.key.version} "
                        f"has no output '{name}'; it has {self._all_outputs}"
                    )
            names = list(output_names)
        else:
            names = self._all_outputs
        results = self.session.run(names, inputs)
        return dict(zip(names, results, strict=True))


class SessionCache:
    """Thread-safe: loads each version at most once, concurrently for different versions."""

    def __init__(
        self, artifacts: ArtifactStore, intra_op_threads: int = 1, inter_op_threads: int = 1
    ) -> None:
        self._artifacts = artifacts
        self._intra = intra_op_threads
        self._inter = inter_op_threads
        # Read without the lock on the predict path: a dict get is atomic and
        # the dict is only ever replaced whole under the lock (copy on write).
        self._loaded: dict[VersionKey, LoadedModel] = {}
        self._lock = threading.Lock()
        # One lock per version being loaded, so a slow load blocks only the
        # requests for that version.
        self._loading: dict[VersionKey, threading.Lock] = {}

    def get(self, key: VersionKey) -> LoadedModel | None:
        """The loaded model, or None: the cheap lookup for the predict path."""
        return self._loaded.get(key)

    def load(self, version: ModelVersion) -> LoadedModel:
        """The version's loaded model, loading it first if needed (once)."""
        key = VersionKey(version.model, version.version)
        model = self._loaded.get(key)
        if model is not None:
            return model
        with self._lock:
            version_lock = self._loading.setdefault(key, threading.Lock())
        with version_lock:
            model = self._loaded.get(key)
            if model is not None:
                return model
            try:
                model = LoadedModel(version, self._new_session(version))
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                loaded = dict(self._loaded)
                loaded[key] = model
                self._loaded = loaded
        _log.info("loaded %s (sha256 %s)", key, version.sha256[:12])
        return model

    def ensure_loaded(self, versions: Iterable[ModelVersion]) -> dict[VersionKey, Exception]:
        """Loads every version; returns the ones that failed with their error."""
        failures: dict[VersionKey, Exception] = {}
        for version in versions:
            try:
                self.load(version)
            except Exception as error:
                key = VersionKey(version.model, version.version)
                _log.warning("loading %s failed: %s", key, error)
                failures[key] = error
        return failures

    def loaded_keys(self) -> set[VersionKey]:
        return set(self._loaded)

    def evict_unreferenced(self, keep: Iterable[VersionKey]) -> set[VersionKey]:
        """Drops sessions not in ``keep``; in-flight requests holding one finish on it."""
        keep = set(keep)
        with self._lock:
            evicted = set(self._loaded) - keep
            if evicted:
                self._loaded = {k: m for k, m in self._loaded.items() if k in keep}
        for key in evicted:
            _log.info("unloaded %s", key)
        return evicted

    def _new_session(self, version: ModelVersion) -> ort.InferenceSession:
        data = self._artifacts.read_verified(version.sha256)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._intra
        options.inter_op_num_threads = self._inter
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning pools steal the cycles the gRPC threads need on small
        # machines, which costs more than the wake-up latency they save.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
