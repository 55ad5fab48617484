"""Templates: `{{ CEL }}` inside the strings of a Job or http step (image, command, args, env
values; url, header values, body), rendered purely from the variables its `when` would see.

An expression runs to the first `}}` after its `{{` (write a CEL map literal with a space before
its closing braces). A string's value is put in as it is; any other value as JSON (`true`, `3`,
`{"a":1}`), so `"{{ input }}"` is the whole input as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from seqflow.api.models import HttpSpec, JobTemplate, PinnedMember, PinnedTask
from seqflow.engine.expressions import ConditionError, evaluated

TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def expressions(text: str) -> Iterator[str]:
    """The expressions of the templates in `text`, in order."""
    for found in TEMPLATE.finditer(text):
        yield found.group(1).strip()


def render(text: str, variables: dict[str, Any], *, field: str) -> str:
    """`text` with each template replaced by its value (ConditionError naming `field` and the
    expression when one cannot be evaluated)."""
    if "{{" not in text:
        return text

    def value(found: re.Match[str]) -> str:
        expression = found.group(1).strip()
        if not expression:
            raise ConditionError(f"{field} {text!r} has an empty template {{{{ }}}}")
        return _text(evaluated(expression, variables, field=field))

    return TEMPLATE.sub(value, text)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def templated(job: JobTemplate | None, http: HttpSpec | None) -> Iterator[tuple[str, str]]:
    """The strings of a step that may hold templates, by their field (`job args[1]`)."""
    if job is not None:
        if job.image is not None:
            yield "job image", job.image
        yield from ((f"job command[{i}]", text) for i, text in enumerate(job.command or []))
        yield from ((f"job args[{i}]", text) for i, text in enumerate(job.args or []))
        yield from ((f"job env {var.name}", var.value) for var in job.env or [])
    if http is not None:
        yield "http url", http.url
        yield from ((f"http header {h.name}", h.value) for h in http.headers or [] if h.value is not None)
        if http.body is not None:
            yield "http body", http.body


def has_templates(step: PinnedTask | PinnedMember) -> bool:
    return any("{{" in text for _, text in templated(step.job, step.http))


def rendered(step: PinnedTask | PinnedMember, variables: dict[str, Any]) -> PinnedTask | PinnedMember:
    """`step` with the templates of its Job or request rendered."""

    def text(value: str, field: str) -> str:
        return render(value, variables, field=field)

    def texts(values: list[str] | None, field: str) -> list[str] | None:
        return None if values is None else [text(v, f"{field}[{i}]") for i, v in enumerate(values)]

    update: dict[str, object] = {}
    if (job := step.job) is not None:
        update["job"] = job.model_copy(
            update={  # (in field order: the first that fails is named)
                "image": job.image and text(job.image, "job image"),
                "command": texts(job.command, "job command"),
                "args": texts(job.args, "job args"),
                "env": job.env
                and [e.model_copy(update={"value": text(e.value, f"job env {e.name}")}) for e in job.env],
            }
        )
    if (http := step.http) is not None:
        headers = [
            h.model_copy(update={"value": h.value and text(h.value, f"http header {h.name}")})
            for h in http.headers or []
        ]
        update["http"] = http.model_copy(
            update={
                "url": text(http.url, "http url"),
                "headers": headers if http.headers is not None else None,
                "body": http.body and text(http.body, "http body"),
            }
        )
    return step.model_copy(update=update)
