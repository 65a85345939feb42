"""The Prefect server's side of the product: the nightly schedule and a consortium's offices.

`advising serve` registers the flow with its cron schedule on the lasting server in
PREFECT_API_URL and executes the runs; `advising deploy` registers one deployment per office
on a process work pool for workers to take. Both import the flow, and so Prefect.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from typing import Any, cast

from flows.errors import SettingsError
from flows.settings import Office, Settings

DEPLOYMENT_NAME = "nightly"
APPROVE_DEPLOYMENT = "approve"


def check_server(api_url: str, wait_seconds: float = 0.0, every: float = 5.0) -> None:
    """Wait up to wait_seconds for the Prefect server at api_url to answer, with a line each
    few seconds; then fail with a clear message.

    At boot the server takes about 9 s to come up: `advising serve` started beside it waits
    instead of failing at once and hitting systemd's start limit.
    """
    started = time.monotonic()
    said = started
    while True:
        try:
            with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=5) as resp:
                if resp.status == 200:
                    return
                reason: object = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(exc, ValueError):  # not a URL at all: no point in waiting
                wait_seconds = 0
        now = time.monotonic()
        if now - started >= wait_seconds:
            break
        if now - said >= every:
            print(f"Waiting for the Prefect server at {api_url} ({reason}); "
                  f"{now - started:.0f} of {wait_seconds:.0f} s", flush=True)
            said = now
        time.sleep(1.0)
    raise SettingsError(
        f"No Prefect server answers at PREFECT_API_URL={api_url} ({reason})"
        + (f" after {wait_seconds:.0f} s" if wait_seconds else "")
        + ". Start one with `prefect server start` (see `advising docs readme`, 'Running it "
        "nightly') and try again."
    )


def serve_nightly(settings: Settings) -> int:
    """Register the flow with its cron schedule and execute scheduled runs until stopped."""
    api_url = os.environ.get("PREFECT_API_URL", "")
    if not api_url:
        raise SettingsError(
            "`advising serve` needs a Prefect server: the temporary one used by `advising run` "
            "cannot keep a schedule. Start `prefect server start`, then set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api and run `advising serve` again."
        )
    check_server(api_url, settings.server_wait_seconds)
    from prefect.schedules import Cron

    from flows.pipeline import advising_run

    print(
        f"Nightly runs at '{settings.schedule_cron}' ({settings.schedule_timezone}) "
        f"over {settings.input_dir.resolve()}; stop with Ctrl-C."
    )
    from prefect import serve

    from flows.approval_flow import advising_approve

    folders = {
        "input_dir": str(settings.input_dir.resolve()),
        "output_dir": str(settings.output_dir.resolve()),
    }
    nightly = advising_run.to_deployment(
        name=DEPLOYMENT_NAME,
        schedules=[Cron(settings.schedule_cron, timezone=settings.schedule_timezone)],
        parameters=folders,
        concurrency_limit=1,  # the nightly run and a manual trigger never overlap
        description=schedule_description(settings),
    )
    # The office's approval from the browser (README, Before the first real run).
    approval = advising_approve.to_deployment(
        name=APPROVE_DEPLOYMENT, parameters=folders,
        description="Approve a roster's waiting letters: Run, Custom run, type the roster's "
        "file name and your name. The next nightly run sends the approved letters.",
    )
    # Called outside an event loop, to_deployment returns the deployment itself.
    serve(cast(Any, nightly), cast(Any, approval), print_starting_message=False)
    return 0


def deploy_offices(offices: list[Office], pool: str) -> int:
    """Register one deployment per office on a process work pool, creating the pool if missing.

    Workers run the flow from the installed product (a module-path entrypoint), so nothing is
    uploaded and no image is built: every worker machine has the product installed and the
    office folders mounted at the same paths. Each deployment allows one run at a time, so a
    late night and a manual run of one office never overlap; other offices run meanwhile.
    """
    api_url = os.environ.get("PREFECT_API_URL", "")
    if not api_url:
        raise SettingsError(
            "`advising deploy` registers the offices on a lasting Prefect server: start "
            "`prefect server start` (see `advising docs readme`, 'A consortium'), set "
            "PREFECT_API_URL=http://HOST:4200/api and run `advising deploy` again."
        )
    check_server(api_url)
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.pipeline import advising_run

    created = _ensure_process_pool(pool)
    print(f"Work pool {pool!r}: {'created (process type)' if created else 'found'}.")
    for office in offices:
        settings = office.settings
        params = {k: v for k, v in office.overrides.items() if k not in ("input_dir", "output_dir")}
        deployment = advising_run.to_deployment(
            name=office.name,
            entrypoint_type=EntrypointType.MODULE_PATH,
            schedules=[Cron(settings.schedule_cron, timezone=settings.schedule_timezone)],
            parameters={
                "input_dir": str(settings.input_dir),
                "output_dir": str(settings.output_dir),
                "office": params,
            },
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
            ),
            tags=["advising", f"office:{office.name}"],
            description=f"Office {office.name}: every roster dropped into {settings.input_dir}.",
        )
        assert isinstance(deployment, RunnerDeployment)  # called outside an event loop
        deployment.apply(work_pool_name=pool)
        print(
            f"  {advising_run.name}/{office.name}: '{settings.schedule_cron}' "
            f"({settings.schedule_timezone}), {settings.input_dir} -> {settings.output_dir}"
        )
    print(
        f"\nStart workers on any machine with the product installed and these folders mounted "
        f"at the same paths:\n  PREFECT_API_URL={api_url} prefect worker start --pool {pool}\n"
        f"Run an office now: prefect deployment run '{advising_run.name}/{offices[0].name}'"
    )
    return 0


def _ensure_process_pool(pool: str) -> bool:
    """Create the work pool as a process pool unless it exists; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            found = client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(
                name=pool, type=ProcessWorker.type,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="Residency advising: one deployment per office",
            ))
            return True
    if found.type != ProcessWorker.type:
        raise SettingsError(
            f"Work pool {pool!r} is of type {found.type!r}; the offices run on a process pool, "
            "where workers run the installed product. Name another pool (it is created)."
        )
    return False


def schedule_description(settings: Settings) -> str:
    """Say when the runs start, time zone included: the UI shows the cron in the browser's zone."""
    return (
        f"Process every roster dropped into {settings.input_dir.resolve()}. Scheduled by the "
        f"cron '{settings.schedule_cron}' in the time zone {settings.schedule_timezone} "
        "(ADVISING_SCHEDULE_CRON, ADVISING_SCHEDULE_TIMEZONE); a browser elsewhere shows the "
        "next run in its own time. A Failed run names the rosters that need attention: see "
        "its artifact and `advising docs readme`, 'When a run is Failed'."
    )
