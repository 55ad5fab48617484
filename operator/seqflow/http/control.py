"""The HTTP API that acts: start runs, list Workflows, and run control, on the operator's server.

    POST /api/v1/namespaces/{ns}/workflows/{name}/runs      the body is the input; 201 + Location
         (Idempotency-Key: K gives the run a name made from K: the same request again answers
         200 with the same run instead of starting a second one; ?dryRun=true only checks the
         input against the Workflow's inputSchema; an input that does not match is refused, 422)
    GET  /api/v1/workflows, /api/v1/namespaces/{ns}/workflows       with their steps
    GET  /api/v1/schedules, /api/v1/namespaces/{ns}/schedules       with their next run times
    POST /api/v1/namespaces/{ns}/runs/{name}/suspend | resume | cancel | retry | rerun
    POST /api/v1/namespaces/{ns}/runs/{name}/retry-from   body {step, input | patch}; 201 + Location
    POST /api/v1/namespaces/{ns}/runs/{name}/signals/{signal}   the body is the payload
    GET  /api/v1/openapi.json

Every call is checked like the history API (TokenReview, then a SubjectAccessReview for the verb
it performs: create workflowruns, list workflows, patch workflowruns), then done by the
operator, writing the same spec fields as kubectl and GitOps do: one mechanism.
"""

from __future__ import annotations

import hashlib
import json

from aiohttp import web
from pydantic import BaseModel

from seqflow.api.bodies import (
    condition_of,
    name_of,
    owners_of,
    spec_of,
    status_of,
    uid_of,
    version_of,
    workflow_of,
)
from seqflow.api.manifests import LABEL_WORKFLOW, rerun, retry_from, workflow_run
from seqflow.api.models import (
    GROUP,
    MAX_INLINE_BYTES,
    VERSION,
    JsonObject,
    WorkflowRef,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowSpec,
    WorkflowStatus,
    shortened_name,
)
from seqflow.api.values import REF_SHAPE, ref_of, stored
from seqflow.cluster.kube import Conflict, KubeApi, NotFound
from seqflow.engine.schemas import schema_problem, value_problems
from seqflow.http.auth import CREATED_BY, Authorizer, HttpError, authorize, read_body
from seqflow.runs.values import Values
from seqflow.settings import Settings
from seqflow.tracing import caller_annotations

IDEMPOTENCY_KEY = "seqflow.io/idempotency-key"  # annotation: a digest of the key that named it
SPEC_CHANGES: dict[str, JsonObject] = {
    "suspend": {"suspend": True},
    "resume": {"suspend": False},
    "cancel": {"cancel": True},
}
CONTROLS = (*SPEC_CHANGES, "retry", "rerun", "retry-from")
RETRY_WRITE_ATTEMPTS = 10  # a retry counts from the value read; the run's status writes race it


