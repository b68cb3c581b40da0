"""A Kubernetes API for the operator tests: kmock's emulator, served over real HTTP.

kmock 0.8's ``KubernetesEmulator`` stores objects, serves CRUD, list and watch,
and honours finalizers. It leaves out what an API server's storage and
controllers add; ``ApiServerEmulator`` adds back exactly what the operator
tests rely on, and nothing else:

* metadata stamping: ``uid``, ``creationTimestamp`` and ``generation`` on
  create, and a ``name`` from ``generateName`` (kopf's Events use it); a fresh
  ``resourceVersion`` on every write; ``generation`` + 1 when the spec changes
  (``status.observedGeneration`` is checked against it);
* the JSON-patch ``test`` operation failing with HTTP 422, as kopf expects
  for its optimistic-concurrency patches (kmock answers 500);
* the status subresource split: a patch of ``.../status`` changes only
  ``status``, a patch of the object changes everything but ``status``;
* owner-reference garbage collection (foreground, immediate): an object whose
  every owner is gone is deleted, as the kube-controller-manager would.

Label-selector filtering is not added: the operator finds its children by
name. ``EmulatorThread`` runs the emulator in its own event loop so that the
tests (and the operator subprocess) talk to it like to any API server.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import importlib.resources
import threading
import uuid
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import dicts, enums, k8s, rendering

CRD_RESOURCE = "ma2ml.io/v1alpha1/pipelinesearches"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus metadata stamping, 422 on patch conflicts, status split and GC."""

    _version: int = attrs.field(default=0, init=False)
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        writes = (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE)
        if request.resource is None or request.action not in writes:
            return await super()._handle(request)
        # One write at a time: the stamps are computed from the current object.
        async with self._write_lock:
            if request.action == enums.action.CREATE:
                self._stamp_create(request)
            elif request.action == enums.action.UPDATE:
                self._stamp_update(request)
            response = await super()._handle(request)
            await self._collect_garbage()
            return response

    def _stamp_create(self, request: rendering.Request) -> None:
        meta = request.data.setdefault("metadata", {})
        meta.setdefault("namespace", request.namespace)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1,
                    resourceVersion=self._next_version())

    def _stamp_update(self, request: rendering.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return  # kmock answers 404
        current = dict(self.objects[key].raw)
        patch = self._split_status(request.subresource == "status", request.data)
        try:
            after = dicts.patch_dict(current, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise k8s.KubernetesError(status=422, reason="Invalid", message=str(exc)) from None
        meta = {"resourceVersion": self._next_version()}
        if after.get("spec") != current.get("spec"):
            meta["generation"] = current["metadata"].get("generation", 1) + 1
        if isinstance(patch, list):
            patch = [*patch, *({"op": "add", "path": f"/metadata/{name}", "value": value}
                               for name, value in meta.items())]
        else:
            patch = {**patch, "metadata": {**patch.get("metadata", {}), **meta}}
        object.__setattr__(request, "data", patch)

    @staticmethod
    def _split_status(status_only: bool, patch: Any) -> Any:
        def touches_status(path: str) -> bool:
            return path == "/status" or path.startswith("/status/")

        if isinstance(patch, list):
            return [op for op in patch
                    if op["op"] == "test" or touches_status(op["path"]) == status_only]
        if status_only:
            return {"status": patch["status"]} if "status" in patch else {}
        return {k: v for k, v in patch.items() if k != "status"}

    async def _collect_garbage(self) -> None:
        while True:
            async with self._lock:
                live = {o.raw["metadata"].get("uid") for _, o in self.objects.items()
                        if not o.deleted}
                orphans = [(key, o) for key, o in self.objects.items() if not o.deleted
                           and (owners := o.raw["metadata"].get("ownerReferences"))
                           and all(ref["uid"] not in live for ref in owners)]
                for (resource, _, _), obj in orphans:
                    raw = obj.raw
                    obj.delete()
                    await self._buses[resource].put({"type": "DELETED", "object": raw})
            if not orphans:
                return


def make_emulator() -> ApiServerEmulator:
    """The emulator with the built-in kinds and the PipelineSearch custom resource."""
    emulator = ApiServerEmulator()
    # = resources.load_bundled(), minus its deprecated importlib.resources.read_binary call
    # (warnings are errors in this suite).
    bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
    emulator.resources.load_data(gzip.decompress(bundled.read_bytes()))
    emulator.resources[CRD_RESOURCE] = kmock.ResourceInfo(
        kind="PipelineSearch", singular="pipelinesearch", namespaced=True,
        shortnames={"psearch"}, subresources={"status"},
        verbs={"create", "delete", "get", "list", "patch", "update", "watch"})
    return emulator


class EmulatorThread(threading.Thread):
    """Serves an ``ApiServerEmulator`` on 127.0.0.1 from a thread with its own event loop."""

    def __init__(self) -> None:
        super().__init__(name="kube-emulator", daemon=True)
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        async with make_emulator() as emulator, kmock.Server(emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopping.wait()

    def start_and_wait(self, timeout: float = 10) -> str:
        self.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the Kubernetes emulator did not start")
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout=10)
