"""The committed CRDs are exactly what the models generate (run `make crds` after changing them)."""

from __future__ import annotations

from pathlib import Path

import yaml

from seqflow.api.crd import custom_resource_definitions, openapi_schema
from seqflow.api.models import WorkflowRunSpec

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_models():
    generated = {crd["metadata"]["name"]: crd for crd in custom_resource_definitions()}
    committed = {p.stem: yaml.safe_load(p.read_text()) for p in CRDS.glob("*.yaml")}
    assert committed.keys() == generated.keys()
    for name, crd in generated.items():
        assert committed[name] == crd, f"crds/{name}.yaml is stale: run `make crds`"


def test_schema_is_structural():
    schema = openapi_schema(WorkflowRunSpec)
    text = yaml.safe_dump(schema)
    for foreign in ("$ref", "anyOf", "title", "default", "additionalProperties: true"):
        assert foreign not in text
    assert schema["properties"]["signals"]["additionalProperties"] == {  # each payload an object
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert schema["properties"]["input"] == {
        "description": "Input of the first task: a JSON object (larger than the operator's "
        "SEQFLOW_MAX_VALUE_BYTES, 16 MiB unless set, fails the run with reason InputTooLarge).",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert schema["required"] == ["workflowRef"]


def test_printer_columns():
    run = custom_resource_definitions()[2]
    columns = [c["name"] for c in run["spec"]["versions"][0]["additionalPrinterColumns"]]
    wide = [c["name"] for c in run["spec"]["versions"][0]["additionalPrinterColumns"] if c.get("priority")]
    assert columns == [
        "Workflow",
        "Phase",
        "Task",
        "Progress",
        "Retries",
        "Reason",
        "Age",
        "Revision",
        "Message",
    ]
    assert wide == ["Revision", "Message"]  # `kubectl get -o wide` adds them
