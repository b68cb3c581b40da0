{{/* Names, labels and the checks that make contradictory values fail loudly. */}}

{{- define "ma2ml.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name; short enough for "-postgresql-headless" suffixes. */}}
{{- define "ma2ml.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "ma2ml.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "ma2ml.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ma2ml.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Common labels. app.kubernetes.io/name is always "ma2ml": the operator gives
its learner and worker pods the same label, and the database NetworkPolicy
admits exactly the pods that carry it.
*/}}
{{- define "ma2ml.labels" -}}
helm.sh/chart: {{ include "ma2ml.chart" . }}
{{ include "ma2ml.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ma2ml.selectorLabels" -}}
app.kubernetes.io/name: ma2ml
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ma2ml.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ma2ml.operatorServiceAccount" -}}
{{- printf "%s-operator" (include "ma2ml.fullname" .) -}}
{{- end -}}

{{- define "ma2ml.postgresqlName" -}}
{{- printf "%s-postgresql" (include "ma2ml.fullname" .) -}}
{{- end -}}

{{/*
Namespaces that run searches: the watched ones; for a cluster-wide operator
the release's own plus workloads.namespaces. The database Secret, the
workload ServiceAccount and the database NetworkPolicy cover exactly these.
*/}}
{{- define "ma2ml.searchNamespaces" -}}
{{- $namespaces := .Values.operator.watchNamespaces -}}
{{- if not $namespaces -}}
{{- $namespaces = prepend .Values.workloads.namespaces .Release.Namespace -}}
{{- end -}}
{{- toJson (uniq $namespaces) -}}
{{- end -}}

{{/*
Values that contradict each other. Rendered once (from operator.yaml) so
that `helm install` stops with a message naming the values to change.
*/}}
{{- define "ma2ml.validate" -}}
{{- $db := .Values.database -}}
{{- if and $db.postgresql.enabled $db.external.url -}}
{{- fail "database: set either database.postgresql.enabled or database.external.url, not both" -}}
{{- end -}}
{{- if and $db.postgresql.enabled (not $db.createSecret) -}}
{{- fail "database.postgresql.enabled needs database.createSecret=true (the chart writes the URL with the generated password)" -}}
{{- end -}}
{{- if and $db.createSecret (not $db.postgresql.enabled) (not $db.external.url) -}}
{{- fail "database: enable database.postgresql, set database.external.url, or set database.createSecret=false and create the Secret database.secretName yourself" -}}
{{- end -}}
{{- if and .Values.operator.watchNamespaces .Values.workloads.namespaces -}}
{{- fail "workloads.namespaces is for a cluster-wide operator; with operator.watchNamespaces the searches run in the watched namespaces (list them there)" -}}
{{- end -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.ha.enabled) -}}
{{- fail "operator.replicas > 1 needs operator.ha.enabled=true (kopf peering keeps one operator active)" -}}
{{- end -}}
{{- $dataClaim := printf "data-%s-0" (include "ma2ml.postgresqlName" .) -}}
{{- if and $db.postgresql.enabled (has $dataClaim .Values.policy.persistentVolumeClaims) -}}
{{- fail (printf "policy.persistentVolumeClaims: %s is the database's own volume; a search must never mount it" $dataClaim) -}}
{{- end -}}
{{- if not .Values.policy.volumeTypes -}}
{{- fail "policy.volumeTypes: list at least one volume type (e.g. emptyDir)" -}}
{{- end -}}
{{- $mon := .Values.monitoring -}}
{{- if and $mon.prometheusRule.enabled (not $mon.serviceMonitor.enabled) -}}
{{- fail "monitoring.prometheusRule.enabled needs monitoring.serviceMonitor.enabled=true (the alerts read the scraped ma2ml metrics)" -}}
{{- end -}}
{{- end -}}