class ControlApi:
    def __init__(
        self, *, api: KubeApi, values: Values, authorizer: Authorizer | None, settings: Settings
    ) -> None:
        self._api = api
        self._values = values
        self._authorizer = authorizer
        self._max_input = settings.max_value_bytes
        self._inline = settings.inline_value_bytes

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/namespaces/{namespace}/workflows/{workflow}/runs", self.start_run)
        app.router.add_get("/api/v1/workflows", self.list_workflows)
        app.router.add_get("/api/v1/namespaces/{namespace}/workflows", self.list_workflows)
        app.router.add_get("/api/v1/namespaces/{namespace}/workflows/{workflow}/revisions", self.revisions)
        app.router.add_get("/api/v1/schedules", self.list_schedules)
        app.router.add_get("/api/v1/namespaces/{namespace}/schedules", self.list_schedules)
        app.router.add_post("/api/v1/namespaces/{namespace}/runs/{name}/signals/{signal}", self.signal)
        app.router.add_post("/api/v1/namespaces/{namespace}/runs/{name}/{action}", self.control)
        app.router.add_get("/api/v1/openapi.json", self.openapi)

    async def start_run(self, request: web.Request) -> web.Response:
        namespace, workflow = request.match_info["namespace"], request.match_info["workflow"]
        user = await authorize(self._authorizer, request, verb="create", namespace=namespace)
        data = await _json_object(request, what="the input", limit=self._max_input)
        if ref_of(data) is not None:
            raise HttpError(422, f"the input may not be {REF_SHAPE}: that is a stored value's reference")
        await self._check_input(namespace, workflow, data)
        if request.query.get("dryRun") == "true":
            return web.json_response({"valid": True})
        kept, encoded = stored(data, inline_bytes=self._inline)
        if encoded is not None:  # a large input: stored first, the run names it
            await self._values.upload(namespace, kept["ref"], encoded)
            data = kept
        key = request.headers.get("Idempotency-Key", "").strip()
        annotations = {CREATED_BY: user, **caller_annotations(request.headers.get("traceparent"))}
        metadata: JsonObject = {"annotations": annotations}
        if key:
            digest = hashlib.sha256(f"{namespace}/{workflow}/{key}".encode()).hexdigest()
            metadata["name"] = shortened_name(f"{workflow[:200]}-{digest[:16]}", limit=253)
            metadata["annotations"][IDEMPOTENCY_KEY] = digest
        else:
            metadata["generateName"] = f"{workflow[:200]}-"
        body = workflow_run(workflow=WorkflowRef(name=workflow), input=data, metadata=metadata)
        try:
            run, status = await self._api.create_run(namespace, body), 201
        except Conflict:  # the key was used before: the same run, if it was this very request
            run, status = await self._api.get_run(namespace, metadata["name"]), 200
            same = workflow_of(run) == workflow
            if not same or (spec_of(run).get("inputRef") or spec_of(run).get("input")) != data:
                raise HttpError(409, "this Idempotency-Key was used for another request") from None
        name = name_of(run)
        location = f"/api/v1/namespaces/{namespace}/runs/{name}"
        return web.json_response(_run_summary(run), status=status, headers={"Location": location})

    async def _check_input(self, namespace: str, workflow: str, data: JsonObject) -> None:
        """Refuse a start for a Workflow that does not exist (404: a run applied with kubectl
        waits for its Workflow, one started here is told at once) and (422) an input its
        inputSchema does not accept; a broken schema is left to the run's own checks."""
        try:
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflows/{workflow}"
            found = await self._api.request("GET", path)
        except NotFound:
            raise HttpError(404, f'Workflow "{workflow}" not found in namespace {namespace}') from None
        schema = spec_of(found).get("inputSchema")
        if schema is None or schema_problem(schema, field="inputSchema") is not None:
            return
        problems = value_problems(schema, data, what="input")
        if problems is not None:
            raise HttpError(422, problems)

    async def list_workflows(self, request: web.Request) -> web.Response:
        listed = await self._list(request, "workflows")
        return web.json_response({"items": [_workflow_summary(w) for w in listed]})

    async def revisions(self, request: web.Request) -> web.Response:
        """A Workflow's revisions, newest first, each with its spec (readable by whoever may get
        the Workflow)."""
        namespace, name = request.match_info["namespace"], request.match_info["workflow"]
        await authorize(self._authorizer, request, verb="get", namespace=namespace, resource="workflows")
        try:
            found = await self._api.get_workflow(namespace, name)
        except NotFound:
            raise HttpError(404, f'Workflow "{name}" not found in namespace {namespace}') from None
        listed = await self._api.list_controller_revisions(
            namespace, label_selector=f"{LABEL_WORKFLOW}={shortened_name(name)}"
        )
        status = status_of(found)
        items = [
            {
                "revision": r["revision"],
                "createdAt": r["metadata"].get("creationTimestamp"),
                "current": r["revision"] == status.get("revision"),
                "ready": r["revision"] == status.get("readyRevision"),
                "spec": spec_of(r.get("data") or {}),
            }
            for r in sorted(listed, key=lambda r: -int(r["revision"]))
            if any(o.get("uid") == uid_of(found) for o in owners_of(r))
        ]
        return web.json_response({"workflow": name, "namespace": namespace, "items": items})

    async def list_schedules(self, request: web.Request) -> web.Response:
        listed = await self._list(request, "workflowschedules")
        return web.json_response({"items": [_schedule_summary(s) for s in listed]})

    async def _list(self, request: web.Request, resource: str) -> list[JsonObject]:
        namespace = request.match_info.get("namespace", "")
        await authorize(self._authorizer, request, verb="list", namespace=namespace, resource=resource)
        where = f"/namespaces/{namespace}" if namespace else ""
        listed = await self._api.request("GET", f"/apis/{GROUP}/{VERSION}{where}/{resource}")
        return list(listed.get("items") or [])

    async def control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action == "retry":
            return await self._retry(request)
        if action in ("rerun", "retry-from"):
            return await self._rerun(request, step=action == "retry-from")
        if action not in SPEC_CHANGES:
            raise HttpError(404, f"no action {action!r}; use {', '.join(CONTROLS)} or signals/NAME")
        return await self._patch(request, {"spec": SPEC_CHANGES[action]})

    async def signal(self, request: web.Request) -> web.Response:
        payload = await _json_object(request, what="the signal's payload", limit=MAX_INLINE_BYTES)
        if ref_of(payload) is not None:
            raise HttpError(422, f"the payload may not be {REF_SHAPE}: that is a stored value's reference")
        return await self._patch(request, {"spec": {"signals": {request.match_info["signal"]: payload}}})

    async def _patch(self, request: web.Request, patch: JsonObject) -> web.Response:
        """Write a change of the run's spec that does not depend on what is there."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await authorize(self._authorizer, request, verb="patch", namespace=namespace)
        try:
            written = await self._api.patch_run(namespace, name, patch)
        except NotFound:
            raise HttpError(404, f"no run {namespace}/{name}") from None
        return web.json_response(_run_summary(written))

    async def _retry(self, request: web.Request) -> web.Response:
        """Count spec.retry up from the value read, guarded by the run's resourceVersion so that
        two retries asked at once are two."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await authorize(self._authorizer, request, verb="patch", namespace=namespace)
        for _ in range(RETRY_WRITE_ATTEMPTS):
            try:
                run = await self._api.get_run(namespace, name)
            except NotFound:
                raise HttpError(404, f"no run {namespace}/{name}") from None
            patch = {
                "metadata": {"resourceVersion": version_of(run)},
                "spec": {"retry": (spec_of(run).get("retry") or 0) + 1},
            }
            try:
                written = await self._api.patch_run(namespace, name, patch)
            except Conflict:
                continue
            return web.json_response(_run_summary(written))
        raise HttpError(409, f"run {namespace}/{name} kept changing; try again")

    async def _rerun(self, request: web.Request, *, step: bool) -> web.Response:
        """A new run with the same Workflow, input and labels; or with `step`, one that retries
        the run from the task the body names ({step, input | patch})."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        user = await authorize(self._authorizer, request, verb="create", namespace=namespace)
        asked = await _json_object(request, what="the body", limit=MAX_INLINE_BYTES) if step else {}
        try:
            run = await self._api.get_run(namespace, name)
        except NotFound:
            raise HttpError(404, f"no run {namespace}/{name}") from None
        body = _retry_from(run, asked) if step else rerun(run)
        body["metadata"]["annotations"] = {CREATED_BY: user}
        created = await self._api.create_run(namespace, body)
        location = f"/api/v1/namespaces/{namespace}/runs/{created['metadata']['name']}"
        return web.json_response(_run_summary(created), status=201, headers={"Location": location})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())


def _retry_from(run: JsonObject, asked: JsonObject) -> JsonObject:
    """The new run a retry-from body asks for (its step checked at the run's start)."""
    step, input, patch = asked.get("step"), asked.get("input"), asked.get("patch")
    if not isinstance(step, str) or not step:
        raise HttpError(422, 'the body needs the step to retry from: {"step": NAME}')
    if input is not None and patch is not None:
        raise HttpError(422, "give input or patch, not both")
    for given, what in ((input, "input"), (patch, "patch")):
        if given is not None and not isinstance(given, dict):
            raise HttpError(422, f"{what} must be a JSON object")
    return retry_from(run, step=step, input=input, patch=patch)


async def _json_object(request: web.Request, *, what: str, limit: int) -> JsonObject:
    text = await read_body(request, limit=limit, what=what)
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise HttpError(400, f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise HttpError(400, f"{what} must be a JSON object")
    return value


def _run_summary(run: JsonObject) -> JsonObject:
    meta, status = run["metadata"], status_of(run)
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "workflow": workflow_of(run),
        "phase": status.get("phase"),
        "spec": spec_of(run),
    }


def _workflow_summary(workflow: JsonObject) -> JsonObject:
    meta, spec, status = workflow["metadata"], spec_of(workflow), status_of(workflow)
    ready = condition_of(status, "Ready")
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "description": spec.get("description"),
        "tasks": [t.get("name") for t in spec.get("tasks") or []],
        "steps": [_step_summary(t) for t in spec.get("tasks") or []],
        "inputSchema": spec.get("inputSchema"),
        "valid": ready.get("status") == "True",
        "reason": ready.get("reason"),
        "message": ready.get("message"),
    }


