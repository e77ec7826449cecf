"""OpenTelemetry on the replicas; the OTLP receiver and aggregation in the control plane."""
