{{/* Names, labels and the addresses the parts use to reach each other. */}}

{{- define "llmtel.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component: {{ include "llmtel.name" (list . "gateway") }} */}}
{{- define "llmtel.name" -}}
{{- printf "%s-%s" (include "llmtel.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{- define "llmtel.selectorLabels" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "llmtel.labels" -}}
{{ include "llmtel.selectorLabels" . }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{- define "llmtel.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/* The agents' Service: node-local (internalTrafficPolicy Local), so a pod's OTLP stays on its node. */}}
{{- define "llmtel.otlpEndpoint" -}}
{{- printf "http://%s:4317" (include "llmtel.name" (list . "otel-agent")) -}}
{{- end -}}

{{- define "llmtel.remoteWriteUrl" -}}
{{- if .Values.prometheus.enabled -}}
{{- printf "http://%s:9090/api/v1/write" (include "llmtel.name" (list . "prometheus")) -}}
{{- else -}}
{{- required "prometheus.enabled=false needs prometheus.remoteWriteUrl (your Prometheus' /api/v1/write)" .Values.prometheus.remoteWriteUrl -}}
{{- end -}}
{{- end -}}

{{/* Hardened defaults for every container: no root, no privilege escalation, no capabilities. */}}
{{- define "llmtel.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Whether the ServiceMonitor for the services' /metrics is rendered (see values.yaml). */}}
{{- define "llmtel.serviceMonitor" -}}
{{- $mode := toString .Values.serviceMonitor.enabled -}}
{{- if and (eq .Values.metrics.export "prometheus") (or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor"))) -}}
true
{{- end -}}
{{- end -}}

{{/* A Kubernetes memory quantity (Mi or Gi) in MiB, for memory_limiter. */}}
{{- define "llmtel.mebibytes" -}}
{{- $q := toString . -}}
{{- if hasSuffix "Gi" $q -}}
{{- mul (trimSuffix "Gi" $q | int) 1024 -}}
{{- else if hasSuffix "Mi" $q -}}
{{- trimSuffix "Mi" $q | int -}}
{{- else -}}
{{- fail (printf "memory limit %q: write it in Mi or Gi" $q) -}}
{{- end -}}
{{- end -}}

{{/* A NetworkPolicy peer: the release's pods of one component. {{ include "llmtel.peer" (list . "gateway") }} */}}
{{- define "llmtel.peer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
      app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}
{{/* The peers that scrape metrics ports and query the stores: the chart's Prometheus, and networkPolicy.monitoringFrom. */}}
{{- define "llmtel.monitoringPeers" -}}
{{- if .Values.prometheus.enabled }}
{{ include "llmtel.peer" (list . "prometheus") }}
{{- end }}
{{- with .Values.networkPolicy.monitoringFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}
