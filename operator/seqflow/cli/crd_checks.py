"""The API server's checks of a seqflow object at its creation, offline: unknown fields as strict
field validation reports them, the generated CRDs' structural schemas (translated for
`jsonschema`), their CEL rules (`x-kubernetes-validations`, with the `cel` library the engine
uses), and the object's name; each problem in the API server's words, at the field it names.
`seqflow lint` (seqflow.cli.lint) reports them."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import cel
from jsonschema import Draft4Validator, FormatChecker
from jsonschema import ValidationError as SchemaError

from seqflow.api.crd import custom_resource_definitions
from seqflow.api.models import GROUP, VERSION

API_VERSION = f"{GROUP}/{VERSION}"
ROOT_FIELDS = {"apiVersion", "kind", "metadata"}  # the API server's own, beside the CRD's schema
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$")
TRANSITION_RULE = re.compile(r"\boldSelf\b")  # a rule comparing with the stored object: not offline
MISSING_FUNCTION = "Undefined variable or function"  # the CEL library's error for an unknown name
# Schema errors after which the API server does not evaluate the CEL rules (its hasBlockingErr).
BLOCKING_KEYWORDS = {"type", "format", "required", "enum", "maxLength", "maxItems", "maxProperties"}
NOT_CHECKED_RULES = (
    "some validation rules were not checked because the object was invalid; correct the existing "
    "errors to complete validation"
)


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One problem with a manifest, at the field it is about."""

    path: str  # the field, as the API server names it: "spec.tasks[0].job"
    message: str
    warning: bool = False  # reported, but the manifest is not wrong for it


@functools.cache
def schemas_by_kind() -> dict[str, dict[str, Any]]:
    """The structural schema of each seqflow kind, from the generated CRDs."""
    return {
        crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for crd in custom_resource_definitions()
    }


def api_server_problems(body: dict[str, Any]) -> list[Problem]:
    """What the API server refuses a seqflow object for, at its creation."""
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if api_version != API_VERSION or kind not in schemas_by_kind():
        return [Problem(path="kind", message=f'no matches for kind "{kind}" in version "{api_version}"')]
    schema = schemas_by_kind()[kind]
    unknown: list[str] = []
    spec_and_status = {key: value for key, value in body.items() if key not in ROOT_FIELDS}
    pruned_body = pruned(spec_and_status, schema, path="", unknown=unknown)
    problems = [Problem(path=path, message=f'unknown field "{path}"') for path in unknown]
    problems += metadata_problems(body.get("metadata"))
    found, blocking = structural_problems(pruned_body, schema)
    problems += found
    if blocking:
        return [
            *problems,
            Problem(path="<nil>", message=f"Invalid value: null: {NOT_CHECKED_RULES}", warning=True),
        ]
    return problems + rule_problems(pruned_body, schema, path="")


def metadata_problems(metadata: object) -> list[Problem]:
    """The object's name, as the API server checks a custom resource's."""
    if not isinstance(metadata, dict):
        return [Problem(path="metadata.name", message="Required value: name or generateName is required")]
    name = metadata.get("name")
    if name is None:
        if metadata.get("generateName"):
            return []
        return [Problem(path="metadata.name", message="Required value: name or generateName is required")]
    if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        detail = "must be no more than 253 characters" if len(str(name)) > 253 else DNS_SUBDOMAIN_MESSAGE
        return [Problem(path="metadata.name", message=f"Invalid value: {go_value(name)}: {detail}")]
    return []


def pruned(value: Any, schema: Mapping[str, Any], *, path: str, unknown: list[str]) -> Any:
    """`value` as the API server keeps it: without the fields its schema does not know (their
    paths added to `unknown`) and without nulls where the schema is not nullable."""
    if isinstance(value, list) and "items" in schema:
        return [
            pruned(item, schema["items"], path=f"{path}[{index}]", unknown=unknown)
            for index, item in enumerate(value)
        ]
    if not isinstance(value, dict) or (
        schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema
    ):
        return value
    kept = {}
    for key, item in value.items():
        item_path = f"{path}.{key}" if path else key
        item_schema = field_schema(schema, key)
        if item_schema is None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            unknown.append(item_path)
        elif item_schema is None:
            kept[key] = item
        elif item is not None or item_schema.get("nullable"):
            kept[key] = pruned(item, item_schema, path=item_path, unknown=unknown)
    return kept


