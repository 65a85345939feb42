"""Settings, checked once at start into a frozen record; code below the edge takes parameters."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from residency_rules.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob the office or IT may turn: ADVISING_* environment variables or a .env file."""

    model_config = SettingsConfigDict(
        env_prefix="ADVISING_", env_file=".env", extra="ignore", frozen=True
    )

    input_dir: Path = Path("input")
    output_dir: Path = Path("output")
    templates_dir: Path = PROJECT_ROOT / "templates"
    # An office-edited copy of the specialty table; blank = the one shipped in residency_rules.
    specialty_table: Path | None = None

    school_name: str = "School of Medicine"
    office_name: str = "Office of Student Affairs"
    # Only these email domains get letters; blank = any (outbox only: smtp requires a list).
    allowed_email_domains: Annotated[tuple[str, ...], NoDecode] = ()

    delivery: Literal["outbox", "smtp"] = "outbox"
    smtp_host: str = ""
    smtp_port: int = Field(default=0, ge=0, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    # Name of a Prefect Secret block holding the SMTP password, used when smtp_password is blank.
    smtp_password_block: str = ""
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    mail_from: str = ""
    reply_to: str = ""
    # The office's address for the morning note after a run with news (blank = no note).
    office_email: str = ""
    send_rate_per_minute: int = Field(default=0, ge=0)  # 0 = no limit, else for all sessions
    # Sessions open at once with the relay for a large batch (one per 100 letters at most).
    smtp_connections: int = Field(default=3, ge=1, le=10)

    # The day programs start reviewing applications in this cycle (ERAS opens to programs).
    review_start: date = date(2026, 9, 23)
    # "Today" for timing rules and letter dates; blank = the real date. Tests pin it.
    today: date | None = None

    schedule_cron: str = "0 2 * * *"
    schedule_timezone: str = "America/New_York"

    # A roster larger than this is rejected unread (size guard against zip bombs).
    max_roster_mb: float = Field(default=50.0, gt=0)
    max_uncompressed_mb: float = Field(default=500.0, gt=0)
    # A file must be unchanged for this long before it is picked up (still being copied).
    quiet_seconds: float = Field(default=2.0, ge=0)

    @field_validator("allowed_email_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(d.strip().lower().lstrip("@") for d in value.split(",") if d.strip())
        return value

    @field_validator("office_email")
    @classmethod
    def _one_address(cls, value: str) -> str:
        value = value.strip()
        if value and (value.count("@") != 1 or any(c in value for c in " ,;<>")):
            raise ValueError("give one email address, e.g. advising@med.example.edu")
        return value

    @model_validator(mode="after")
    def _smtp_complete(self) -> Settings:
        if self.delivery == "smtp":
            required = (
                ("ADVISING_SMTP_HOST", self.smtp_host),
                ("ADVISING_MAIL_FROM", self.mail_from),
            )
            missing = [name for name, value in required if not value]
            if not self.allowed_email_domains:
                missing.append("ADVISING_ALLOWED_EMAIL_DOMAINS")
            if missing:
                raise ValueError(
                    "ADVISING_DELIVERY=smtp needs " + ", ".join(missing)
                    + " (for example ADVISING_ALLOWED_EMAIL_DOMAINS=school.edu); "
                    "set them in the environment or in .env, or use ADVISING_DELIVERY=outbox"
                )
        return self

    @property
    def effective_smtp_port(self) -> int:
        """Return the port to use: the setting, or the usual port for the security mode."""
        if self.smtp_port:
            return self.smtp_port
        return {"none": 25, "starttls": 587, "tls": 465}[self.smtp_security]

    def run_date(self) -> date:
        """Return the date the rules and letters treat as today."""
        return self.today or date.today()


def load_settings(**overrides: object) -> Settings:
    """Read and check the settings once, turning pydantic's report into one actionable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            name = f"ADVISING_{loc.upper()}" if loc else "settings"
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("Settings are not valid:\n  " + "\n  ".join(lines)) from None
