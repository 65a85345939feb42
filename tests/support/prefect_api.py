"""The few Prefect REST calls the consortium test and benchmark make, on a real server.

Plain HTTP, so the caller's own Prefect settings (a test harness, a temporary server) play no
part in what is measured or checked.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from typing import Any

import httpx


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    """A Prefect server's REST API at url ("...../api")."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Make the call, again after a pause when the server answers 503 (busy).

        Prefect's own client does the same (SQLite's lock under load is not an error).
        """
        for _ in range(20):
            resp = self.http.request(method, path, **kwargs)
            if resp.status_code != 503:
                break
            time.sleep(0.5)
        resp.raise_for_status()
        return resp.json()

    def healthy(self) -> bool:
        try:
            return self.http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def deployment(self, office: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", f"/deployments/name/advising-nightly/{office}")
        return data

    def start_run(self, office: str) -> str:
        deployment_id = self.deployment(office)["id"]
        run = self._call("POST", f"/deployments/{deployment_id}/create_flow_run", json={})
        return str(run["id"])

    def state(self, run_id: str) -> str:
        return str(self._call("GET", f"/flow_runs/{run_id}")["state"]["type"])

    def flow_run(self, run_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", f"/flow_runs/{run_id}")
        return data

    def state_times(self, run_id: str) -> dict[str, str]:
        """When the run first entered each state type (server clock, ISO 8601)."""
        states = self._call("GET", "/flow_run_states/", params={"flow_run_id": run_id})
        first: dict[str, str] = {}
        for state in sorted(states, key=lambda s: str(s["timestamp"])):
            first.setdefault(str(state["type"]), str(state["timestamp"]))
        return first

    def online_workers(self, pool: str) -> set[str]:
        """The names of the pool's workers whose heartbeat the server has now."""
        workers = self._call("POST", f"/work_pools/{pool}/workers/filter", json={})
        return {str(w["name"]) for w in workers if w.get("status") == "ONLINE"}

    def finished_runs(self, office: str) -> Counter[str]:
        """Count the office's runs by final state (scheduled and pending ones left out)."""
        body = {"flow_runs": {"deployment_id": {"any_": [self.deployment(office)["id"]]}}}
        states = [r["state"]["type"] for r in self._call("POST", "/flow_runs/filter", json=body)]
        return Counter(s for s in states if s in ("COMPLETED", "FAILED", "CRASHED"))
