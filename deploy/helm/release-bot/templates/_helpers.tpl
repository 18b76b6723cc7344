{{/* Names, labels and the shared RBAC rules of the release-bot chart. */}}

{{- define "release-bot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "release-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The common labels; helm.sh/chart and managed-by are the only ones kustomize lacks. */}}
{{- define "release-bot.labels" -}}
{{ include "release-bot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: release-bot
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "release-bot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "release-bot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The apps file, as the text that goes into the ConfigMap. */}}
{{- define "release-bot.appsFile" -}}
{{- if not (kindIs "string" .Values.config.apps) -}}
{{- fail "config.apps must be the apps file as text (a YAML block string, or --set-file config.apps=apps.yaml)" -}}
{{- end -}}
{{- .Values.config.apps -}}
{{- end -}}

{{/*
The apps ConfigMap's name: <fullname>-apps-<hash>, the hash computed exactly like kustomize's
configMapGenerator does (sigs.k8s.io/kustomize/api/hasher): sha256 of the JSON
{"data":...,"kind":"ConfigMap","name":""}, its first 10 hex digits with 0 1 3 a e turned into
g h k m t. So helm and kustomize name the same content the same. ("name" is "" because
kustomize's lookup of "metadata/name" finds nothing: its hash covers only the data.)
*/}}
{{- define "release-bot.configMapName" -}}
{{- $name := printf "%s-apps" (include "release-bot.fullname" .) -}}
{{- $data := dict "apps.yaml" (include "release-bot.appsFile" .) -}}
{{- $hash := dict "data" $data "kind" "ConfigMap" "name" "" | toJson | sha256sum | trunc 10 -}}
{{- $hash = $hash | replace "0" "g" | replace "1" "h" | replace "3" "k" | replace "a" "m" | replace "e" "t" -}}
{{- printf "%s-%s" $name $hash -}}
{{- end -}}

{{/* REDIS_SENTINELS: "host:port,host:port" from {host, port} entries or "host:port" strings. */}}
{{- define "release-bot.redisSentinels" -}}
{{- $hosts := list -}}
{{- range .Values.redis.sentinel.hosts -}}
{{- if kindIs "string" . -}}
{{- $hosts = append $hosts . -}}
{{- else -}}
{{- $hosts = append $hosts (printf "%s:%v" (required "redis.sentinel.hosts[].host is required" .host) (default 26379 .port)) -}}
{{- end -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{/* What the bot does in the cluster; the same rules as deploy/rbac.yaml and deploy/kustomize. */}}
{{- define "release-bot.rbacRules" -}}
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "update", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods", "resourcequotas", "limitranges"]
  verbs: ["list"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "create", "delete"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "update"]
- apiGroups: ["networking.istio.io"]
  resources: ["destinationrules"]
  verbs: ["get", "create", "update"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "update"]
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["argoproj.io"]
  resources: ["rollouts/status"]
  verbs: ["patch"]
- apiGroups: ["argoproj.io"]
  resources: ["analysisruns"]
  verbs: ["list"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
{{- end -}}
