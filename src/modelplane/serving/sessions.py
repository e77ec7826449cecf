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
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import numpy as np
import onnxruntime as ort

from modelplane.codec.tensors import numpy_dtype
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import ModelVersion, TensorSpec, VersionKey
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.reference import check_reference_outputs, load_reference

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


def _unchecked_run(session: ort.InferenceSession) -> Callable[..., list[Any]]:
    """The session's run without onnxruntime's Python-side checks.

    ``InferenceSession.run`` checks on every call what ``LoadedModel.validate``
    has already checked (every input present; no ownership or graph-capture
    constraint, which a CPU session never has) before calling its C++ session:
    several µs of a small model's request. The C++ session's own ``run`` takes
    the same arguments (output names, feeds, run options); a build of
    onnxruntime without it gets the checked ``run``.
    """
    run = getattr(getattr(session, "_sess", None), "run", None)
    return cast("Callable[..., list[Any]]", run if callable(run) else session.run)


class LoadedModel:
    """A version's session plus its signature checks."""

    __slots__ = (
        "_all_outputs",
        "_checks",
        "_output_set",
        "_probe_us",
        "_required",
        "_run",
        "batchable",
        "key",
        "session",
        "version",
    )

    def __init__(self, version: ModelVersion, session: ort.InferenceSession) -> None:
        self.version = version
        self.key = VersionKey(version.model, version.version)
        self.session = session
        self._run = _unchecked_run(session)
        self._checks = {spec.name: _InputCheck(spec) for spec in version.signature.inputs}
        self._required = frozenset(self._checks)
        self._all_outputs = [spec.name for spec in version.signature.outputs] or [
            output.name for output in session.get_outputs()
        ]
        self._output_set = frozenset(self._all_outputs)
        # Batchable: every input's (and every declared output's) first
        # dimension is dynamic, so requests can be stacked along it.
        specs = (*version.signature.inputs, *version.signature.outputs)
        self.batchable = bool(version.signature.inputs) and all(
            spec.shape and spec.shape[0] < 0 for spec in specs
        )
        self._probe_us: float | None = None
        self._probe_us = self._probe()

    def probe_us(self) -> float | None:
        """A one-row run's time (best of a few, at load); None when no input can be built."""
        return self._probe_us

    def _probe(self) -> float | None:
        inputs: dict[str, np.ndarray] = {}
        for name, check in self._checks.items():
            shape = tuple(size if size >= 0 else 1 for size in check.spec.shape)
            inputs[name] = np.zeros(shape, dtype=check.dtype)
        if not inputs:
            return None
        best: float | None = None
        try:
            for _ in range(3):
                start = time.perf_counter()
                self.session.run(self._all_outputs, inputs)
                elapsed = (time.perf_counter() - start) * 1e6
                best = elapsed if best is None else min(best, elapsed)
        except Exception:  # zeros are not valid for every model (indices, lookups)
            _log.debug("probe run of %s failed", self.key, exc_info=True)
            return None
        return best

    def output_names(self, output_names: Sequence[str] = ()) -> tuple[str, ...]:
        """The outputs to compute: the named ones (checked) or, for none, all."""
        if not output_names:
            return tuple(self._all_outputs)
        for name in output_names:
            if name not in self._output_set:
                raise InvalidArgument(
                    f"output_names: model '{self.key.model}' version {self.key.version} "
                    f"has no output '{name}'; it has {self._all_outputs}"
                )
        return tuple(output_names)

    def run_checked(
        self, inputs: dict[str, np.ndarray], names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Runs inputs already validated, for outputs already checked."""
        results = self._run(list(names), inputs, None)
        return dict(zip(names, results, strict=True))

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
        return self.run_checked(inputs, self.output_names(output_names))


class SessionCache:
    """Thread-safe: loads each version at most once, concurrently for different versions."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        allow_spinning: bool = False,
    ) -> None:
        self._artifacts = artifacts
        self._intra = intra_op_threads
        self._inter = inter_op_threads
        self._spinning = "1" if allow_spinning else "0"
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
                self._replay_reference(version, model)
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

    def _replay_reference(self, version: ModelVersion, model: LoadedModel) -> None:
        """Reference outputs stored with the version must come out here too, or it never serves.

        Registration checked them in the validation sandbox; checking again on this
        replica catches a different onnxruntime build or CPU computing something else.
        """
        if not version.reference_sha256:
            return
        reference = load_reference(
            self._artifacts.read_verified(version.reference_sha256),
            version.reference_rtol,
            version.reference_atol,
        )
        what = f"{version.model}:{version.version}"
        check_reference_outputs(lambda inputs: model.run(inputs, ()), reference, what=what)

    def _new_session(self, version: ModelVersion) -> ort.InferenceSession:
        # onnxruntime reads the verified file itself: the model is never held
        # twice (once as Python bytes, once parsed), which matters for large ones.
        path = self._artifacts.verified_path(version.sha256)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._intra
        options.inter_op_num_threads = self._inter
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning pools steal the cycles the gRPC threads need on small
        # machines, which costs more than the wake-up latency they save.
        options.add_session_config_entry("session.intra_op.allow_spinning", self._spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", self._spinning)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
