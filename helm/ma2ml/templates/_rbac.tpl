{{/*
The operator's rules in a namespace it serves: exactly what its code calls
(ma2ml/operator/kube.py: API_GRANTS, ADMISSION_GRANTS) and what kopf calls
(ma2ml/operator/handlers.py: KOPF_GRANTS). tests/deploy/test_rbac.py checks
that these rules equal those tables, and the tables equal the calls. Nothing
lists or watches children, nothing deletes (the garbage collector removes
children through their ownerReferences), and no Secret is ever read: pods
reference the database Secret by name.
*/}}
{{- define "ma2ml.operatorRules" -}}
{{ include "ma2ml.searchRules" . }}
{{ include "ma2ml.childRules" . }}
{{- end -}}

{{/*
What the operator does to PipelineSearches and Events, wherever a search is:
kube.py SEARCH_GRANTS, ADMISSION_GRANTS and handlers.KOPF_GRANTS.
*/}}
{{- define "ma2ml.searchRules" -}}
# kopf watches searches and patches their finalizer and progress annotations;
# the operator re-reads a search just before writing its status.
- apiGroups: [ma2ml.io]
  resources: [pipelinesearches]
  verbs: [get, list, watch, patch]
# The status, written with a JSON patch that tests the resourceVersion.
- apiGroups: [ma2ml.io]
  resources: [pipelinesearches/status]
  verbs: [patch]
# Children carry ownerReferences with blockOwnerDeletion; clusters enforcing
# OwnerReferencesPermissionEnforcement require this to create them.
- apiGroups: [ma2ml.io]
  resources: [pipelinesearches/finalizers]
  verbs: [update]
# kopf posts core/v1 Events (milestones, handler errors).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/*
The children: kube.py CHILD_GRANTS. Only in the namespaces where searches run
(RBAC cannot narrow create to objects with the operator's labels).
*/}}
{{- define "ma2ml.childRules" -}}
# Learner and worker Deployments: found by name, created, rolled and scaled.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch]
# The NAME-spec ConfigMap of each search.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
{{- end -}}
