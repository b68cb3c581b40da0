{{/*
What the operator does in a namespace it serves: reconcile PipelineSearches
and their children (learner Deployment, worker Deployment or Job, spec
ConfigMap), post Events, and read worker pods for status messages.
*/}}
{{- define "ma2ml.operatorRules" -}}
# The custom resource, its status, and finalizers (added by patch).
- apiGroups: [ma2ml.io]
  resources: [pipelinesearches, pipelinesearches/status]
  verbs: [get, list, watch, patch, update]
# Children carry ownerReferences with blockOwnerDeletion (kopf.adopt); clusters
# enforcing OwnerReferencesPermissionEnforcement require this to create them.
- apiGroups: [ma2ml.io]
  resources: [pipelinesearches/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
# kopf posts core/v1 Events; events.k8s.io is the same object under its new API.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
{{- end -}}
