"""All settings in one place: flags override ``MODELPLANE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELPLANE_", extra="ignore")

    redis_url: str | None = None
    """Redis to use; empty starts the embedded redis-server under ``data_dir``."""

    data_dir: Path = Path.home() / ".modelplane"
    """Where the embedded Redis keeps its AOF and where artifacts live by default."""

    artifact_root: Path | None = None
    """Content-addressed ONNX store; defaults to ``data_dir/artifacts``. Must be
    reachable by every replica (a shared volume in a cluster)."""

    key_prefix: str = "mp"
    """Prefix of every Redis key and channel, so several installs can share a Redis."""

    ray_address: str | None = None
    """An existing Ray cluster; empty starts a local one."""

    ray_num_cpus: int = 2
    """CPUs the local Ray may use; explicit so Ray does not claim the whole machine."""

    host: str = "127.0.0.1"
    """Interface the control plane and the replicas listen on."""

    control_port: int = 50050
    """Control-plane gRPC port (registry, routing, telemetry, OTLP receiver)."""

    inference_port: int = 50051
    """Data-plane gRPC port; every replica on a node binds it with SO_REUSEPORT."""

    replicas: int = 1
    """Serving replicas of the data plane."""

    bind_node_ip: bool = False
    """Replicas listen on their Ray node's IP instead of ``host`` and advertise it in
    the replica directory: clients then reach every node's replicas directly through
    the control plane's resolver (``modelplane.resolver``)."""

    replica_num_cpus: float = 0.5
    """Fractional CPU reserved per replica, so replicas fit beside the control plane."""

    ort_intra_op_threads: int = 1
    """onnxruntime intra-op threads per session; 1 keeps replicas from fighting for cores."""

    ort_inter_op_threads: int = 1
    """onnxruntime inter-op threads per session."""

    ort_allow_spinning: bool = False
    """Let onnxruntime's thread pools spin while idle. Off: on small machines the
    spinning steals the cycles the gRPC threads need, which costs more than the
    wake-up latency it saves."""

    batch_max_size: int = 32
    """Default dynamic batching limit (rows per onnxruntime run) of a version whose
    route targets set none; 1 turns batching off."""

    batch_max_wait_us: int = 0
    """Default time a request may wait for company once others are already queued;
    a lone request never waits."""

    inline_run_threshold_us: int = 300
    """A version whose one-row run (measured at load) is faster than this runs on
    the event loop, unbatched: a hop to a thread would cost more than the run."""

    otlp_endpoint: str | None = None
    """Where replicas export OTLP; empty means the control plane's own receiver."""

    metric_export_interval_ms: int = 1000
    """How often replicas push metrics; bounds how stale ``stats`` can be."""

    telemetry_enabled: bool = True
    """Replicas export traces and metrics; off only to measure what telemetry costs."""

    otlp_collector_endpoint: str | None = None
    """An extra OTLP/gRPC collector (Jaeger, Tempo...) replicas export to as well."""

    trace_sample_ratio: float = 0.01
    """Share of ordinary requests exported as spans (errors and slow ones always are)."""

    slow_request_threshold_ms: float = 100.0
    """A request slower than this is always exported as a span; 0 turns the rule off."""

    telemetry_flush_interval_s: float = 10.0
    """How often the control plane persists closed aggregation slots to Redis."""

    rollout_tick_s: float = 1.0
    """How often the control plane checks the gates of running rollouts."""

    alert_watch_interval_s: float = 10.0
    """How often the control plane evaluates alerts and audits (hence webhooks) the
    ones that start; 0 turns the watcher off (``ListAlerts`` still answers)."""

    alert_accuracy_max_drop: float = 0.05
    """Accuracy alert: a version whose accuracy from feedback is this much below its
    endpoint's most-labelled version over the alert window."""

    alert_min_feedback: int = 20
    """Accuracy alert: labels each side needs before accuracies are compared."""

    retention_keep_last: int = 3
    """Artifact GC keeps the files of each model's latest N versions, retired or not."""

    retention_referenced_days: int = 90
    """Artifact GC keeps the files of versions named in the audit within this many days
    (retirement itself included); 0 turns this protection off."""

    prediction_ttl_s: int = 7 * 24 * 3600
    """How long a prediction stays known to the control plane for feedback."""

    prediction_records: bool = False
    """Ship every prediction's outputs to the control plane so ``Feedback`` can join
    ground truth to it (accuracy / MAE per version). Off by default: on the tiny
    model it costs about 8 % of a replica's throughput; turn it on where labels come."""

    drift_rows_per_interval: int = 16
    """Rows per version and export interval sampled for drift (0 turns drift off)."""

    webhook_allowed_hosts: tuple[str, ...] = ()
    """Webhook hosts allowed whatever they resolve to (e.g. an internal CI server)."""

    webhook_allow_private: bool = False
    """Allow webhooks to loopback and private addresses; link-local and cloud
    metadata addresses stay refused. Off: webhooks must not reach internal services."""

    metrics_port: int | None = None
    """Control-plane Prometheus ``/metrics`` port (0 picks one); empty turns it off."""

    replica_metrics_port: int | None = None
    """Replica Prometheus ``/metrics`` port (0 picks one per replica); empty: off."""

    prometheus_max_series: int = 200
    """Most (endpoint, version) label sets exported to Prometheus; the rest are folded
    into ``endpoint="other"`` so a flood of names cannot blow up cardinality."""

    max_upload_bytes: int = 2 * 1024**3
    """Largest ONNX file a registration may stream."""

    redis_appendfsync: Literal["everysec", "always"] = "everysec"
    """Embedded Redis AOF fsync policy: ``everysec`` may lose the last second of
    writes on a crash, ``always`` loses none at a cost per write. For an external
    Redis set ``appendonly yes`` and ``appendfsync`` there."""

    validation_timeout_s: float = 60.0
    """Wall-clock limit of the child process validating a new version."""

    validation_memory_bytes: int = 2 * 1024**3
    """Address space the validating child may add to what it maps at start."""

    source_roots: list[Path] = []
    """Directories a version may be registered from by URI; empty: uploads only."""

    source_schemes: list[str] = []
    """URI schemes allowed with ``source_roots`` (only ``file`` is understood)."""

    # ----------------------------------------------------------------- security

    auth_enabled: bool = False
    """Require a bearer token (static or JWT) on every control-plane RPC but health
    checks, and roles per RPC. ``modelplane up`` and ``modelplane control-plane`` turn
    it on unless it is set explicitly; embedding code opts in."""

    auth_tokens: list[str] = []
    """Static tokens as ``name:role:sha256hex`` (only hashes, never the tokens)."""

    auth_tokens_file: Path | None = None
    """A JSON token file (``{"tokens": [{"name", "role", "sha256"}]}``), e.g. a mounted
    Secret; ``up`` keeps its generated tokens in ``data_dir/auth/tokens.json``."""

    auth_jwks_file: Path | None = None
    """Public keys (JWKS) that verify JWT bearer tokens; empty: JWTs are not accepted."""

    auth_jwt_issuer: str | None = None
    """Required ``iss`` of accepted JWTs."""

    auth_jwt_audience: str | None = None
    """Required ``aud`` of accepted JWTs."""

    auth_jwt_role_claim: str = "modelplane_role"
    """JWT claim carrying the role (reader, deployer, admin); ``sub`` is the identity."""

    inference_auth_endpoints: list[str] = []
    """Inference endpoints whose predictions need a token (``*``: all); with any set,
    requests naming a model directly need one too."""

    token: str | None = None
    """Client side: the bearer token the CLI and client send (``MODELPLANE_TOKEN``)."""

    tls_cert_file: Path | None = None
    """Server certificate (PEM) for both planes; with ``tls_key_file`` turns TLS on."""

    tls_key_file: Path | None = None
    """Private key (PEM) of ``tls_cert_file``."""

    tls_client_ca_file: Path | None = None
    """CA that signs client certificates; set, the servers require them (mTLS)."""

    tls_ca_file: Path | None = None
    """Client side: CA to trust for the servers' certificates (else the system roots)."""

    tls_client_cert_file: Path | None = None
    """Client side: certificate presented for mTLS."""

    tls_client_key_file: Path | None = None
    """Client side: key of ``tls_client_cert_file``."""

    # ------------------------------------------------------------------- limits

    max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message either plane accepts or sends (uploads are chunked)."""

    max_concurrent_rpcs: int = 512
    """RPCs a replica runs at once; more get RESOURCE_EXHAUSTED instead of queueing."""

    control_max_concurrent_rpcs: int = 128
    """RPCs the control plane runs or queues at once; more get RESOURCE_EXHAUSTED."""

    default_deadline_s: float = 30.0
    """Server-side deadline of a data-plane call that brings none."""

    max_deadline_s: float = 300.0
    """Longest a data-plane call may run, whatever deadline the client asked for."""

    max_rows_per_request: int = 65536
    """Most rows (first dimension) of an input tensor; 0: unlimited."""

    max_elements_per_tensor: int = 16 * 1024 * 1024
    """Most elements of one input tensor; 0: unlimited."""

    shutdown_grace_s: float = 10.0
    """On SIGTERM, how long in-flight requests may finish before the server stops."""

    replica_gil_switch_interval_ms: float = Field(default=1.0, gt=0)
    """Python's thread switch interval in a Serve replica process (5 ms by default in
    CPython): how long a telemetry export thread may hold the GIL while the serving
    loop waits for it."""

    @field_validator("control_port", "inference_port")
    @classmethod
    def _port_in_range(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(f"port must be in 0..65535, got {value}")
        return value

    @field_validator("replicas", "ray_num_cpus", "ort_intra_op_threads", "ort_inter_op_threads")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("trace_sample_ratio")
    @classmethod
    def _ratio(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"must be within [0, 1], got {value}")
        return value

    @field_validator("replica_num_cpus")
    @classmethod
    def _positive_fraction(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"must be greater than 0, got {value}")
        return value

    @property
    def resolved_artifact_root(self) -> Path:
        return self.artifact_root or self.data_dir / "artifacts"

    @property
    def control_address(self) -> str:
        return f"{self.host}:{self.control_port}"

    @property
    def inference_address(self) -> str:
        return f"{self.host}:{self.inference_port}"
