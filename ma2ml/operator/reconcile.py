"""One idempotent reconcile of a PipelineSearch, shared by every kopf handler.

validate -> register in the store (mirroring spec edits and ``suspend``) ->
read the store's counts -> decide phase and replicas -> make the children
exist with those replicas -> compute the status and the Events to post.
An edit that ``store.lifecycle.spec_edit`` refuses (a fixed field changed
under stored results) reaches neither the store nor the children: the search
goes on with its stored spec, and the status says ``InvalidSpec`` until the
edit is reverted.
Running it twice in a row changes nothing the second time; running it after
a restart picks up from the store and the existing children.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ma2ml.operator import builders, status
from ma2ml.operator.config import OperatorConfig
from ma2ml.operator.kube import Kube
from ma2ml.operator.status import Milestone  # Outcome's field `status` hides the module
from ma2ml.spec import PipelineSearch, Retention, SpecError, parse_spec, spec_to_document
from ma2ml.store import Actor, Counts, SearchRecord, SearchState, Store, reopens
from ma2ml.store.lifecycle import shown_elapsed, spec_edit

_RESOURCE_KEYS = ("apiVersion", "kind", "metadata", "spec")


class EditRefusedError(Exception):
    """An edit the store's rule refuses (``spec_edit``): ``record`` is the search as stored,
    ``message`` says which fields may not change and what to do instead."""

    def __init__(self, record: SearchRecord, message: str) -> None:
        super().__init__(message)
        self.record, self.message = record, message


@dataclass(frozen=True)
class Outcome:
    """What a handler writes back: the new status (None: unchanged) and Events."""

    phase: str
    status: dict[str, Any] | None
    events: list[Milestone] = field(default_factory=list)


def now_iso() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plain(value: Any) -> Any:
    """kopf's read-only body views -> plain dicts and lists (what pydantic validates)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def validate(body: Mapping[str, Any], config: OperatorConfig) -> PipelineSearch:
    """The search resolved against the operator's policy (``builders.resolve``), or
    ``SpecError`` with one ``field: problem`` line per problem, policy violations included."""
    search = parse_spec({k: body[k] for k in _RESOURCE_KEYS if k in body})
    try:
        return builders.resolve(search, config.workloads)
    except builders.BuildError as exc:
        raise SpecError(exc.lines) from None


def reconcile(body: Mapping[str, Any], store: Store, kube: Kube,
              config: OperatorConfig) -> Outcome:
    """Bring the children and the status in line with the spec and the store."""
    body = plain(body)
    old = body.get("status") or {}
    generation = body["metadata"].get("generation")
    try:
        search = validate(body, config)
    except SpecError as exc:
        return _invalid(body, exc.lines, kube, generation)
    refused: str | None = None
    try:
        record = register(store, search)
    except EditRefusedError as exc:
        # The search as it was: children, budget and suspend from the stored spec.
        record, refused = exc.record, exc.message
        try:
            search = validate(record.spec, config)
        except SpecError as invalid:  # the policy changed since: no longer valid either
            return _invalid(body, [refused, *invalid.lines], kube, generation)
    counts = store.counts(record.id)
    usage = store.usage(record.id)
    top = store.best_trial(record.id)
    best = None if top is None or top.reward is None else status.Best(
        number=top.number, reward=top.reward, metrics=top.metrics or {}, pipeline=top.pipeline)
    verdict = status.decide(search.spec, record.state, counts, usage, record.message)
    learner, workers = status.desired_replicas(search.spec, verdict.phase, counts)
    sync_children(kube, search, body["metadata"], learner, workers)
    used = status.TimeUsed(shown_elapsed(usage, record.created_at, record.finished_at),
                           usage.training_seconds)
    new = status.build_status(verdict, counts, best, old, generation, now_iso(),
                              invalid=refused, used=used)
    threshold = status.failure_threshold(search.spec, config.failure_warning_fraction)
    events = status.milestones(old, new, threshold)
    return Outcome(verdict.phase, None if status.same_status(old, new) else new, events)


def _invalid(body: Mapping[str, Any], lines: list[str], kube: Kube,
             generation: int | None) -> Outcome:
    # No children are created for an invalid spec; ones left from an earlier
    # valid spec are scaled to zero, as for any Failed search.
    meta = body["metadata"]
    for component in (builders.LEARNER, builders.WORKER):
        name = builders.child_name(meta["name"], component)
        existing = kube.get("Deployment", meta.get("namespace", "default"), name)
        if existing is not None:
            kube.scale(existing, 0)
    old = body.get("status") or {}
    verdict = status.invalid_verdict(lines)
    new = status.build_status(verdict, Counts(), None, old, generation, now_iso(),
                              invalid=verdict.message)
    events = status.milestones(old, new, failure_threshold=1)
    return Outcome(verdict.phase, None if status.same_status(old, new) else new, events)


