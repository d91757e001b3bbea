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

{{/*
Refusals the schema cannot express: the same rules the operator applies at start (porter_identity/config.py), so a
release that the operator would refuse fails `helm template` / `helm install` instead of crash-looping.
*/}}
{{- define "porter-identity.validate" -}}
{{- with .Values.leaderElection -}}
{{- if ge (int .renewDeadlineSeconds) (int .leaseDurationSeconds) -}}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%v) must be less than leaderElection.leaseDurationSeconds (%v): a standby could take the Lease while the old leader still writes" .renewDeadlineSeconds .leaseDurationSeconds) -}}
{{- end -}}
{{- if ge (int .retryPeriodSeconds) (int .renewDeadlineSeconds) -}}
{{- fail (printf "leaderElection.retryPeriodSeconds (%v) must be less than leaderElection.renewDeadlineSeconds (%v): the leader would give up before its first retry" .retryPeriodSeconds .renewDeadlineSeconds) -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicas) 1) -}}
{{- fail (printf "replicas is %v but leaderElection.enabled is false: every replica would reconcile the same objects; set leaderElection.enabled=true or replicas=1" .Values.replicas) -}}
{{- end -}}
{{- $selector := .Values.config.shardSelector | default "" -}}
{{- if trim $selector -}}
{{- /* reconcile/shard.py's grammar: key=value, key==value, key!=value, key, !key, key in (a,b), key notin (a,b). */ -}}
{{- $key := `(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?` -}}
{{- $value := `(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?` -}}
{{- $set := printf `\s*%s\s+(?:in|notin)\s+\([^)]*\)\s*` $key -}}
{{- $equality := printf `\s*%s\s*(?:==|=|!=)\s*%s\s*` $key $value -}}
{{- $exists := printf `\s*!?\s*%s\s*` $key -}}
{{- $requirement := printf `(?:%s|%s|%s)` $set $equality $exists -}}
{{- if not (regexMatch (printf `^%s(?:,%s)*$` $requirement $requirement) $selector) -}}
{{- fail (printf "config.shardSelector %q is not a label selector (e.g. porter.run/shard=a, porter.run/shard in (a,b), !porter.run/shard)" $selector) -}}
{{- end -}}
{{- end -}}
{{- end -}}
