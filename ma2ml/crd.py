"""The CustomResourceDefinition, generated from the pydantic models in ``spec``.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3
schema: no ``$ref``, no ``anyOf`` of types, ``nullable`` instead of a null
type, a ``type`` on every node (or ``x-kubernetes-preserve-unknown-fields``
for free-form objects such as tolerations and volumes).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from ma2ml.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    PipelineSearchSpec,
    PipelineSearchStatus,
)

# OpenAPI v3 in a CRD has no ``propertyNames``: map keys are checked by pydantic only.
_DROP = {"title", "default", "$defs", "additionalProperties", "discriminator", "propertyNames"}
_FREE = {"x-kubernetes-preserve-unknown-fields": True}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one resolved JSON-Schema node into a structural OpenAPI node."""
    node = dict(node)
    description = node.get("description")
    options = node.pop("anyOf", None)
    if options is not None:
        node = _without_union(node, options)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    _exclusive_bounds(node)
    if node.get("type") == "object":
        if "properties" in node:
            node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
        elif isinstance(node.get("additionalProperties"), dict):
            node["additionalProperties"] = _structural(node["additionalProperties"])
            return _clean(node, description, keep_additional=True)
        else:
            node.update(_FREE)
    if node.get("type") == "array":
        node["items"] = _structural(node.get("items", {}))
    if not node.get("type") and not node.get("x-kubernetes-preserve-unknown-fields"):
        node.update(_FREE)  # Any: free-form
    return _clean(node, description)


def _without_union(node: dict[str, Any], options: list[dict[str, Any]]) -> dict[str, Any]:
    """``node`` (its ``anyOf`` taken out) with the union's ``options`` in structural form:
    the one type that is not null, int-or-string, or else free-form; nullable when null
    was one of them."""
    non_null = [o for o in options if o.get("type") != "null"]
    nullable = len(non_null) < len(options)
    types = sorted(o.get("type", "") for o in non_null)
    if len(non_null) == 1:
        node = {**non_null[0], **node}
    elif types == ["integer", "string"]:
        node = {**node, "x-kubernetes-int-or-string": True}
    else:  # a union of scalar types: let the API server keep any of them
        node = {**node, **_FREE}
    if nullable:
        node["nullable"] = True
    return node


def _exclusive_bounds(node: dict[str, Any]) -> None:
    """JSON Schema 2020 bounds are numbers; OpenAPI 3.0 wants a flag beside
    minimum/maximum. Rewrites ``node`` in place."""
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(node.get(flag), int | float) and not isinstance(node[flag], bool):
            node[bound], node[flag] = node[flag], True


def _clean(node: dict[str, Any], description: str | None, keep_additional: bool = False
           ) -> dict[str, Any]:
    drop = _DROP - ({"additionalProperties"} if keep_additional else set())
    out = {k: v for k, v in node.items() if k not in drop}
    if description:
        out["description"] = description
    if out.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" in out:
        del out["additionalProperties"]
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {}))
    return _structural(resolved)


def build_crd() -> dict[str, Any]:
    """The CRD ``pipelinesearches.ma2ml.io`` as a dict."""
    spec_schema = openapi_schema(PipelineSearchSpec)
    status_schema = openapi_schema(PipelineSearchStatus)
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Trials", "type": "integer", "jsonPath": ".status.trials.completed",
         "description": "Finished trials with a result"},
        {"name": "Best", "type": "number", "jsonPath": ".status.best.reward",
         "description": "Best reward so far"},
        {"name": "Running", "type": "integer", "jsonPath": ".status.trials.running"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL, "singular": "pipelinesearch", "kind": KIND,
                "listKind": f"{KIND}List", "shortNames": ["psearch"], "categories": ["ma2ml"],
            },
            "versions": [{
                "name": API_VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A joint search of augmentation, architecture and "
                                   "training recipe with MA2ML.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                        "status": status_schema,
                    },
                }},
            }],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `ma2ml crd` from ma2ml/spec.py; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