def register(store: Store, search: PipelineSearch) -> SearchRecord:
    """Create the store's search (or find it) and mirror spec edits and ``suspend`` into it.

    The operator is the controller of ``store.lifecycle``: it moves only the
    edges running <-> suspended and finished -> running (maxTrials or a time limit raised).
    An edit of a field fixed at creation (``spec_edit``) replaces a search without
    results, and is refused (``EditRefusedError``, nothing written) for one with results.
    """
    document = spec_to_document(search)
    record = store.create_search(search.key, document)
    if record.spec != document:
        stored = record.search.spec
        edit = spec_edit(stored, search.spec, store.counts(record.id))
        if edit.refused:
            raise EditRefusedError(record, _refusal(edit.fields, edit.results))
        if edit.starts_over:
            # Its pending trials were drawn for the old spec; the learner, finding its
            # search deleted, exits and its pod restarts on the new one.
            store.delete_search(search.key)
            record = store.create_search(search.key, document)
        else:
            record = store.update_search_spec(search.key, document)
        if reopens(record.state, search.spec.budget, store.counts(record.id),
                   store.usage(record.id)):
            record = store.move_search(record.id, SearchState.running, by=Actor.controller)
    # The learner reads 'suspended' and stops proposing; finished/failed stay as they are.
    if search.spec.suspend and record.state == SearchState.running:
        record = store.move_search(record.id, SearchState.suspended, by=Actor.controller)
    elif not search.spec.suspend and record.state == SearchState.suspended:
        record = store.move_search(record.id, SearchState.running, by=Actor.controller)
    return record


def _refusal(fields: str, results: int) -> str:
    return (f"{fields} may not change once a search has trial results ({results} here): "
            f"the search goes on with its stored spec. Revert the edit, or apply the new "
            f"spec as a new PipelineSearch (another metadata.name)")


def sync_children(kube: Kube, search: PipelineSearch, owner_meta: Mapping[str, Any],
                  learner: int, workers: int) -> None:
    """Create missing children, roll changed templates, set replicas."""
    owner = builders.owner_reference(owner_meta)
    configmap = builders.build_spec_configmap(search, owner=owner)
    current, created = kube.ensure(configmap)
    if not created and current.get("data") != configmap["data"]:
        kube.patch("ConfigMap", search.metadata.namespace, current["metadata"]["name"],
                   {"data": configmap["data"]})
    for desired in (
        builders.build_learner_deployment(search, learner, owner=owner),
        builders.build_worker_deployment(search, workers, owner=owner),
    ):
        current, created = kube.ensure(desired)
        if not created:
            _update_deployment(kube, current, desired)


def _update_deployment(kube: Kube, current: dict[str, Any], desired: dict[str, Any]) -> None:
    meta = current["metadata"]
    wanted_hash = desired["metadata"]["annotations"][builders.TEMPLATE_HASH]
    if (meta.get("annotations") or {}).get(builders.TEMPLATE_HASH) != wanted_hash:
        # The API server defaults fields inside the template, so compare our own
        # hash of what we built, and replace the template wholesale (JSON patch):
        # a strategic merge would keep env entries or volumes the spec dropped.
        annotation = "/metadata/annotations/" + builders.TEMPLATE_HASH.replace("/", "~1")
        kube.patch("Deployment", meta["namespace"], meta["name"], [
            {"op": "add", "path": "/metadata/annotations", "value": meta.get("annotations") or {}},
            {"op": "add", "path": annotation, "value": wanted_hash},
            {"op": "replace", "path": "/spec/template", "value": desired["spec"]["template"]},
        ])
    kube.scale(current, desired["spec"]["replicas"])


def finalize(body: Mapping[str, Any], store: Store) -> bool:
    """On deletion: delete the store's rows when ``retention: delete``; True if deleted."""
    body = plain(body)
    meta = body["metadata"]
    key = f"{meta.get('namespace', 'default')}/{meta['name']}"
    retention = (body.get("spec") or {}).get("retention", Retention.keep)
    if retention != Retention.delete:
        return False
    return store.delete_search(key)
