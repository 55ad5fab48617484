"""The operator assembled from its settings, the one composition root: `run_operator` builds the
API client, the history store, the runs' and the schedules' controllers, the HTTP endpoints and
Kopf, each registered on an `AsyncExitStack` as it starts, so that they stop together, in the
reverse order, however the operator ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

import kopf
from aiohttp import web
from kubernetes import client as k8s_client
from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server
from sqlalchemy.engine import make_url

from seqflow.clock import Clock, SystemClock
from seqflow.cluster.events import EventRecorder
from seqflow.cluster.kube import KubeApi, load_configuration
from seqflow.cluster.leases import BucketLeases
from seqflow.cluster.watches import build_registry, configure
from seqflow.controller.queue import backoff
from seqflow.engine import EngineOptions
from seqflow.executors.artifacts import ArtifactStore
from seqflow.executors.attempts import AttemptLinks, derived_key
from seqflow.executors.http import AllowedHosts, HttpCaller
from seqflow.executors.inprocess import HandlerRunner, import_handler_modules, registry
from seqflow.history.journal import Journal
from seqflow.history.logs import StepLogStore
from seqflow.history.migrate import upgrade
from seqflow.history.store import HistoryStore, open_store
from seqflow.history.sync import HistoryWriter
from seqflow.history.values import StoredValues
from seqflow.http.artifacts import ArtifactApi
from seqflow.http.attempts import AttemptApi
from seqflow.http.auth import Authorizer
from seqflow.http.control import ControlApi
from seqflow.http.dashboard import Dashboard
from seqflow.http.history import HistoryApi, serve
from seqflow.http.logs import LogApi
from seqflow.http.webhooks import Webhooks
from seqflow.metrics import Metrics, Sources
from seqflow.runs.actuator import StepOptions
from seqflow.runs.controller import RunController, RunOptions
from seqflow.runs.ownership import hands_over_nothing, owns_everything
from seqflow.runs.traces import RunSpans
from seqflow.runs.values import Values
from seqflow.schedules.controller import Scheduler
from seqflow.settings import Settings
from seqflow.tracing import Tracing

logger = logging.getLogger("seqflow")
RETENTION_INTERVAL = 3600.0


async def run_operator(settings: Settings) -> None:
    import_handler_modules(settings.handler_modules)
    configuration = load_configuration()  # start-up mistakes first, before anything starts
    async with AsyncExitStack() as stack:
        operator = build(settings, configuration=configuration, clock=SystemClock(), stack=stack)
        await run(operator, stack=stack)


@dataclass(frozen=True)
class Operator:
    """The operator's parts as `build` made them, started by `run`."""

    settings: Settings
    clock: Clock
    store: HistoryStore
    metrics: Metrics
    runs: RunController
    scheduler: Scheduler
    schedule_events: EventRecorder
    leases: BucketLeases | None
    artifacts: ArtifactStore | None
    http: web.Application


def build(
    settings: Settings, *, configuration: k8s_client.Configuration, clock: Clock, stack: AsyncExitStack
) -> Operator:
    """Every part, from the settings; what holds resources is closed by `stack`, in reverse."""
    store = open_store(settings.database_url.get_secret_value())
    stack.callback(store.dispose)
    journal = Journal(store, clock=clock)
    stack.callback(journal.close)
    if settings.migrate_on_start:
        _in_background(stack, _migrate(store, journal), name="seqflow-migrate")
    else:
        journal.open()
    disable_created_metrics()  # no *_created series: they double the exposition for little use
    metrics = Metrics(CollectorRegistry(), step_label=settings.metrics_step_label)

    def observe(verb: str, resource: str, code: int, seconds: float) -> None:
        metrics.api_requests.labels(verb, resource, code).observe(seconds)

    api = KubeApi(
        configuration,
        connections=settings.api_connections,
        observe=observe,
        qps=settings.api_qps,
        burst=settings.api_burst,
    )
    stack.push_async_callback(api.close)
    values = Values(StoredValues(store), cache_bytes=settings.value_cache_bytes)
    links = _attempt_links(settings)  # (one key for the Jobs' links and the API that checks them)
    artifacts = ArtifactStore.from_settings(settings)
    runner = HandlerRunner(handlers=registry, threads=settings.handler_threads)
    stack.callback(runner.close)
    caller = HttpCaller(
        allowed=AllowedHosts(tuple(settings.http_allowed_hosts)), secrets=api.get_secret, clock=clock
    )
    stack.push_async_callback(caller.close)
    leases = _leases(
        stack,
        settings,
        lease_api=KubeApi(configuration, connections=4, observe=observe),
        clock=clock,
        gained=lambda bucket: _took(runs, scheduler),
        lost=lambda bucket: runs.drop_unowned(),
        drain=lambda bucket: runs.drain_handed_over(),
    )
    tracing = Tracing.over_otlp(settings.tracing_endpoint) if settings.tracing_endpoint else None
    if tracing is not None:
        stack.callback(tracing.close)  # (its last spans exported)
    runs = RunController(
        api=api,
        runner=runner,
        history=HistoryWriter(store),
        journal=journal,
        values=values,
        log_store=StepLogStore(store),
        metrics=metrics,
        handler_names=registry.names(),
        owns=leases.holds if leases is not None else owns_everything,
        handing_over=leases.handing_over if leases is not None else hands_over_nothing,
        options=_run_options(settings, links=links, artifacts=artifacts, http=caller),
        clock=clock,
        spans=RunSpans(tracing),
    )
    schedule_events = EventRecorder(api, queue_size=settings.event_queue_size, clock=clock)
    scheduler = Scheduler(
        api=api, events=schedule_events, owns=leases.holds if leases else owns_everything, clock=clock
    )
    metrics.watch(
        Sources(
            workflow_runs=runs.census,
            pending_history=runs.pending_history,
            buckets_held=(lambda: len(leases.held)) if leases else None,
            buckets_expired=(lambda: leases.lapsed) if leases else None,
        )
    )
    return Operator(
        settings=settings,
        clock=clock,
        store=store,
        metrics=metrics,
        runs=runs,
        scheduler=scheduler,
        schedule_events=schedule_events,
        leases=leases,
        artifacts=artifacts,
        http=_http_application(
            settings,
            api=api,
            store=store,
            values=values,
            links=links,
            artifacts=artifacts,
            runs=runs,
            clock=clock,
        ),
    )


