{{/* Chart name, overridable. */}}
{{- define "modelplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the release name alone when it already says modelplane. */}}
{{- define "modelplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "modelplane.selectorLabels" . }}
{{- end }}

{{- define "modelplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "modelplane.artifactsClaim" -}}
{{- default (printf "%s-artifacts" (include "modelplane.fullname" .)) .Values.artifacts.persistence.existingClaim }}
{{- end }}

{{/* The Redis every component uses: explicit URL, then Sentinel, then the embedded one. */}}
{{- define "modelplane.redisUrl" -}}
{{- $r := .Values.redis }}
{{- if $r.url }}
{{- $r.url }}
{{- else if $r.sentinel.enabled }}
{{- if not $r.sentinel.hosts }}{{ fail "redis.sentinel.hosts: list at least one host:port" }}{{ end }}
{{- printf "redis+sentinel://%s/%s/%v" (join "," $r.sentinel.hosts) $r.sentinel.masterName $r.sentinel.db }}
{{- else if $r.embedded.enabled }}
{{- printf "redis://%s-redis:6379/0" (include "modelplane.fullname" .) }}
{{- else }}
{{- fail "redis: set redis.url, enable redis.sentinel, or enable redis.embedded" }}
{{- end }}
{{- end }}

{{/* The artifact volume and its mount, shared by the control plane and the workers. */}}
{{- define "modelplane.artifactsVolume" -}}
- name: artifacts
{{- if .Values.artifacts.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "modelplane.artifactsClaim" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}

{{- define "modelplane.artifactsMount" -}}
- name: artifacts
  mountPath: {{ .Values.artifacts.mountPath }}
{{- end }}

{{/* The Secret holding the auth token hashes (and the replicas' token). */}}
{{- define "modelplane.authSecret" -}}
{{- default (printf "%s-auth" (include "modelplane.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Env of pods that present the replica token when auth is on (optional key). */}}
{{- define "modelplane.replicaTokenEnv" -}}
{{- if .Values.auth.enabled }}
- name: MODELPLANE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "modelplane.authSecret" . }}
      key: replica-token
      optional: true
{{- end }}
{{- end }}