def field_schema(schema: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """The schema of an object's field `key` (a property, or a map's value), or None."""
    if key in schema.get("properties", {}):
        field: Mapping[str, Any] = schema["properties"][key]
        return field
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, dict) else None


def structural_problems(value: Any, schema: Mapping[str, Any]) -> tuple[list[Problem], bool]:
    """The schema's problems with `value`, in the API server's words, and whether any of them
    stops the API server from evaluating the CEL rules."""
    errors = sorted(schema_validator(json.dumps(schema)).iter_errors(value), key=lambda e: e.json_path)
    problems = [problem for error in errors for problem in api_problems(error)]
    return problems, any(error.validator in BLOCKING_KEYWORDS for error in errors)


@functools.lru_cache(maxsize=8)
def schema_validator(structural_json: str) -> Draft4Validator:
    """A draft 4 validator (OpenAPI v3.0's `exclusiveMinimum` is a boolean, as in draft 4) of the
    structural schema, with the formats the API server checks."""
    formats = FormatChecker(formats=())
    formats.checks("date-time", raises=ValueError)(is_date_time)
    return Draft4Validator(json_schema(json.loads(structural_json)), format_checker=formats)


def is_date_time(value: object) -> bool:
    """Whether a string is a date and time as kube-openapi's `date-time` reads them (RFC 3339 and
    its ISO 8601 relatives: seconds, fraction and offset optional, `T` or a space between)."""
    if not isinstance(value, str):
        return True
    return DATE_TIME.match(value) is not None and bool(date.fromisoformat(value[:10]))


def json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """A structural schema as JSON Schema, its extensions read as the API server reads them: an
    int-or-string is an integer or a string, nullable admits null, preserve-unknown-fields keeps
    any field (unknown fields are found apart, by `pruned`)."""
    out = {
        key: value
        for key, value in node.items()
        if key not in {"properties", "items", "additionalProperties"}
    }
    out.pop("x-kubernetes-validations", None)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
    if "properties" in node:
        out["properties"] = {key: json_schema(field) for key, field in node["properties"].items()}
    if "items" in node:
        out["items"] = json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = json_schema(node["additionalProperties"])
    return out


def api_problems(error: SchemaError) -> list[Problem]:
    """A `jsonschema` error as the API server words it (kube-openapi's messages, as
    apiextensions-apiserver turns them into field errors)."""
    path = schema_path(error.absolute_path)
    limit: Any = error.validator_value
    if error.validator == "required":
        missing = [name for name in limit if isinstance(error.instance, dict) and name not in error.instance]
        return [
            Problem(path=f"{path}.{name}" if path else name, message="Required value") for name in missing
        ]
    return [Problem(path=path or "<nil>", message=api_message(error, path=path))]


def api_message(error: SchemaError, *, path: str) -> str:
    keyword = str(error.validator)
    limit: Any = error.validator_value
    value: Any = error.instance
    plural = "s" if limit != 1 else ""
    if keyword == "type":
        found, wanted = type_name(value), limit if isinstance(limit, str) else ",".join(limit)
        return f'Invalid value: "{found}": {path} in body must be of type {wanted}: "{found}"'
    if keyword == "enum":
        supported = ", ".join(json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in limit)
        return f"Unsupported value: {go_value(value)}: supported values: {supported}"
    if keyword == "maxLength":
        return f"Too long: may not be more than {limit} byte{plural}"
    if keyword in {"maxItems", "maxProperties"}:
        return f"Too many: {len(value)}: must have at most {limit} item{plural}"
    shown = len(value) if keyword == "minItems" else go_value(value)
    return f"Invalid value: {shown}: {path} in body {in_body_detail(error)}"