STEP_KINDS = {
    "handler": "handler",
    "job": "job",
    "sleep": "sleep",
    "wait": "wait",
    "parallel": "parallel",
    "workflowRef": "workflow",
}


def _step_summary(step: JsonObject) -> JsonObject:
    kind = next((name for key, name in STEP_KINDS.items() if step.get(key) is not None), "handler")
    summary: JsonObject = {"name": step.get("name"), "type": kind}
    detail = {
        "handler": step.get("handler"),
        "job": (step.get("job") or {}).get("image"),
        "workflow": (step.get("workflowRef") or {}).get("name"),
        "wait": (step.get("wait") or {}).get("signal"),
    }.get(kind)
    if detail is not None:
        summary["detail"] = detail
    if step.get("when"):
        summary["when"] = step["when"]
    if kind == "parallel":
        summary["members"] = [_step_summary(member) for member in step["parallel"]]
    return summary


def _schedule_summary(schedule: JsonObject) -> JsonObject:
    meta, spec, status = schedule["metadata"], spec_of(schedule), status_of(schedule)
    ready = condition_of(status, "Ready")
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "schedule": spec.get("schedule"),
        "timeZone": spec.get("timeZone"),
        "suspend": bool(spec.get("suspend")),
        "workflow": (spec.get("runTemplate") or {}).get("workflowRef", {}).get("name"),
        "nextScheduleTime": status.get("nextScheduleTime"),
        "lastScheduleTime": status.get("lastScheduleTime"),
        "active": status.get("active") or [],
        "ready": ready.get("status") == "True",
        "message": ready.get("message"),
    }


