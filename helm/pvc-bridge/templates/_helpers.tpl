{{/* Names, labels and the rendered configuration of the pvc-bridge chart. */}}

{{- define "pvc-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pvc-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pvc-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pvc-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pvc-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pvc-bridge.labels" -}}
helm.sh/chart: {{ include "pvc-bridge.chart" . }}
{{ include "pvc-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pvc
{{- end }}

{{/* The serving pods (not the migrate Job). */}}
{{- define "pvc-bridge.serverSelectorLabels" -}}
{{ include "pvc-bridge.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "pvc-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pvc-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pvc-bridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Where things are inside the pod. */}}
{{- define "pvc-bridge.paths" -}}
config: /etc/pvc-bridge/config
configFile: /etc/pvc-bridge/config/bridge.toml
secrets: /etc/pvc-bridge/secrets
tls: /etc/pvc-bridge/tls
spool: /var/lib/pvc-bridge/spool
audit: /var/lib/pvc-bridge/audit
auditRepo: /var/lib/pvc-bridge/audit/audit.git
tmp: /tmp
{{- end }}

{{/* Whether a `secrets.<name>` entry is given (value or existing Secret). */}}
{{- define "pvc-bridge.secretSet" -}}
{{- if or .value .existingSecret }}true{{ end }}
{{- end }}

{{/* Name of the Secret holding a `secrets.<name>` entry. */}}
{{- define "pvc-bridge.secretName" -}}
{{- $entry := index .root.Values.secrets .name }}
{{- if $entry.existingSecret }}{{ $entry.existingSecret }}{{ else }}{{ include "pvc-bridge.fullname" .root }}{{ end }}
{{- end }}

{{- define "pvc-bridge.tlsSecretName" -}}
{{- if .Values.tls.existingSecret }}{{ .Values.tls.existingSecret }}{{ else }}{{ include "pvc-bridge.fullname" . }}-tls{{ end }}
{{- end }}

{{/*
Refuses values that would put a credential into the ConfigMap, or that
contradict what the chart sets.
*/}}
{{- define "pvc-bridge.validate" -}}
{{- $c := .Values.config | default dict }}
{{- $db := get $c "database" | default dict }}
{{- if or (hasKey $db "primary") (hasKey $db "replicas") }}
{{- fail "config.database.primary/replicas: database URLs carry credentials; set secrets.databasePrimary / secrets.databaseReplicas instead" }}
{{- end }}
{{- $fm := get $c "foreman" | default dict }}
{{- if or (hasKey $fm "password") (hasKey $fm "password_file") }}
{{- fail "config.foreman.password: set secrets.foremanPassword instead (the chart mounts it as foreman.password_file)" }}
{{- end }}
{{- if or (hasKey $fm "ssl_cert") (hasKey $fm "ssl_key") }}
{{- fail "config.foreman.ssl_cert/ssl_key: set tls.foremanClientCert instead (the key must come from a Secret)" }}
{{- end }}
{{- $enc := get $c "enc" | default dict }}
{{- if hasKey $enc "root_pass" }}
{{- fail "config.enc.root_pass: set secrets.encRootPass instead" }}
{{- end }}
{{- $sch := get $c "scheduler" | default dict }}
{{- if hasKey $sch "status_key_file" }}
{{- fail "config.scheduler.status_key_file: set tls.statusApiClientCert instead (the key must come from a Secret)" }}
{{- end }}
{{- range $key := list "listen" "plain_http" "tls" }}
{{- if hasKey $c $key }}
{{- fail (printf "config.%s: set by the chart (containerPort, listenAddress, tls.*)" $key) }}
{{- end }}
{{- end }}
{{- $acc := get $c "access" | default dict }}
{{- if or (hasKey $acc "admin_token_file") (hasKey $acc "server_token_file") }}
{{- fail "config.access.*_token_file: set secrets.adminToken / secrets.serverToken instead" }}
{{- end }}
{{- $wr := get $c "writes" | default dict }}
{{- if or (hasKey $wr "spool_dir") (hasKey $wr "spool_max_bytes") }}
{{- fail "config.writes.spool_dir/spool_max_bytes: set by the chart (spool.*)" }}
{{- end }}
{{- $au := get $c "audit" | default dict }}
{{- if hasKey $au "repo" }}
{{- fail "config.audit.repo: set by the chart (audit.enabled)" }}
{{- end }}
{{- if not (include "pvc-bridge.secretSet" .Values.secrets.databasePrimary) }}
{{- fail "secrets.databasePrimary: required (value, or existingSecret + key)" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (or (not .Values.tls.cert) (not .Values.tls.key)) }}
{{- fail "tls.enabled: give tls.existingSecret, or tls.cert and tls.key" }}
{{- end }}
{{- if and (or .Values.tls.foremanClientCert .Values.tls.statusApiClientCert) (not .Values.tls.enabled) }}
{{- fail "tls.foremanClientCert/statusApiClientCert: need tls.enabled" }}
{{- end }}
{{- if lt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount: at least 1" }}
{{- end }}
{{- end }}

{{/*
The configuration the chart sets itself, merged over .Values.config.
*/}}
{{- define "pvc-bridge.config" -}}
{{- $p := include "pvc-bridge.paths" . | fromYaml }}
{{- $c := deepCopy (.Values.config | default dict) }}
{{- $listenHost := .Values.listenAddress }}
{{- if contains ":" $listenHost }}{{ $listenHost = printf "[%s]" $listenHost }}{{ end }}
{{- $_ := set $c "listen" (printf "%s:%d" $listenHost (int .Values.containerPort)) }}
{{- $writes := get $c "writes" | default dict }}
{{- $_ := set $writes "spool_dir" $p.spool }}
{{- $_ := set $writes "spool_max_bytes" (int64 .Values.spool.maxBytes) }}
{{- $_ := set $c "writes" $writes }}
{{- if .Values.audit.enabled }}
{{- $audit := get $c "audit" | default dict }}
{{- $_ := set $audit "repo" $p.auditRepo }}
{{- $_ := set $c "audit" $audit }}
{{- end }}
{{- if include "pvc-bridge.secretSet" .Values.secrets.foremanPassword }}
{{- $fm := get $c "foreman" | default dict }}
{{- $_ := set $fm "password_file" (printf "%s/foreman-password" $p.secrets) }}
{{- $_ := set $c "foreman" $fm }}
{{- end }}
{{- $access := get $c "access" | default dict }}
{{- if include "pvc-bridge.secretSet" .Values.secrets.adminToken }}
{{- $_ := set $access "admin_token_file" (printf "%s/admin-token" $p.secrets) }}
{{- end }}
{{- if include "pvc-bridge.secretSet" .Values.secrets.serverToken }}
{{- $_ := set $access "server_token_file" (printf "%s/server-token" $p.secrets) }}
{{- end }}
{{- if $access }}{{ $_ := set $c "access" $access }}{{ end }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $p.tls) "key_file" (printf "%s/tls.key" $p.tls) }}
{{- if .Values.tls.clientCAKey }}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" $p.tls) }}
{{- /* kubelet's HTTPS probes present no client certificate: the handshake
must admit them; access control still answers 401 to anonymous callers on
everything but /healthz, /readyz and /metrics. */}}
{{- $_ := set $tls "require_client_cert" false }}
{{- end }}
{{- if .Values.tls.crlKey }}
{{- $_ := set $tls "client_crl_files" (list (printf "%s/crl.pem" $p.tls)) }}
{{- end }}
{{- with .Values.tls.crlUrl }}
{{- $_ := set $tls "client_crl_url" . }}
{{- end }}
{{- $_ := set $c "tls" $tls }}
{{- if .Values.tls.foremanClientCert }}
{{- $fm := get $c "foreman" | default dict }}
{{- $_ := set $fm "ssl_cert" (printf "%s/tls.crt" $p.tls) }}
{{- $_ := set $fm "ssl_key" (printf "%s/tls.key" $p.tls) }}
{{- if .Values.tls.clientCAKey }}{{ $_ := set $fm "ssl_ca" (printf "%s/ca.crt" $p.tls) }}{{ end }}
{{- $_ := set $c "foreman" $fm }}
{{- end }}
{{- if .Values.tls.statusApiClientCert }}
{{- $sch := get $c "scheduler" | default dict }}
{{- $_ := set $sch "status_cert_file" (printf "%s/tls.crt" $p.tls) }}
{{- $_ := set $sch "status_key_file" (printf "%s/tls.key" $p.tls) }}
{{- if .Values.tls.clientCAKey }}{{ $_ := set $sch "status_ca_file" (printf "%s/ca.crt" $p.tls) }}{{ end }}
{{- $_ := set $c "scheduler" $sch }}
{{- end }}
{{- else }}
{{- $_ := set $c "plain_http" true }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/*
The migrate Job's configuration: only what `pvc-bridge migrate` reads (the
change feed's owner role, logging, connection settings), so the Job needs
no file but the primary's URL.
*/}}
{{- define "pvc-bridge.migrateConfig" -}}
{{- $c := .Values.config | default dict }}
{{- $m := dict }}
{{- with get $c "log" }}{{ $_ := set $m "log" . }}{{ end }}
{{- $ch := get $c "changes" | default dict }}
{{- if hasKey $ch "owner_role" }}{{ $_ := set $m "changes" (dict "owner_role" $ch.owner_role) }}{{ end }}
{{- $db := get $c "database" | default dict }}
{{- if hasKey $db "connect_timeout_secs" }}{{ $_ := set $m "database" (dict "connect_timeout_secs" $db.connect_timeout_secs) }}{{ end }}
{{- toYaml $m }}
{{- end }}

{{/* A TOML key: bare when it can be, else quoted. */}}
{{- define "pvc-bridge.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* Whether a value is a non-empty list of tables. */}}
{{- define "pvc-bridge.tomlIsTableList" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) (kindIs "map" (first .)) }}true{{ end }}
{{- end }}

{{/*
A map as TOML: its plain keys first (values as JSON, which TOML reads for
strings, numbers, booleans and arrays), then its tables and arrays of
tables. Null values are left out (the bridge's default applies).
Called with (dict "path" "<dotted.path.>" "table" <map>).
*/}}
{{- define "pvc-bridge.toml" -}}
{{- $path := .path }}
{{- $table := .table }}
{{- range $k, $v := $table }}
{{- if and (not (kindIs "invalid" $v)) (not (kindIs "map" $v)) (not (include "pvc-bridge.tomlIsTableList" $v)) }}
{{ include "pvc-bridge.tomlKey" $k }} = {{ if kindIs "float64" $v }}{{ if eq $v (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}{{ else }}{{ toJson $v }}{{ end }}
{{- end }}
{{- end }}
{{- range $k, $v := $table }}
{{- if and (kindIs "map" $v) $v }}
{{- $name := printf "%s%s" $path (include "pvc-bridge.tomlKey" $k) }}

[{{ $name }}]
{{- include "pvc-bridge.toml" (dict "path" (printf "%s." $name) "table" $v) }}
{{- else if include "pvc-bridge.tomlIsTableList" $v }}
{{- $name := printf "%s%s" $path (include "pvc-bridge.tomlKey" $k) }}
{{- range $item := $v }}

[[{{ $name }}]]
{{- include "pvc-bridge.toml" (dict "path" (printf "%s." $name) "table" $item) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
