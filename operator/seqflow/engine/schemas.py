"""A Workflow's `inputSchema` and `outputSchema`: JSON Schemas (draft 2020-12 unless they say
otherwise) that the input and the output of each of its runs must satisfy, checked purely with
`jsonschema`."""

from __future__ import annotations

import functools
import json
from typing import Any

from jsonschema import SchemaError, validators

from seqflow.api.models import JsonObject

MAX_REPORTED = 3  # problems named in a run's condition


def schema_problem(schema: JsonObject, *, field: str) -> str | None:
    """Why `schema` (the Workflow's `field`) is not a usable JSON Schema, or None."""
    try:
        _validator(json.dumps(schema, sort_keys=True))
    except SchemaError as error:
        return f"{field} is not a valid JSON Schema: {error.message}"
    return None


def value_problems(schema: JsonObject, value: JsonObject, *, what: str) -> str | None:
    """What in `value` (the run's input or output) does not match `schema` (the first few
    problems, by place), or None."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return None
    shown = "; ".join(f"{error.json_path}: {error.message}" for error in errors[:MAX_REPORTED])
    more = f" (and {len(errors) - MAX_REPORTED} more)" if len(errors) > MAX_REPORTED else ""
    return f"The {what} does not match the Workflow's {what}Schema: {shown}{more}"


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    kind = validators.validator_for(schema)
    kind.check_schema(schema)
    return kind(schema)