def openapi_document() -> JsonObject:
    """The API's OpenAPI 3.1 document, its schemas generated from the resource models."""
    models: dict[str, type[BaseModel]] = {
        "WorkflowSpec": WorkflowSpec,
        "WorkflowStatus": WorkflowStatus,
        "WorkflowRunSpec": WorkflowRunSpec,
        "WorkflowRunStatus": WorkflowRunStatus,
    }
    schemas: JsonObject = {}
    for name, model in models.items():
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    run = {"description": "The run", "content": {"application/json": {"schema": {"type": "object"}}}}
    any_object = {"content": {"application/json": {"schema": {"type": "object"}}}}
    path_params = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in ("namespace", "name")
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "seqflow", "version": VERSION},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"kubernetes": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"kubernetes": []}],
        "paths": {
            "/api/v1/namespaces/{namespace}/workflows/{workflow}/runs": {
                "post": {
                    "summary": "Start a run; the body is its input (Idempotency-Key: one run per key)",
                    "parameters": [
                        {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "workflow", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                    ],
                    "requestBody": any_object,
                    "responses": {"201": run, "200": run, "404": any_object, "422": any_object},
                }
            },
            "/api/v1/workflows": {
                "get": {"summary": "Workflows of all namespaces", "responses": {"200": any_object}}
            },
            "/api/v1/namespaces/{namespace}/workflows": {
                "get": {"summary": "Workflows of a namespace", "responses": {"200": any_object}}
            },
            "/api/v1/namespaces/{namespace}/workflows/{workflow}/revisions": {
                "get": {"summary": "A Workflow's revisions, newest first", "responses": {"200": any_object}}
            },
            "/api/v1/schedules": {
                "get": {"summary": "WorkflowSchedules of all namespaces", "responses": {"200": any_object}}
            },
            "/api/v1/namespaces/{namespace}/schedules": {
                "get": {"summary": "WorkflowSchedules of a namespace", "responses": {"200": any_object}}
            },
            **{
                f"/api/v1/namespaces/{{namespace}}/runs/{{name}}/{action}": {
                    "post": {
                        "summary": f"{action.capitalize()} the run",
                        "parameters": path_params,
                        "responses": {"200": run},
                    }
                }
                for action in CONTROLS
            },
            "/api/v1/namespaces/{namespace}/runs/{name}/signals/{signal}": {
                "post": {
                    "summary": "Deliver a signal; the body is its payload",
                    "requestBody": any_object,
                    "responses": {"200": run},
                }
            },
            "/api/v1/namespaces/{namespace}/runs/{name}": {
                "get": {"summary": "A run's history", "responses": {"200": any_object}}
            },
            "/api/v1/namespaces/{namespace}/runs/{name}/logs": {
                "get": {
                    "summary": "The attempts of the run whose log is kept",
                    "responses": {"200": any_object},
                }
            },
            "/api/v1/namespaces/{namespace}/runs/{name}/logs/{step}/{attempt}": {
                "get": {
                    "summary": "The log kept of one attempt (its tail: X-Seqflow-Log-Size is the whole's)",
                    "responses": {"200": {"description": "text/plain"}},
                }
            },
        },
    }
