{{/* Chart name (app.kubernetes.io/name): the chart's name, or nameOverride. */}}
{{- define "ghat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Name of the release's objects: fullnameOverride; else the release name when it already holds
the chart's name; else "<release>-<name>". A release named "ghat" gives "ghat".
*/}}
{{- define "ghat.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "ghat.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Helm's global values (an empty dict when the chart is installed on its own). */}}
{{- define "ghat.global" -}}
{{- toYaml (.Values.global | default dict) -}}
{{- end -}}

{{/* Name of the Lease the replicas elect a leader with; the Role grants get/update on it alone. */}}
{{- define "ghat.leaseName" -}}
{{- printf "%s-leader" (include "ghat.fullname" .) -}}
{{- end -}}

{{/*
Labels of every object: the standard ones, then (for CRDs) the labels the generator gives,
then commonLabels and global.commonLabels. Earlier ones win on a clash.
Called with (list $ctx $extraLabels).
*/}}
{{- define "ghat.labelsWith" -}}
{{- $ctx := index . 0 -}}
{{- $global := fromYaml (include "ghat.global" $ctx) -}}
{{- $labels := dict
  "app.kubernetes.io/name" (include "ghat.name" $ctx)
  "app.kubernetes.io/instance" $ctx.Release.Name
  "app.kubernetes.io/version" ($ctx.Chart.AppVersion | toString)
  "app.kubernetes.io/managed-by" $ctx.Release.Service
  "helm.sh/chart" (printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-")
-}}
{{- $labels = merge $labels (index . 1) (deepCopy ($ctx.Values.commonLabels | default dict)) (deepCopy ($global.commonLabels | default dict)) -}}
{{- toYaml $labels -}}
{{- end -}}

{{- define "ghat.labels" -}}
{{- include "ghat.labelsWith" (list . dict) -}}
{{- end -}}

{{- define "ghat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ghat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ghat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "ghat.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/*
Image reference: [registry/]repository[:tag][@digest]. registry falls back to
global.imageRegistry; tag to the chart's appVersion unless a digest alone is given.
*/}}
{{- define "ghat.image" -}}
{{- $global := fromYaml (include "ghat.global" .) -}}
{{- $registry := .Values.image.registry | default $global.imageRegistry -}}
{{- $ref := .Values.image.repository -}}
{{- if $registry -}}{{- $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref -}}{{- end -}}
{{- if .Values.image.tag -}}
{{- $ref = printf "%s:%s" $ref .Values.image.tag -}}
{{- else if not .Values.image.digest -}}
{{- $ref = printf "%s:%s" $ref .Chart.AppVersion -}}
{{- end -}}
{{- if .Values.image.digest -}}{{- $ref = printf "%s@%s" $ref .Values.image.digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* imagePullSecrets, then global.imagePullSecrets (names or {name: ...} objects), without repeats. */}}
{{- define "ghat.imagePullSecrets" -}}
{{- $global := fromYaml (include "ghat.global" .) -}}
{{- $out := list -}}
{{- range concat (.Values.imagePullSecrets | default list) ($global.imagePullSecrets | default list) -}}
{{- $s := . -}}
{{- if kindIs "string" . -}}{{- $s = dict "name" . -}}{{- end -}}
{{- if not (has $s $out) -}}{{- $out = append $out $s -}}{{- end -}}
{{- end -}}
{{- if $out -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}

{{/*
Namespaces that get a Role in scoped mode (watchNamespaces set): each watched namespace,
with every namespaced right; and the release namespace (ClusterGitHubApp key Secrets).
*/}}
{{- define "ghat.scoped" -}}
{{- if .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}
