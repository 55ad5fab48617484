{{/* Names and labels. */}}

{{- define "seqflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, a prefix for every object; at most 63 characters (DNS label). */}}
{{- define "seqflow.fullname" -}}
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

{{- define "seqflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "seqflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "seqflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "seqflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator's pods (and the Service and ServiceMonitor that select them), not the migration's. */}}
{{- define "seqflow.operatorSelectorLabels" -}}
{{ include "seqflow.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "seqflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "seqflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "seqflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Values that only make sense together; rendered by the Deployment so every rendering checks them. */}}
{{- define "seqflow.validate" -}}
{{- if and (not .Values.rbac.clusterWide) (not .Values.watchNamespaces) }}
{{- fail "rbac.clusterWide=false needs watchNamespaces: the namespaces to create Roles in and to serve" }}
{{- end }}
{{- if and .Values.rbac.clusterWide .Values.watchNamespaces }}
{{- fail "watchNamespaces needs rbac.clusterWide=false (the chart creates a Role in each); leave it empty to serve all namespaces" }}
{{- end }}
{{- if and .Values.peering.enabled (not .Values.peering.name) }}
{{- fail "peering.name is required when peering.enabled=true" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "seqflow.peering" .)) (not (gt (int .Values.buckets) 0)) }}
{{- fail "replicaCount > 1 needs buckets > 0 (active-active) or peering.enabled=true (one active): never several standalone replicas" }}
{{- end }}
{{- if and (gt (int .Values.buckets) 0) (not (include "seqflow.externalDatabase" .)) }}
{{- fail "buckets > 0: the replicas share one history store; set database.url or database.existingSecret" }}
{{- end }}
{{- end }}

{{/* "true" when the replicas use Kopf peering (one active): peering enabled and no buckets. */}}
{{- define "seqflow.peering" -}}
{{- if and .Values.peering.enabled (not (gt (int .Values.buckets) 0)) }}true{{ end }}
{{- end }}

{{/* History store. */}}

{{/* "true" when an external database is configured (existingSecret or url), else empty. */}}
{{- define "seqflow.externalDatabase" -}}
{{- if or .Values.database.existingSecret .Values.database.url }}true{{ end }}
{{- end }}

{{/* "true" when the chart stores database.url in a Secret of its own, else empty. */}}
{{- define "seqflow.databaseSecret" -}}
{{- if and .Values.database.url (not .Values.database.existingSecret) }}true{{ end }}
{{- end }}

