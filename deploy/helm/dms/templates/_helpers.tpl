{{/* Name of the release's objects: <release>-dms, unless the release is already called dms... */}}
{{- define "dms.fullname" -}}
{{- if contains "dms" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-dms" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dms.headless" -}}{{ include "dms.fullname" . }}-headless{{- end -}}
{{- define "dms.etcd" -}}{{ include "dms.fullname" . }}-etcd{{- end -}}

{{- define "dms.labels" -}}
app.kubernetes.io/name: dms
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dms.selectorLabels" -}}
app.kubernetes.io/name: dms
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node
{{- end -}}

{{- define "dms.etcdSelectorLabels" -}}
app.kubernetes.io/name: dms
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end -}}

{{- define "dms.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The etcd endpoints dmsd is given: the external ones, or every member of the chart's etcd. */}}
{{- define "dms.etcdEndpoints" -}}
{{- if .Values.etcd.external.endpoints -}}
{{- join "," .Values.etcd.external.endpoints -}}
{{- else -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.chart.replicas) -}}
{{- $eps = append $eps (printf "%s-%d.%s-headless.%s.svc.%s:%d" (include "dms.etcd" $) $i (include "dms.etcd" $) $.Release.Namespace $.Values.clusterDomain (int $.Values.etcd.chart.clientPort)) -}}
{{- end -}}
{{- join "," $eps -}}
{{- end -}}
{{- end -}}

{{/* A pod's stable DNS name; $(POD_NAME) is expanded by the kubelet in args. */}}
{{- define "dms.podHost" -}}
$(POD_NAME).{{ include "dms.headless" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end -}}

{{- define "dms.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}{{ include "dms.fullname" . }}-tls{{- else -}}{{ required "tls.existingSecret (or tls.certManager.enabled) is required with tls.enabled" .Values.tls.existingSecret }}{{- end -}}
{{- end -}}

{{- define "dms.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "dms.fullname" .)) -}}
{{- end -}}

{{- define "dms.clusterSecret" -}}
{{- .Values.auth.clusterSecret | default (printf "%s-cluster" (include "dms.fullname" .)) -}}
{{- end -}}

{{/* GOMEMLIMIT: 90 % of the memory limit, in bytes. */}}
{{- define "dms.gomemlimit" -}}
{{- $l := .Values.resources.limits.memory | toString -}}
{{- $n := 0.0 -}}
{{- if hasSuffix "Gi" $l -}}{{- $n = mulf (trimSuffix "Gi" $l | float64) 1073741824 -}}
{{- else if hasSuffix "Mi" $l -}}{{- $n = mulf (trimSuffix "Mi" $l | float64) 1048576 -}}
{{- else -}}{{- fail (printf "resources.limits.memory %q: give it in Mi or Gi" $l) -}}
{{- end -}}
{{- mulf $n 0.9 | int64 -}}
{{- end -}}