async def run(operator: Operator, *, stack: AsyncExitStack) -> None:
    """Start the parts (each stopped by `stack`), then Kopf's watches, until the operator stops."""
    settings = operator.settings
    http = await serve(operator.http, port=settings.http_port)
    stack.push_async_callback(http.cleanup)
    if settings.metrics_port:
        metrics_server, _ = start_http_server(settings.metrics_port, registry=operator.metrics.registry)
        stack.callback(metrics_server.shutdown)
    logger.info(
        "seqflow starting: handlers %s, %d workers, history in %s, http on :%d",
        sorted(registry.names()),
        settings.max_concurrent_runs,
        operator.store.engine.url.render_as_string(),
        settings.http_port,
    )
    operator.runs.start()
    stack.push_async_callback(operator.runs.stop)
    operator.scheduler.start()
    operator.schedule_events.start()
    stack.push_async_callback(operator.scheduler.stop)
    stack.push_async_callback(operator.schedule_events.stop)
    if operator.leases is not None:  # at stop, handed over while the controllers still drain
        stack.push_async_callback(operator.leases.release_all)
        _in_background(stack, operator.leases.run(), name="seqflow-leases")
    retention = _prune_history(
        operator.store, settings.history_retention_days, artifacts=operator.artifacts, clock=operator.clock
    )
    _in_background(stack, retention, name="seqflow-retention")
    kopf_settings = kopf.OperatorSettings()
    configure(kopf_settings, settings)
    await kopf.operator(
        registry=build_registry(),
        settings=kopf_settings,
        memo=kopf.Memo(reconciler=operator.runs, scheduler=operator.scheduler),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
    )


def _run_options(
    settings: Settings, *, links: AttemptLinks | None, artifacts: ArtifactStore | None, http: HttpCaller
) -> RunOptions:
    run_ttl = settings.run_ttl_seconds
    return RunOptions(
        workers=settings.max_concurrent_runs,
        event_queue_size=settings.event_queue_size,
        steps=StepOptions(
            steps_as=settings.job_steps_as,
            job_ttl_seconds=settings.job_ttl_seconds,
            links=links,
            artifacts=artifacts,
            http=http,
        ),
        write_delay_seconds=settings.write_delay_seconds,
        step_log_bytes=settings.step_log_bytes,
        engine=EngineOptions(
            workflow_wait=timedelta(seconds=settings.workflow_wait_seconds),
            default_timeout_seconds=settings.default_timeout_seconds,
            max_descendants=settings.max_descendants,
            max_value_bytes=settings.max_value_bytes,
            inline_value_bytes=settings.inline_value_bytes,
            run_ttl=timedelta(seconds=run_ttl) if run_ttl is not None else None,
        ),
    )


def _leases(
    stack: AsyncExitStack,
    settings: Settings,
    *,
    lease_api: KubeApi,
    clock: Clock,
    gained: Callable[[int], None],
    lost: Callable[[int], None],
    drain: Callable[[int], Awaitable[None]],
) -> BucketLeases | None:
    """The Leases of the run buckets, with active-active replicas (SEQFLOW_BUCKETS), on API
    connections of their own (renewals never wait behind the runs' writes for one)."""
    stack.push_async_callback(lease_api.close)
    if not settings.buckets:
        return None
    leases = BucketLeases(
        api=lease_api,
        clock=clock,
        namespace=settings.lease_namespace,
        prefix=settings.lease_name,
        identity=settings.replica_name,
        buckets=settings.buckets,
        lease_seconds=settings.lease_seconds,
        renew_seconds=settings.lease_seconds * 2 / 3,
        retry_seconds=settings.lease_seconds / 7.5,
        on_gained=gained,
        on_lost=lost,
        drain=drain,
    )
    return leases


