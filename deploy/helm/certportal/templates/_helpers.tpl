{{- define "certportal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certportal.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "certportal.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "certportal.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "certportal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certportal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "certportal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "certportal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: certportal
{{- end -}}

{{- define "certportal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "certportal.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "certportal.secretName" -}}
{{- default (include "certportal.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "certportal.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Several replicas share nothing but the database: SQLite cannot do. */}}
{{- define "certportal.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.config.db) -}}
{{- fail "config.db: several replicas need PostgreSQL (postgres://…); SQLite lives in one pod" -}}
{{- end -}}
{{- /* Behind the Ingress every connection comes from the controller: without
       its address in trustedProxies the portal sees one client, so the
       per-address login limit shuts the login for everyone after a few
       wrong passwords from anyone, and the trail records the controller's
       address for every user. */ -}}
{{- if and .Values.ingress.enabled (not .Values.config.trustedProxies) -}}
{{- fail "config.trustedProxies: set the ingress controller's pod CIDR (or addresses); without it every user shares one login limit and the trail records the controller's address" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.secrets.existingSecret) (not .Values.secrets.sessionKey) -}}
{{- fail "secrets.sessionKey (or secrets.existingSecret): every replica must share one session key" -}}
{{- end -}}
{{- end -}}
