{{/* Names, labels and derived settings shared by the templates. */}}

{{- define "ebpf-metrics.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ebpf-metrics.fullname" -}}
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

{{- define "ebpf-metrics.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ebpf-metrics.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ebpf-metrics.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ebpf-metrics.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ebpf-metrics.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ebpf-metrics.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The web configuration's Secret, and whether it turns on TLS and basic auth. */}}
{{- define "ebpf-metrics.webSecret" -}}
{{- if .Values.web.existingSecret }}{{ .Values.web.existingSecret }}
{{- else if .Values.web.config }}{{ include "ebpf-metrics.fullname" . }}-web
{{- end }}
{{- end }}

{{- define "ebpf-metrics.webTLS" -}}
{{- if or .Values.web.tls (hasKey .Values.web.config "tls_server_config") }}true{{ end }}
{{- end }}

{{- define "ebpf-metrics.webBasicAuth" -}}
{{- if or .Values.web.basicAuth (hasKey .Values.web.config "basic_auth_users") }}true{{ end }}
{{- end }}

{{- define "ebpf-metrics.scheme" -}}
{{- if include "ebpf-metrics.webTLS" . }}https{{ else }}http{{ end }}
{{- end }}

{{/* The Secret holding OTEL_EXPORTER_OTLP_HEADERS, and its key. */}}
{{- define "ebpf-metrics.otlpHeaderSecret" -}}
{{- if .Values.otlp.existingSecret }}{{ .Values.otlp.existingSecret }}
{{- else if .Values.otlp.headers }}{{ include "ebpf-metrics.fullname" . }}-otlp-headers
{{- end }}
{{- end }}

{{- define "ebpf-metrics.otlpHeaderKey" -}}
{{- if .Values.otlp.existingSecret }}{{ .Values.otlp.existingSecretKey }}{{ else }}OTEL_EXPORTER_OTLP_HEADERS{{ end }}
{{- end }}

{{/* The resources in force: resources, or those of the profile. */}}
{{- define "ebpf-metrics.resources" -}}
{{- if .Values.resources }}{{ toYaml .Values.resources }}
{{- else }}
{{- $r := get .Values.resourcesByProfile .Values.profile }}
{{- if not $r }}{{ fail (printf "profile %q: no resourcesByProfile entry (profiles: %s)" .Values.profile (keys .Values.resourcesByProfile | sortAlpha | join ", ")) }}{{ end }}
{{- toYaml $r }}
{{- end }}
{{- end }}

{{/*
Bytes of a memory quantity written in bytes or with Ki, Mi or Gi: the
forms whose value Helm can compute exactly. A number in values comes as a
float64, hence the conversion.
*/}}
{{- define "ebpf-metrics.bytes" -}}
{{- $q := . }}
{{- if kindIs "float64" $q }}{{ $q = int64 $q }}{{ end }}
{{- $q = toString $q }}
{{- if regexMatch "^[0-9]+$" $q }}{{ $q }}
{{- else if regexMatch "^[0-9]+Ki$" $q }}{{ mul (trimSuffix "Ki" $q | int64) 1024 }}
{{- else if regexMatch "^[0-9]+Mi$" $q }}{{ mul (trimSuffix "Mi" $q | int64) 1048576 }}
{{- else if regexMatch "^[0-9]+Gi$" $q }}{{ mul (trimSuffix "Gi" $q | int64) 1073741824 }}
{{- else }}{{ fail (printf "memory limit %q: write it in bytes or with Ki, Mi or Gi, so that GOMEMLIMIT can be derived from it" $q) }}
{{- end }}
{{- end }}

{{/* GOMEMLIMIT in bytes: goMemLimitPercent of the memory limit. */}}
{{- define "ebpf-metrics.goMemLimit" -}}
{{- $r := include "ebpf-metrics.resources" . | fromYaml }}
{{- $limit := dig "limits" "memory" "" $r }}
{{- if not $limit }}{{ fail "resources: set limits.memory; GOMEMLIMIT is derived from it" }}{{ end }}
{{- $bytes := include "ebpf-metrics.bytes" $limit | int64 }}
{{- div (mul $bytes (int64 .Values.goMemLimitPercent)) 100 }}
{{- end }}

{{/*
Whether the configuration needs CAP_SYS_ADMIN: syscall mode, or run-time
statistics (on in the development profile unless the file turns them off).
*/}}
{{- define "ebpf-metrics.needsSysAdmin" -}}
{{- $stats := eq .Values.profile "development" }}
{{- if hasKey .Values.config "enable_system_stats" }}{{ $stats = .Values.config.enable_system_stats }}{{ end }}
{{- if or $stats (eq (toString (dig "collection_mode" "" .Values.config)) "syscall") }}true{{ end }}
{{- end }}

{{/*
The scrape endpoint shared by the ServiceMonitor and the PodMonitor, after
its port (their values as .m, the root as .root): `instance` becomes the node's
name, stable across pod restarts, which the recording rules take as the
node; `node` says the same for queries that expect it.
*/}}
{{- define "ebpf-metrics.endpoint" -}}
path: /metrics
scheme: {{ include "ebpf-metrics.scheme" .root }}
{{- with .m.interval }}
interval: {{ . }}
{{- end }}
{{- with .m.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- with .m.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .m.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
relabelings:
  - sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: instance
  - sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: node
  {{- with .m.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .m.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