def in_body_detail(error: SchemaError) -> str:
    """What kube-openapi says of a value after "PATH in body"."""
    keyword = str(error.validator)
    limit: Any = error.validator_value
    schema: Any = error.schema
    bounds = {"minimum": "greater than", "maximum": "less than"}
    if keyword in bounds:
        inclusive = "" if schema.get(f"exclusive{keyword.capitalize()}") is True else "or equal to "
        return f"should be {bounds[keyword]} {inclusive}{go_number(limit)}"
    details = {
        "minItems": f"should have at least {limit} items",
        "minLength": f"should be at least {limit} chars long",
        "pattern": f"should match '{limit}'",
        "format": f"must be of type {limit}: {go_value(error.instance)}",
    }
    return details.get(keyword, error.message)


def rule_problems(value: Any, schema: Mapping[str, Any], *, path: str) -> list[Problem]:
    """The CEL rules (`x-kubernetes-validations`) `value` and its fields break, each evaluated
    with `self` the value of the node that holds it, as the API server does."""
    problems = [
        problem
        for rule in schema.get("x-kubernetes-validations", [])
        if (problem := rule_problem(rule, value, schema=schema, path=path)) is not None
    ]
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += rule_problems(item, schema["items"], path=f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in schema.get("properties", {}):
                problems += rule_problems(
                    item, schema["properties"][key], path=f"{path}.{key}" if path else key
                )
            elif (item_schema := field_schema(schema, key)) is not None:
                problems += rule_problems(item, item_schema, path=f"{path}[{key}]")
    return problems


def rule_problem(
    rule: Mapping[str, str], value: Any, *, schema: Mapping[str, Any], path: str
) -> Problem | None:
    """Whether `value` breaks one CEL rule; a rule that cannot be evaluated here is reported as
    not checked (a warning), a transition rule (one reading `oldSelf`) is left out."""
    text = rule["rule"]
    if TRANSITION_RULE.search(text):
        return None
    place, invalid = path or "<nil>", f"Invalid value: {json.dumps(schema.get('type', ''))}"
    try:
        program = compiled_rule(text)
    except ValueError as error:  # a rule this CEL library cannot parse
        return not_checked(text, error, path=place)
    try:
        holds = program.execute({"self": value})
    except KeyError as error:
        return Problem(path=place, message=f"{invalid}: no such key: {error.args[0]} evaluating rule: {text}")
    except RuntimeError as error:
        if MISSING_FUNCTION in str(error):  # a Kubernetes extension function this library lacks
            return not_checked(text, error, path=place)
        return Problem(path=place, message=f"{invalid}: {first_line(error)} evaluating rule: {text}")
    except (LookupError, ArithmeticError, TypeError, ValueError) as error:
        return Problem(path=place, message=f"{invalid}: {first_line(error)} evaluating rule: {text}")
    if holds is True:
        return None
    if holds is not False:
        return Problem(path=place, message=f"{invalid}: rule did not evaluate to a bool: {text}")
    return Problem(path=place, message=f"{invalid}: {rule.get('message') or f'failed rule: {text}'}")


def not_checked(rule: str, error: Exception, *, path: str) -> Problem:
    return Problem(path=path, message=f"rule not checked offline: {rule}: {first_line(error)}", warning=True)


@functools.lru_cache(maxsize=256)
def compiled_rule(rule: str) -> Any:
    return cel.compile(rule)


def first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def schema_path(parts: Iterable[str | int]) -> str:
    """A place in the object as kube-openapi names it: fields (and map keys) after dots,
    list indexes in brackets."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def type_name(value: object) -> str:
    """The JSON type of a value, as kube-openapi names it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    names = {str: "string", list: "array", dict: "object"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), "null")


def go_value(value: object) -> str:
    """A value as the API server prints it in a field error (Go's %v, %q or JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def go_number(number: float) -> str:
    """A number as Go's %v prints a float64 (200, 0.5, 1e+21)."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    return str(number)
