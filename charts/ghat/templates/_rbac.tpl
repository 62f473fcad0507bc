{{/*
Rules on namespaced objects: in the ClusterRole when every namespace is watched, in a Role in
each watched namespace otherwise (scoped mode). Each names the call that needs it
(docs/security.md).
*/}}
{{- define "ghat.namespacedRules" -}}
# Finalizers: ghat.dev/revoke-token on tokens, ghat.dev/in-use on the GitHubApps they use
# (added by server-side apply, removed by JSON patch; src/kube/kube.ts setFinalizer).
- apiGroups: [ghat.dev]
  resources: [githubapptokens, githubapps]
  verbs: [patch]
# Status by server-side apply on /status (applyTokenStatus).
- apiGroups: [ghat.dev]
  resources: [githubapptokens/status]
  verbs: [patch]
# GitHubApp status (the App status writer: get, then patch or update on /status).
- apiGroups: [ghat.dev]
  resources: [githubapps/status]
  verbs: [get, patch, update]
# Owner references with blockOwnerDeletion on the Secrets ghat writes
# (needed where the OwnerReferencesPermissionEnforcement admission plugin is on).
- apiGroups: [ghat.dev]
  resources: [githubapptokens/finalizers]
  verbs: [update]
# Managed Secrets (label-selected informer) and private-key Secrets (one field-selected
# watch each): list/watch; get to detect a foreign Secret before the first write;
# create/patch for server-side apply; delete on GitHubAppToken deletion or format change.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# Warning/Normal events on Ready transitions.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.workloads.enabled }}
# Opt-in (workloads.enabled): list workloads to find those reading a token Secret
# through environment variables, and patch the pod-template annotation of the
# workloads a GitHubAppToken lists in spec.rollout (src/kube/workloads.ts).
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [list, patch]
{{- end }}
{{- end -}}
