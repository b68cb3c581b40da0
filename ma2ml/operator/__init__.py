"""The kopf operator: reconciles PipelineSearch resources (DESIGN.md sections 2 and 5).

``builders`` turns a validated search into Kubernetes objects (pure), ``status``
turns store counts into the resource's status (pure), ``kube`` is the only
module that talks to the Kubernetes API, ``reconcile`` ties them together,
``handlers`` registers it with kopf, ``config`` reads the ``MA2ML_*`` settings
and ``main`` runs it all (``ma2ml operator``).
The operator keeps no search state in memory: the store and the Kubernetes
objects are the truth, so a restart is a non-event.
"""
