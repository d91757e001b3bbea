{{/* Names and labels shared by every object of the chart. */}}

{{- define "porter-identity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "porter-identity.fullname" -}}
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

{{- define "porter-identity.selectorLabels" -}}
app.kubernetes.io/name: {{ include "porter-identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "porter-identity.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "porter-identity.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: porter-identity
{{- end -}}

{{- define "porter-identity.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "porter-identity.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "porter-identity.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The webhook's Service, and the Secret holding its serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "porter-identity.webhookService" -}}
{{- printf "%s-webhook" (include "porter-identity.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "porter-identity.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "porter-identity.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespaces whose Secrets the operator may read (the PorterRoleSet ExternalId). */}}
{{- define "porter-identity.secretNamespaces" -}}
{{- if .Values.rbac.externalIdSecretNamespaces -}}
{{- toJson .Values.rbac.externalIdSecretNamespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}
