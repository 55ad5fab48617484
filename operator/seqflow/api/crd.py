"""CustomResourceDefinitions generated from the pydantic models.

Pydantic emits JSON Schema 2020-12; Kubernetes wants a structural OpenAPI v3.0 schema. This module
inlines references, turns `X | None` into plain `X`, maps free-form objects to
`x-kubernetes-preserve-unknown-fields`, drops what the API server does not accept, and wraps the
result in CRDs with printer columns and the status subresource.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from seqflow.api.models import (
    GROUP,
    VERSION,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowScheduleSpec,
    WorkflowScheduleStatus,
    WorkflowSpec,
    WorkflowStatus,
)

_KEPT_KEYS = {
    "type",
    "format",
    "description",
    "properties",
    "required",
    "items",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
}


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node and node.get("x-kubernetes-int-or-string"):  # no type: either one, and the
        kept = {k: v for k, v in node.items() if k in _KEPT_KEYS}  # checks of each (a pattern
        for option in node["anyOf"]:  # applies to a string only, a minimum to a number only)
            kept |= {k: v for k, v in option.items() if k in _KEPT_KEYS and k != "type"}
        return kept
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _structural({**options[0], **rest}, defs)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _structural(value, defs)  # a map: the schema of each value
        elif key in _KEPT_KEYS:
            out[key] = value
    if out.get("format") == "date-time":
        out["type"] = "string"
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3.0 schema of a model, as its fields appear on the wire."""
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    return _structural(schema, schema.get("$defs", {}))


def _crd(
    *,
    kind: str,
    plural: str,
    short_name: str,
    spec_schema: dict[str, Any],
    status_schema: dict[str, Any] | None,
    columns: list[dict[str, Any]],
    scope: str = "Namespaced",
) -> dict[str, Any]:
    properties: dict[str, Any] = {"spec": spec_schema}
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "additionalPrinterColumns": columns,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "required": ["spec"],
                "properties": properties,
            }
        },
    }
    if status_schema is not None:
        properties["status"] = status_schema
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": ["seqflow"],
            },
            "versions": [version],
        },
    }


def _column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def custom_resource_definitions() -> list[dict[str, Any]]:
    """The Workflow, ClusterWorkflow, WorkflowRun and WorkflowSchedule CRDs, in the order they
    should be applied."""
    ready = [
        _column("Ready", ".status.conditions[?(@.type=='Ready')].status"),
        _column("Reason", ".status.conditions[?(@.type=='Ready')].reason"),
    ]
    described = [
        _column("Description", ".spec.description"),
        _column("Age", ".metadata.creationTimestamp", "date"),
        _column("Message", ".status.conditions[?(@.type=='Ready')].message", priority=1),
    ]
    workflow = _crd(
        kind="Workflow",
        plural="workflows",
        short_name="swf",
        spec_schema=openapi_schema(WorkflowSpec),
        status_schema=openapi_schema(WorkflowStatus),
        columns=[*ready, _column("Revision", ".status.revision", "integer"), *described],
    )
    cluster_workflow = _crd(
        kind="ClusterWorkflow",
        plural="clusterworkflows",
        short_name="cswf",
        spec_schema=openapi_schema(WorkflowSpec),
        status_schema=openapi_schema(WorkflowStatus),
        columns=[*ready, *described],
        scope="Cluster",
    )
    run = _crd(
        kind="WorkflowRun",
        plural="workflowruns",
        short_name="swfr",
        spec_schema=openapi_schema(WorkflowRunSpec),
        status_schema=openapi_schema(WorkflowRunStatus),
        columns=[
            _column("Workflow", ".spec.workflowRef.name"),
            _column("Phase", ".status.phase"),
            _column("Task", ".status.current[*]"),
            _column("Progress", ".status.progress"),
            _column("Retries", ".status.retries", "integer"),
            _column("Reason", ".status.conditions[?(@.type=='Succeeded')].reason"),
            _column("Age", ".metadata.creationTimestamp", "date"),
            _column("Revision", ".status.workflowGeneration", "integer", priority=1),
            _column("Message", ".status.conditions[?(@.type=='Succeeded')].message", priority=1),
        ],
    )
    schedule = _crd(
        kind="WorkflowSchedule",
        plural="workflowschedules",
        short_name="swfs",
        spec_schema=openapi_schema(WorkflowScheduleSpec),
        status_schema=openapi_schema(WorkflowScheduleStatus),
        columns=[
            _column("Schedule", ".spec.schedule"),
            _column("Timezone", ".spec.timeZone"),
            _column("Suspend", ".spec.suspend", "boolean"),
            _column("Active", ".status.active[*]"),
            _column("Last Schedule", ".status.lastScheduleTime", "date"),
            # A time to come as itself: the API server shows a `date` more than a second ahead
            # as "<invalid>" (its tables print ages only).
            _column("Next", ".status.nextScheduleTime"),
            _column("Age", ".metadata.creationTimestamp", "date"),
            _column("Workflow", ".spec.runTemplate.workflowRef.name", priority=1),
            _column("Reason", ".status.conditions[?(@.type=='Ready')].reason", priority=1),
        ],
    )
    return [workflow, cluster_workflow, run, schedule]
