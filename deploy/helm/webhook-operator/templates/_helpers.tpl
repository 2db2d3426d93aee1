{{/*
Names and labels. The full name is the release name (prefixed with the chart name unless the
release name already contains it), so two releases never share a cluster-scoped name
(ClusterRoles, ClusterRoleBindings). `helm install webhook-operator ...` gives the names of
deploy/base.
*/}}
{{- define "webhook-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "webhook-operator.fullname" -}}
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

{{- define "webhook-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release (a Deployment's selector is immutable). */}}
{{- define "webhook-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "webhook-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "webhook-operator.labels" -}}
helm.sh/chart: {{ include "webhook-operator.chart" . }}
{{ include "webhook-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: webhook-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "webhook-operator.serviceAccountName" -}}
{{- include "webhook-operator.fullname" . }}
{{- end }}

{{/* The operator's metrics Service, also the Prometheus job name of its scrape target. */}}
{{- define "webhook-operator.metricsService" -}}
{{- printf "%s-metrics" (include "webhook-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
