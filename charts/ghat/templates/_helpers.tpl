{{- define "ghat.name" -}}ghat{{- end -}}
{{- define "ghat.fullname" -}}
{{- if contains "ghat" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-ghat" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- define "ghat.labels" -}}
app.kubernetes.io/name: ghat
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "ghat.selectorLabels" -}}
app.kubernetes.io/name: ghat
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "ghat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "ghat.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}
