{{/*
Name of the chart, overridable.
*/}}
{{- define "phoenix-guardian.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name, at most 63 characters (a DNS label).
*/}}
{{- define "phoenix-guardian.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "phoenix-guardian.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels on every object of the release.
*/}}
{{- define "phoenix-guardian.labels" -}}
helm.sh/chart: {{ include "phoenix-guardian.chart" . }}
app.kubernetes.io/name: {{ include "phoenix-guardian.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: phoenix-guardian
{{- end -}}

{{/*
Selector labels shared by all components; a component label is added next to them.
*/}}
{{- define "phoenix-guardian.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phoenix-guardian.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Namespace the operator writes its generated Secrets to (OPERATOR_NAMESPACE); the data planes
run there because they read those Secrets.
*/}}
{{- define "phoenix-guardian.secretNamespace" -}}
{{- default .Release.Namespace .Values.operator.secretNamespace -}}
{{- end -}}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "phoenix-guardian.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "phoenix-guardian.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Name of the data plane's ServiceAccount.
*/}}
{{- define "phoenix-guardian.dataplane.serviceAccountName" -}}
{{- if .Values.dataplane.serviceAccount.create -}}
{{- default (printf "%s-dataplane" (include "phoenix-guardian.fullname" .)) .Values.dataplane.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.dataplane.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Operator image reference.
*/}}
{{- define "phoenix-guardian.operator.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{/*
Data plane image reference.
*/}}
{{- define "phoenix-guardian.dataplane.image" -}}
{{- printf "%s:%s" .Values.dataplane.image.repository (default .Chart.AppVersion .Values.dataplane.image.tag) -}}
{{- end -}}

{{/*
Name of one region's data plane Deployment and Service. Call with (dict "root" $ "region" .).
*/}}
{{- define "phoenix-guardian.dataplane.name" -}}
{{- printf "%s-dataplane-%s" (include "phoenix-guardian.fullname" .root) .region.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
