"""Approval from the Prefect UI (#24): the office that only has a browser approves here.

`advising serve` registers this flow beside the nightly one as the deployment
"advising-approve/approve". In the Prefect UI: Deployments, advising-approve, Run, Custom run:
type the roster's file name and who approves (optionally students to approve only, or to hold),
then Submit. The run's page keeps the decision in its history (logs and an artifact), the
ledger records it as `advising approve` does, and the next nightly run sends those letters.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.approval import approve
from flows.settings import load_settings


@flow(name="advising-approve", flow_run_name="approve {roster}", log_prints=False)
def advising_approve(
    roster: str,
    approved_by: str,
    only: list[str] | None = None,
    hold: list[str] | None = None,
    input_dir: str | None = None,
    output_dir: str | None = None,
) -> dict[str, list[str]]:
    """Approve a roster's waiting letters (all, or `only` these; `hold` these instead).

    approved_by: the approver's name, kept in the ledger beside each approved letter (the
    Prefect server does not know who is at the browser).
    """
    overrides: dict[str, Path] = {}
    if input_dir:
        overrides["input_dir"] = Path(input_dir)
    if output_dir:
        overrides["output_dir"] = Path(output_dir)
    who = approved_by.strip()
    if not who:
        raise ValueError("approved_by: type your name; the ledger keeps it with the approval")
    done = approve(load_settings(**overrides), roster, only=tuple(only or ()),
                   hold=tuple(hold or ()), by=f"{who} (Prefect UI)")
    get_run_logger().info("Approved %d letter(s) of %s; held %d; %d still waiting",
                          len(done.approved), roster, len(done.held), len(done.left_waiting))
    create_markdown_artifact(
        f"**{len(done.approved)} letters of {roster} approved by {who}**; the next run sends "
        f"them.\n\nStudents approved: {', '.join(done.approved) or 'none'}\n\n"
        f"Held: {', '.join(done.held) or 'none'}\n\n"
        f"Still waiting: {', '.join(done.left_waiting) or 'none'}",
        key="advising-approval", description="What this approval did (student IDs only)")
    return {"approved": list(done.approved), "held": list(done.held),
            "waiting": list(done.left_waiting)}