{{/* The Secret the operator reads SEQFLOW_DATABASE_URL from. */}}
{{- define "seqflow.databaseSecretName" -}}
{{- default (printf "%s-database" (include "seqflow.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/*
The Secret the migration hook reads the URL from. A pre-install hook runs before the release's
own Secret exists, and a pre-upgrade hook before it is updated, so with database.url the hook
gets a copy of its own, made just before it and removed after it.
*/}}
{{- define "seqflow.migrationSecretName" -}}
{{- default (printf "%s-database-migration" (include "seqflow.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/* "true" when the hook Job migrates the schema (then the operator does not), else empty. */}}
{{- define "seqflow.migrationHook" -}}
{{- if and .Values.migration.enabled (include "seqflow.externalDatabase" .) }}true{{ end }}
{{- end }}

{{/* Permissions, shared by the ClusterRole and the per-namespace Roles. */}}

{{/* What the operator does in the namespaces it serves. */}}
{{- define "seqflow.namespacedRules" -}}
- apiGroups: [seqflow.io]
  resources: [workflows]
  verbs: [get, list, watch]
# The Workflow's Ready condition: whether its runs can run.
- apiGroups: [seqflow.io]
  resources: [workflows/status]
  verbs: [patch]
# A Workflow's revisions: each spec it had, kept as a ControllerRevision it owns; old ones pruned.
- apiGroups: [apps]
  resources: [controllerrevisions]
  verbs: [get, list, create, delete]
# Schedules start runs (create on workflowruns, below) and keep their status.
- apiGroups: [seqflow.io]
  resources: [workflowschedules]
  verbs: [get, list, watch]
- apiGroups: [seqflow.io]
  resources: [workflowschedules/status]
  verbs: [patch]
# create: the child runs of sub-workflow steps; patch: the run's finalizer, held until its
# history is written, and a child run's suspend and cancel; delete: a finished run whose time to
# live (ttlSecondsAfterFinished) is over.
- apiGroups: [seqflow.io]
  resources: [workflowruns]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [seqflow.io]
  resources: [workflowruns/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Job tasks, one Job per attempt; their pods' termination messages carry the outputs.
# delete: the Job of an attempt stopped by a cancel; patch: naming an output sent over HTTP.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, get, list, watch, delete, patch]
{{- if eq .Values.jobStepsAs "ManagedJob" }}
# jobStepsAs=ManagedJob: the operator runs its Jobs (spec.managedBy): it creates their pods and
# writes their status.
- apiGroups: [batch]
  resources: [jobs/status]
  verbs: [patch]
{{- end }}
- apiGroups: [""]
  resources: [pods]
  {{- if eq .Values.jobStepsAs "Pod" }}
  # jobStepsAs=Pod: a step's pod is created (and deleted on a cancel) by the operator itself.
  verbs: [create, get, list, watch, delete, patch]
  {{- else if eq .Values.jobStepsAs "ManagedJob" }}
  verbs: [create, get, list, watch]
  {{- else }}
  verbs: [list, watch]
  {{- end }}
# The container logs of Job and Pod steps, kept with their attempts once they end.
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# Runs' inputs read from a ConfigMap key (spec.inputFrom.configMapKeyRef).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
{{- if or .Values.webhooks.enabled .Values.inputsFromSecrets .Values.httpSteps.headersFromSecrets }}
# The shared secrets of signed webhooks (spec.webhook.secretRef), runs' inputs read from a Secret
# key (spec.inputFrom.secretKeyRef), http steps' headers from Secrets (secretKeyRef).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
{{- end }}

{{/* What the operator needs cluster-wide in every mode. */}}
{{- define "seqflow.clusterRules" -}}
# Kopf discovers the resources it watches, and the namespaces matching its namespace patterns.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
# The history API authenticates its callers' tokens and asks whether they may read the runs.
- apiGroups: [authentication.k8s.io]
  resources: [tokenreviews]
  verbs: [create]
- apiGroups: [authorization.k8s.io]
  resources: [subjectaccessreviews]
  verbs: [create]
# ClusterWorkflows: read, and their Ready condition written (their runs are in the namespaces).
- apiGroups: [seqflow.io]
  resources: [clusterworkflows]
  verbs: [get, list, watch]
- apiGroups: [seqflow.io]
  resources: [clusterworkflows/status]
  verbs: [patch]
{{- end }}

{{/*
Kopf peering: it watches the peering objects (list and watch cannot be limited by name) and
writes its keep-alives into the status of the one named peering.name.
*/}}
{{- define "seqflow.peeringRules" -}}
{{- $resource := ternary "clusterkopfpeerings" "kopfpeerings" .Values.rbac.clusterWide -}}
# Kopf peering: watch the peering objects, keep-alives in the status of ours.
- apiGroups: [kopf.dev]
  resources: [{{ $resource }}]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ $resource }}]
  resourceNames: [{{ .Values.peering.name | quote }}]
  verbs: [get, patch]
{{- end }}

{{/*
The history store's URL, from a Secret or the embedded SQLite file.
Called with (dict "root" $ "secretName" NAME).
*/}}
{{- define "seqflow.databaseEnv" -}}
- name: SEQFLOW_DATABASE_URL
{{- if include "seqflow.externalDatabase" .root }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ required "database.secretKey is required" .root.Values.database.secretKey }}
{{- else }}
  value: "sqlite:////var/lib/seqflow/history.sqlite"
{{- end }}
{{- end }}
