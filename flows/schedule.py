"""The nightly schedule: a deployment with a cron schedule on a real Prefect server."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from flows.settings import Settings
from residency_rules.errors import SettingsError

DEPLOYMENT_NAME = "nightly"


def check_server(api_url: str, timeout: float = 5.0) -> None:
    """Fail with a clear message unless a Prefect server answers at api_url."""
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status == 200:
                return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SettingsError(
            f"No Prefect server answers at PREFECT_API_URL={api_url} ({reason}). "
            "Start one with `prefect server start` (see README, 'Running it nightly') "
            "and try again."
        ) from None
    raise SettingsError(f"The Prefect server at {api_url} is not healthy; check its log.")


def serve_nightly(settings: Settings) -> int:
    """Register the flow with its cron schedule and execute scheduled runs until stopped."""
    api_url = os.environ.get("PREFECT_API_URL", "")
    if not api_url:
        raise SettingsError(
            "`advising serve` needs a Prefect server: the temporary one used by `advising run` "
            "cannot keep a schedule. Start `prefect server start`, then set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api and run `advising serve` again."
        )
    check_server(api_url)
    from prefect.schedules import Cron

    from flows.pipeline import advising_run

    print(
        f"Nightly runs at '{settings.schedule_cron}' ({settings.schedule_timezone}) "
        f"over {settings.input_dir.resolve()}; stop with Ctrl-C."
    )
    advising_run.serve(
        name=DEPLOYMENT_NAME,
        schedules=[Cron(settings.schedule_cron, timezone=settings.schedule_timezone)],
        parameters={
            "input_dir": str(settings.input_dir.resolve()),
            "output_dir": str(settings.output_dir.resolve()),
        },
        global_limit=1,  # the nightly run and a manual trigger never overlap
        description="Process every roster dropped into the input folder.",
        print_starting_message=False,
    )
    return 0