def _http_application(
    settings: Settings,
    *,
    api: KubeApi,
    store: HistoryStore,
    values: Values,
    links: AttemptLinks | None,
    artifacts: ArtifactStore | None,
    runs: RunController,
    clock: Clock,
) -> web.Application:
    authorizer = Authorizer(api, clock=clock) if settings.http_auth else None
    if authorizer is None:
        logger.warning("the HTTP API does not check callers (SEQFLOW_HTTP_AUTH=false)")
    application = HistoryApi(store=store, values=values, authorizer=authorizer, live=runs).application()
    ControlApi(api=api, values=values, authorizer=authorizer, settings=settings).add_routes(application)
    Webhooks(api=api, clock=clock).add_routes(application)
    ArtifactApi(artifacts=artifacts, authorizer=authorizer).add_routes(application)
    LogApi(store=store, authorizer=authorizer, live=runs).add_routes(application)
    if links is not None:
        attempts = AttemptApi(api=api, values=values, links=links, max_value_bytes=settings.max_value_bytes)
        attempts.add_routes(application)
    Dashboard().add_routes(application)
    return application


def _attempt_links(settings: Settings) -> AttemptLinks | None:
    """The links of Job steps to the HTTP API, when the pods can reach it (SEQFLOW_API_URL)."""
    if not settings.api_url:
        return None
    if settings.attempt_key is not None:
        return AttemptLinks(
            api_url=settings.api_url, key=derived_key(settings.attempt_key.get_secret_value())
        )
    url = settings.database_url.get_secret_value()
    if make_url(url).password:  # a secret every replica shares
        return AttemptLinks(api_url=settings.api_url, key=derived_key(url))
    logger.warning(
        "SEQFLOW_ATTEMPT_KEY is unset and SEQFLOW_DATABASE_URL has no password: Job steps' links "
        "are signed with a key of this process only (links made before a restart are refused)"
    )
    return AttemptLinks(api_url=settings.api_url, key=secrets.token_bytes(32))


def _in_background(stack: AsyncExitStack, work: Awaitable[None], *, name: str) -> None:
    """A task that runs until the operator stops (cancelled then)."""
    task = asyncio.ensure_future(work)
    task.set_name(name)

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(cancel)


def _took(runs: RunController, scheduler: Scheduler) -> None:
    """A bucket came to this replica: its runs, schedules and Workflows are this replica's now."""
    runs.take_owned()
    scheduler.take_owned()


async def _migrate(store: HistoryStore, journal: Journal) -> None:
    """Bring the schema up to date, then open the journal; while the database is away, keep
    trying (runs go on, their history waits in their status)."""
    failures = 0
    while True:
        try:
            await asyncio.to_thread(upgrade, store.engine)
            journal.open()
            return
        except Exception as error:  # the store being away must not stop the operator
            failures += 1
            delay = backoff(failures, first=1.0)
            logger.warning("history schema not migrated (%s); again in %.0f s", type(error).__name__, delay)
            await asyncio.sleep(delay)


async def _prune_history(
    store: HistoryStore, days: float | None, *, artifacts: ArtifactStore | None, clock: Clock
) -> None:
    """Once an hour, delete the history older than the retention period (when there is one),
    each run's files first, and the stored values no run holds any more."""
    while True:
        cutoff = clock.now() - timedelta(days=days) if days is not None else None
        try:
            deleted = await delete_finished_history(store, cutoff, artifacts=artifacts) if cutoff else 0
            await asyncio.to_thread(store.delete_unheld_values, clock.now())
        except Exception as error:  # the store being away only delays pruning
            logger.warning("history retention skipped this hour: %s", type(error).__name__)
        else:
            if deleted:
                logger.info("deleted the history of %d runs finished before %s", deleted, cutoff)
        await asyncio.sleep(RETENTION_INTERVAL)


async def delete_finished_history(
    store: HistoryStore, cutoff: datetime, *, artifacts: ArtifactStore | None
) -> int:
    """Delete the runs finished before `cutoff`, a batch at a time, each run's files before its
    rows (an object store that is away leaves both for the next hour)."""
    deleted = 0
    while runs := await asyncio.to_thread(store.finished_before, cutoff):
        if artifacts is not None:
            for namespace, uid in runs:
                await artifacts.delete_run(namespace=namespace, run_uid=uid)
        await asyncio.to_thread(store.delete_runs, [uid for _, uid in runs])
        deleted += len(runs)
    return deleted
