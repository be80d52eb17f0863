{{/* Names and labels, as `helm create` lays them out. */}}
{{- define "aimsguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aimsguard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "aimsguard.labels" -}}
{{ include "aimsguard.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* More than one replica can run at some point: the records store must then be shared. */}}
{{- define "aimsguard.isFleet" -}}
{{- if or (gt (int .Values.replicaCount) 1) (and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) 1)) -}}true{{- end -}}
{{- end -}}

{{- define "aimsguard.policyConfigMap" -}}
{{- .Values.policy.existingConfigMap | default (printf "%s-policy" (include "aimsguard.fullname" .)) -}}
{{- end -}}

{{- define "aimsguard.policyPath" -}}
{{- if or .Values.policy.existingConfigMap .Values.policy.content -}}
/etc/aimsguard-policy/aimsguard.yaml
{{- else -}}
/etc/aimsguard/aimsguard.yaml
{{- end -}}
{{- end -}}
