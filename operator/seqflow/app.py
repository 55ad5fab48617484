"""The operator assembled from its settings: API client, history store, reconciler, HTTP
endpoints and Kopf, started together and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

import kopf
from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server

from seqflow.buckets import BucketLeases
from seqflow.control_api import ControlApi
from seqflow.dashboard import Dashboard
from seqflow.engine import EngineOptions
from seqflow.events import EventRecorder
from seqflow.executors.inprocess import HandlerRunner, import_handler_modules, registry
from seqflow.handlers import build_registry, configure
from seqflow.history.journal import Journal
from seqflow.history.migrate import upgrade
from seqflow.history.store import HistoryStore, open_store
from seqflow.history.sync import HistoryWriter
from seqflow.kube import KubeApi, load_configuration
from seqflow.metrics import Metrics
from seqflow.reconciler import Reconciler, ReconcilerOptions
from seqflow.scheduler import Scheduler
from seqflow.settings import Settings
from seqflow.web import Authorizer, HistoryApi, serve
from seqflow.webhooks import Webhooks
from seqflow.workqueue import backoff

logger = logging.getLogger("seqflow")
RETENTION_INTERVAL = 3600.0


async def run_operator(settings: Settings) -> None:
    import_handler_modules(settings.handler_modules)
    configuration = load_configuration()  # start-up mistakes first, before anything starts
    store = open_store(settings.database_url.get_secret_value())
    journal = Journal(store)
    migration = asyncio.create_task(_migrate(store, journal)) if settings.migrate_on_start else None
    if migration is None:
        journal.open()
    disable_created_metrics()  # no *_created series: they double the exposition for little use
    metrics = Metrics(CollectorRegistry())

    def observe(verb: str, resource: str, code: int, seconds: float) -> None:
        metrics.api_requests.labels(verb, resource, code).observe(seconds)

    api = KubeApi(
        configuration,
        connections=settings.api_connections,
        observe=observe,
        qps=settings.api_qps,
        burst=settings.api_burst,
    )
    # The Leases' own connections: renewals never wait behind the runs' writes for one.
    lease_api = KubeApi(configuration, connections=4, observe=observe)
    leases = (
        BucketLeases(
            api=lease_api,
            namespace=settings.lease_namespace,
            prefix=settings.lease_name,
            identity=settings.replica_name,
            buckets=settings.buckets,
            lease_seconds=settings.lease_seconds,
            renew_seconds=settings.lease_seconds * 2 / 3,
            retry_seconds=settings.lease_seconds / 7.5,
            on_gained=lambda bucket: _took(reconciler, scheduler),
            on_lost=lambda bucket: reconciler.drop_unowned(),
            drain=lambda bucket: reconciler.drain_handed_over(),
        )
        if settings.buckets
        else None
    )
    owns = leases.holds if leases is not None else _everything
    handing_over = leases.handing_over if leases is not None else _nothing
    runner = HandlerRunner(handlers=registry, threads=settings.handler_threads)
    reconciler = Reconciler(
        api=api,
        runner=runner,
        history=HistoryWriter(store),
        journal=journal,
        metrics=metrics,
        handler_names=registry.names(),
        owns=owns,
        handing_over=handing_over,
        options=ReconcilerOptions(
            workers=settings.max_concurrent_runs,
            event_queue_size=settings.event_queue_size,
            job_ttl_seconds=settings.job_ttl_seconds,
            step_pods=settings.job_steps_as == "Pod",
            write_delay_seconds=settings.write_delay_seconds,
            engine=EngineOptions(
                workflow_wait=timedelta(seconds=settings.workflow_wait_seconds),
                default_timeout_seconds=settings.default_timeout_seconds,
                max_descendants=settings.max_descendants,
                run_ttl=timedelta(seconds=settings.run_ttl_seconds)
                if settings.run_ttl_seconds is not None
                else None,
            ),
        ),
    )
    schedule_events = EventRecorder(api, queue_size=settings.event_queue_size)
    scheduler = Scheduler(api=api, events=schedule_events, owns=owns)
    authorizer = Authorizer(api) if settings.http_auth else None
    if authorizer is None:
        logger.warning("the HTTP API does not check callers (SEQFLOW_HTTP_AUTH=false)")
    application = HistoryApi(store=store, authorizer=authorizer, live=reconciler).application()
    ControlApi(api=api, authorizer=authorizer).add_routes(application)
    Webhooks(api=api).add_routes(application)
    Dashboard().add_routes(application)
    http = await serve(application, port=settings.http_port)
    metrics_server = None
    if settings.metrics_port:
        metrics_server, _ = start_http_server(settings.metrics_port, registry=metrics.registry)
    kopf_settings = kopf.OperatorSettings()
    configure(kopf_settings, settings)
    logger.info(
        "seqflow starting: handlers %s, %d workers, history in %s, http on :%d",
        sorted(registry.names()),
        settings.max_concurrent_runs,
        store.engine.url.render_as_string(),
        settings.http_port,
    )
    reconciler.start()
    sharing = asyncio.create_task(leases.run(), name="seqflow-leases") if leases is not None else None
    scheduling = [asyncio.create_task(scheduler.work(), name="seqflow-scheduler"), *schedule_events.posters()]
    retention = asyncio.create_task(_prune_history(store, settings.history_retention_days))
    try:
        await kopf.operator(
            registry=build_registry(),
            settings=kopf_settings,
            memo=kopf.Memo(reconciler=reconciler, scheduler=scheduler),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
        )
    finally:
        if sharing is not None and leases is not None:
            sharing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sharing
            await leases.release_all()
        retention.cancel()
        for task in scheduling:
            task.cancel()
        if migration is not None:
            migration.cancel()
        await reconciler.stop()
        await http.cleanup()
        if metrics_server is not None:
            metrics_server.shutdown()
        runner.close()
        journal.close()
        await api.close()
        await lease_api.close()
        store.dispose()


def _everything(namespace: str, name: str) -> bool:
    return True


def _nothing(namespace: str, name: str) -> bool:
    return False


def _took(reconciler: Reconciler, scheduler: Scheduler) -> None:
    """A bucket came to this replica: its runs, schedules and Workflows are this replica's now."""
    reconciler.take_owned()
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


async def _prune_history(store: HistoryStore, days: float | None) -> None:
    """Delete history older than the retention period, once an hour."""
    if days is None:
        return
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        try:
            deleted = await asyncio.to_thread(store.delete_finished_before, cutoff)
        except Exception as error:  # the store being away only delays pruning
            logger.warning("history retention skipped this hour: %s", type(error).__name__)
        else:
            if deleted:
                logger.info("deleted the history of %d runs finished before %s", deleted, cutoff)
        await asyncio.sleep(RETENTION_INTERVAL)
