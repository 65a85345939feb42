"""Settings, checked once at start into a frozen record; code below the edge takes parameters."""

from __future__ import annotations

import difflib
import functools
import importlib.util
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flows.errors import SettingsError
from residency_rules import calendar
from residency_rules.calendar import Cycle
from residency_rules.rules import cycle_of
from residency_rules.schema import FIELDS, header_key, is_address, is_domain, parse_sender
from residency_rules.specialties import SpecialtyTable, load_default_table, parse_table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A built wheel carries the templates inside the package (setup.py copies them there); a
# checkout reads the top-level templates/ folder, their one source.
_PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "letters" / "templates"
DEFAULT_TEMPLATES = (
    _PACKAGED_TEMPLATES if _PACKAGED_TEMPLATES.is_dir() else PROJECT_ROOT / "templates"
)


class Settings(BaseSettings):
    """Every knob the office or IT may turn: ADVISING_* environment variables or a .env file."""

    model_config = SettingsConfigDict(
        env_prefix="ADVISING_", env_file=".env", extra="ignore", frozen=True
    )

    input_dir: Path = Path("input")
    output_dir: Path = Path("output")
    templates_dir: Path = DEFAULT_TEMPLATES
    # An office-edited copy of the specialty table; blank = the one shipped in residency_rules.
    specialty_table: Path | None = None
    # The office's own headers, once (#25): a TOML file of field = "Our header" lines.
    column_map: Path | None = None

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

    # The cycle's dates (docs/rules.md, The application calendar); blank = the specialty
    # table's [calendar] (defaults for the 2027 Main Match, for the office to confirm each year).
    review_start: date | None = None  # programs start reviewing applications (ERAS)
    rank_deadline: date | None = None  # the NRMP rank order list deadline
    match_day: date | None = None
    season_opens: date | None = None  # ERAS opens: applicants build their application
    submissions_open: date | None = None  # ERAS takes submissions
    ranking_opens: date | None = None  # NRMP: rank order lists can be entered
    match_week: date | None = None  # NRMP: Monday of Match Week (SOAP)
    # After Match Day, a student whose Match result the roster does not give: "letter" (a
    # short letter with both branches) or "hold" (no letter until the result is entered).
    after_match: Literal["letter", "hold"] = "letter"
    # Who approves before a letter goes out (#24): "first" (a roster's letters wait until the
    # office approved that roster once), "always" (every new or changed letter waits), "off".
    # Blank: "first" with smtp, "off" with the outbox (nothing is sent from it).
    approval: Literal["", "first", "always", "off"] = ""
    # The date letters are written for: the plan's phase and every date in it follow from it.
    # Blank = the real date. Tests pin it.
    today: date | None = None

    # How long `advising serve` (and deploy) wait for the Prefect server to answer at start.
    server_wait_seconds: float = Field(default=120.0, ge=0)
    schedule_cron: str = "0 2 * * *"
    schedule_timezone: str = "America/New_York"
    # A consortium: the TOML file listing every office (`advising run/deploy --offices`).
    offices_file: Path | None = None

    # A roster larger than this is rejected unread (size guard against zip bombs).
    max_roster_mb: float = Field(default=50.0, gt=0)
    max_uncompressed_mb: float = Field(default=500.0, gt=0)
    # A file must be unchanged for this long before it is picked up (still being copied).
    quiet_seconds: float = Field(default=2.0, ge=0)
    # Students rendered and delivered per batch: a rendered letter takes ~12 KB of memory, so
    # 5,000 at once is ~60 MB; a roster of more than one batch is rendered in two processes.
    letter_batch: int = Field(default=5000, ge=1)

    # Days a processed roster is kept in input/processed/<date>/ before a run deletes it; blank
    # = kept for ever. Rosters whose letters wait for approval, each roster's last run and the
    # newest copy of each roster are kept whatever their age (approve and resend read them).
    keep_processed_days: int | None = Field(default=None, ge=1)

    @field_validator("keep_processed_days", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # ADVISING_KEEP_PROCESSED_DAYS= (blank, as in a .env template) means keep for ever.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_email_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        # A comma-separated variable, or a list (an office in the offices file): one spelling.
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple) and all(isinstance(d, str) for d in value):
            return tuple(d.strip().lower().lstrip("@") for d in value if d.strip())
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

    def approval_mode(self) -> Literal["first", "always", "off"]:
        """Return ADVISING_APPROVAL, its blank read as "first" with smtp, "off" with the outbox."""
        if self.approval:
            return self.approval
        return "first" if self.delivery == "smtp" else "off"

    def run_date(self) -> date:
        """Return the date the rules and letters treat as today."""
        return self.today or date.today()

    def cycle(self, table: SpecialtyTable) -> Cycle:
        """Return the cycle letters are written for: the table's, with these settings' dates."""
        base = cycle_of(table)
        dates = {key: getattr(self, key) for key in _CYCLE_SETTINGS}
        given_dates = {key: value for key, value in dates.items() if value is not None}
        if not given_dates:
            return base
        given = replace(base, **given_dates)
        where = "settings " + " / ".join(f"ADVISING_{key.upper()}" for key in _CYCLE_SETTINGS)
        return calendar.check(given, where)


# The cycle's dates a setting may give (each overrides [calendar] in the specialty table).
_CYCLE_SETTINGS = ("season_opens", "submissions_open", "review_start", "ranking_opens",
                   "rank_deadline", "match_week", "match_day")


def load_settings(**overrides: object) -> Settings:
    """Read and check the settings once, turning pydantic's report into one actionable message."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = _describe_errors(exc, lambda key: f"ADVISING_{key.upper()}" if key else "settings")
        raise SettingsError("Settings are not valid:\n  " + "\n  ".join(lines)) from None
    check_settings(settings)
    return settings


def unknown_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> list[str]:
    """Name each ADVISING_* variable this version does not know, with the likeliest meant one.

    A misspelt setting (ADVISING_DELIVER for ADVISING_DELIVERY) is otherwise silently ignored
    and the default applies; the run goes on, the console says it once. Without arguments:
    the environment and the .env file Settings reads; otherwise the names given (and env_file).
    Names are compared ignoring case, as Settings reads them. The test suite's own
    ADVISING_TEST_* variables are not settings and never warn.
    """
    if environ is None:
        environ = os.environ
        env_file = Path(str(Settings.model_config.get("env_file") or ".env"))
    sources = [(key, "") for key in environ]
    if env_file is not None and env_file.is_file():
        from dotenv import dotenv_values  # pydantic-settings reads .env with it

        try:
            sources += [(key, f" (in {env_file})") for key in dotenv_values(env_file)]
        except (OSError, UnicodeDecodeError):
            pass  # Settings reports an unreadable .env itself
    known = set(Settings.model_fields)
    found = []
    for key, where in sorted(set(sources)):
        name = key.upper()
        if not name.startswith("ADVISING_") or name.startswith("ADVISING_TEST_"):
            continue
        field = name.removeprefix("ADVISING_").lower()
        if field in known:
            continue
        # Compared without the prefix every name shares, which would make anything "close".
        near = difflib.get_close_matches(field, sorted(known), n=1, cutoff=0.6)
        found.append(f"{key}{where} is not a setting of this version and is ignored"
                      + (f"; did you mean ADVISING_{near[0].upper()}?" if near
                         else " (`advising docs readme` lists them)"))
    return found


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_host(host: str) -> bool:
    if not host or any(c.isspace() or c in "/@" for c in host):
        return False
    if ":" in host:  # only an IPv6 literal may hold a colon; "relay:25" puts the port here
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
    return True


@functools.cache
def _prefect_croniter() -> Any:
    """Return the cron module Prefect's schedules use (its vendored croniter), or None.

    Loaded from its file, without importing Prefect: Prefect reads its settings when imported,
    and `advising run` sets them (the temporary server) after the settings are checked. The
    module needs only pytz and dateutil, both Prefect's own dependencies.
    """
    spec = importlib.util.find_spec("prefect")  # finds the package; does not import it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "_vendor" / "croniter" / "croniter.py"
        module_spec = importlib.util.spec_from_file_location("_advising_croniter", path)
        if path.is_file() and module_spec is not None and module_spec.loader is not None:
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
    return None


def schedule_problems(cron: str, timezone: str, now: datetime | None = None) -> list[str]:
    """Say what is wrong with a schedule, as Prefect would judge it when it registers it.

    Prefect's own test (croniter.is_valid, no random or hashed fields, an IANA time zone),
    plus one Prefect does not make: a schedule that never comes (31 February). Empty when
    Prefect's parser cannot be found (a future Prefect): serve and deploy then report it.
    """
    problems = []
    cron_module = _prefect_croniter()
    example = "'0 2 * * *' (every night at 02:00) or '30 1 * * 1-5' (01:30, Monday to Friday)"
    if cron_module is not None:
        croniter = cron_module.croniter
        fields = cron.split()
        if not croniter.is_valid(cron) or any(f.casefold() in ("r", "h") for f in fields):
            problems.append(
                f"ADVISING_SCHEDULE_CRON: {cron!r} is not a cron schedule; give five fields, "
                f"minute hour day-of-month month day-of-week, e.g. {example}"
            )
        else:
            try:
                croniter(cron, now or datetime.now()).get_next(datetime)
            except cron_module.CroniterError:  # it found no next time
                problems.append(
                    f"ADVISING_SCHEDULE_CRON: {cron!r} never comes (no such date); give one "
                    f"that does, e.g. {example}"
                )
    zones = _time_zones()
    if zones and timezone not in zones:
        by_folded = {zone.casefold(): zone for zone in zones}
        folded = timezone.strip().replace(" ", "_").casefold()
        near = ([by_folded[folded]] if folded in by_folded else
                [by_folded[z] for z in difflib.get_close_matches(folded, sorted(by_folded), n=1)])
        problems.append(
            f"ADVISING_SCHEDULE_TIMEZONE: {timezone!r} is not a time zone; give its IANA name, "
            "e.g. America/New_York or Europe/Paris"
            + (f" (did you mean {near[0]}?)" if near else "")
        )
    return problems


@functools.cache
def _time_zones() -> frozenset[str]:
    """The names Prefect accepts for a schedule's time zone: zoneinfo's (pandas ships tzdata)."""
    return frozenset(available_timezones())


def check_settings(settings: Settings) -> None:
    """Check what pydantic's field types cannot: addresses, domains, the relay's login, the
    nightly schedule.

    Called by load_settings, the one gate every command and the flow go through, so a wrong
    setting stops a run at start with a SettingsError naming it and how to fix it.
    """
    problems = schedule_problems(settings.schedule_cron, settings.schedule_timezone)
    if settings.column_map is not None:
        problems.extend(column_map_problems(settings.column_map))
    if settings.mail_from and parse_sender(settings.mail_from) is None:
        problems.append(
            "ADVISING_MAIL_FROM: not one email address; write it as advising@school.edu or "
            '"Office of Student Affairs <advising@school.edu>"'
        )
    if settings.reply_to and not is_address(settings.reply_to.strip()):
        problems.append(
            "ADVISING_REPLY_TO: not one email address; write it as advising@school.edu, "
            "or leave it blank"
        )
    for domain in settings.allowed_email_domains:
        if not is_domain(domain):
            problems.append(
                f"ADVISING_ALLOWED_EMAIL_DOMAINS: {domain!r} is not a domain; list domains "
                "separated by commas, e.g. school.edu,med.school.edu"
            )
    if settings.delivery == "smtp":
        host = settings.smtp_host.strip()
        if not _valid_host(host):
            problems.append(
                "ADVISING_SMTP_HOST: give the relay's host name only, e.g. smtp.school.edu "
                "(the port goes in ADVISING_SMTP_PORT)"
            )
        has_password = bool(
            settings.smtp_password.get_secret_value() or settings.smtp_password_block
        )
        if settings.smtp_username and not has_password:
            problems.append(
                "ADVISING_SMTP_USERNAME is set but there is no password: set "
                "ADVISING_SMTP_PASSWORD, or ADVISING_SMTP_PASSWORD_BLOCK to the name of a "
                "Prefect Secret block"
            )
        if has_password and not settings.smtp_username:
            problems.append(
                "a password is set but ADVISING_SMTP_USERNAME is blank: set the user name "
                "the relay expects, or remove the password"
            )
        if settings.smtp_username and settings.smtp_security == "none" and not _is_loopback(host):
            problems.append(
                "ADVISING_SMTP_SECURITY=none would send the SMTP password unencrypted to "
                f"{host}: use starttls (port 587) or tls (port 465)"
            )
    if problems:
        raise SettingsError("Settings are not valid:\n  " + "\n  ".join(problems))


# --- A consortium: the offices file (DESIGN.md section 6, issue #18) ---------------------------

_OFFICE_NAME = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")
# Settings that are folders: a relative path in the file is read from the file's own folder.
_PATH_KEYS = ("input_dir", "output_dir", "templates_dir", "specialty_table", "column_map")
# Secrets stay out of a file that is copied to every worker and kept in version control.
_SECRET_KEYS = {
    "smtp_password": "smtp_password_block (the name of a Prefect Secret block holding it)",
}


@dataclass(frozen=True)
class Office:
    """One school of a consortium: its name, its checked settings and what the file set."""

    name: str
    settings: Settings
    # The settings the file gives for this office, JSON-ready: what a deployment passes to the
    # flow as its parameters (the flow checks them again through load_settings).
    overrides: dict[str, Any]


def load_offices(path: Path) -> list[Office]:
    """Read and check the offices file: every office's settings through the one Settings gate.

    Errors name the file, the office and the key: a consortium's file is edited by hand and
    deployed to many machines, so it is checked whole before anything is registered or run.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(
            f"{path}: no such offices file; give its path with --offices or ADVISING_OFFICES_FILE"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read the offices file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc}); fix the file and try again") from None
    extra = sorted(set(data) - {"office"})
    if extra:
        raise SettingsError(
            f"{path}: unknown table or key {', '.join(extra)}; the file holds only "
            "[[office]] tables, one per school"
        )
    entries = data.get("office")
    if not isinstance(entries, list) or not entries:
        raise SettingsError(
            f"{path}: no office; add one [[office]] table per school with name, input_dir "
            "and output_dir"
        )
    base = path.resolve().parent
    offices = [_load_office(path, base, i, entry) for i, entry in enumerate(entries, 1)]
    _check_distinct(path, offices)
    return offices


def _load_office(path: Path, base: Path, index: int, entry: object) -> Office:
    """Check one [[office]] table and return it with its settings."""
    where = f"{path}: office #{index}"
    if not isinstance(entry, dict):
        raise SettingsError(f"{where}: write it as an [[office]] table")
    name = entry.get("name")
    if not isinstance(name, str) or not _OFFICE_NAME.fullmatch(name):
        raise SettingsError(
            f"{where}: name {name!r} must be letters, digits and single dashes "
            "(it names the office's Prefect deployment), e.g. name = \"north-campus\""
        )
    where = f"{path}: office {name!r}"
    known = set(Settings.model_fields)
    for key in entry:
        if key == "offices_file":
            raise SettingsError(f"{where}: offices_file names this file; remove it from the office")
        if key in _SECRET_KEYS:
            raise SettingsError(
                f"{where}: {key} must not be in the offices file (it is copied to every worker); "
                f"use {_SECRET_KEYS[key]}"
            )
        if key != "name" and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(f"{where}: unknown key {key!r}{hint}")
    for key in ("input_dir", "output_dir"):
        if key not in entry:
            raise SettingsError(f"{where}: {key} is missing; every office has its own folders")
    values = {k: v for k, v in entry.items() if k != "name"}
    for key in _PATH_KEYS:
        if isinstance(values.get(key), str):
            values[key] = str(base / Path(values[key]).expanduser())
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        lines = _describe_errors(exc, lambda key: key)
        raise SettingsError(f"{where}: " + "; ".join(lines)) from None
    try:
        check_settings(settings)
    except SettingsError as exc:
        raise SettingsError(f"{where}: {exc}") from None
    overrides = settings.model_dump(mode="json", include=set(values))
    return Office(name, settings, overrides)


def _check_distinct(path: Path, offices: list[Office]) -> None:
    """Refuse two offices with one name, or one folder (a shared folder mixes two schools)."""
    seen: dict[str, str] = {}
    for office in offices:
        key = office.name.lower()
        if key in seen:
            raise SettingsError(
                f"{path}: office {office.name!r}: name is already used by office {seen[key]!r}; "
                "each office needs its own name"
            )
        seen[key] = office.name
    folders: list[tuple[Path, str, str]] = []
    for office in offices:
        for key in ("input_dir", "output_dir"):
            folder = Path(os.path.abspath(getattr(office.settings, key)))
            for other, other_office, other_key in folders:
                if other_office == office.name:
                    continue
                if folder == other or folder in other.parents or other in folder.parents:
                    raise SettingsError(
                        f"{path}: office {office.name!r}: {key} {folder} is shared with office "
                        f"{other_office!r} ({other_key} {other}); every office needs folders of "
                        "its own, so its ledger, locks and letters stay its own"
                    )
            folders.append((folder, office.name, key))


def _describe_errors(exc: ValidationError, name: Callable[[str], str]) -> list[str]:
    """Turn pydantic's report into one line per setting, named as the reader wrote it."""
    lines = []
    for err in exc.errors():
        label = name(".".join(str(p) for p in err["loc"]))
        message = str(err["msg"]).removeprefix("Value error, ")
        if str(err["type"]).startswith(("date", "datetime")):
            # Pydantic's "invalid character in year" does not say which form it wants.
            message = (f"{err.get('input')!r} is not a date; write it as YYYY-MM-DD, "
                       "e.g. 2026-09-23 (blank for the default)")
        lines.append(f"{label}: {message}" if label else message)
    return lines


def folder_problems(settings: Settings) -> list[str]:
    """Check the folders a run reads and writes, before anything is touched.

    A missing input folder (an unmounted share) would otherwise be an empty night that
    "succeeds" for ever; a missing output folder or templates folder fails only after intake.
    """
    problems = []
    for label, folder, fix in (
        ("ADVISING_INPUT_DIR", settings.input_dir,
         "create it (mkdir), mount the share, or point the setting at the drop folder"),
        ("ADVISING_OUTPUT_DIR", settings.output_dir,
         "create it (mkdir) or point the setting at the results folder"),
        ("ADVISING_TEMPLATES_DIR", settings.templates_dir,
         "unset it to use the letter templates shipped with the product, or point it at a "
         "folder holding letter.html.j2, letter.txt.j2, subject.txt.j2 and letter.css"),
    ):
        if not folder.is_dir():
            problems.append(f"{label}: the folder {folder} does not exist; {fix}")
    missing = [name for name in ("letter.html.j2", "letter.txt.j2", "subject.txt.j2", "letter.css")
               if settings.templates_dir.is_dir() and not (settings.templates_dir / name).is_file()]
    if missing:
        problems.append(f"ADVISING_TEMPLATES_DIR: {settings.templates_dir} has no "
                        f"{', '.join(missing)}; copy them from the shipped templates folder or "
                        "unset the setting")
    return problems


def check_folders(settings: Settings) -> None:
    """Raise one SettingsError naming every missing folder (exit 2, nothing processed)."""
    problems = folder_problems(settings)
    if problems:
        raise SettingsError("Settings are not valid:\n  " + "\n  ".join(problems))


def _read_column_map(path: Path) -> tuple[dict[str, str], list[str]]:
    """Read ADVISING_COLUMN_MAP: field -> the office's header, and what is wrong with it."""
    label = f"ADVISING_COLUMN_MAP ({path})"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, [f"{label}: cannot be read ({exc.strerror}); fix the path or unset it"]
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return {}, [f"{label}: not a TOML file ({exc}); write one line per column, e.g. "
                    'research_count = "Pubs/Posters"']
    known = {header_key(k): f.name for f in FIELDS for k in (f.name, f.label)}
    found: dict[str, str] = {}
    problems: list[str] = []
    for key, value in doc.items():
        name = known.get(header_key(key))
        if name is None:
            close = difflib.get_close_matches(key, [f.name for f in FIELDS], n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else (
                "the fields are " + ", ".join(f.name for f in FIELDS))
            problems.append(f"{label}: {key!r} is not a roster field; {hint}")
        elif not isinstance(value, str) or not header_key(value):
            problems.append(f'{label}: {key} needs your header in quotes, e.g. {key} = "..."')
        elif header_key(value) in {header_key(v) for v in found.values()}:
            problems.append(f"{label}: the header {value!r} is given for two fields; "
                            "give each field its own column")
        else:
            found[name] = " ".join(value.split())
    return found, problems


def column_map_problems(path: Path) -> list[str]:
    """Check the office's column map at start, like every other setting."""
    return _read_column_map(path)[1]


def load_column_map(settings: Settings) -> dict[str, str]:
    """Return the office's column map (field -> header as written), {} when none is set."""
    if settings.column_map is None:
        return {}
    found, problems = _read_column_map(settings.column_map)
    if problems:
        raise SettingsError("Settings are not valid:\n  " + "\n  ".join(problems))
    return found


def table_notice(table: SpecialtyTable, settings: Settings) -> str | None:
    """Say what an office's older copy of the data file lacked and now takes from the package."""
    if not table.filled or settings.specialty_table is None:
        return None
    return (
        f"ADVISING_SPECIALTY_TABLE ({settings.specialty_table}) is a copy from an earlier "
        f"version: it has no {', '.join(table.filled)}; the packaged ones are used. To change "
        "them, copy them from `advising specialties --data-file` into your file"
    )


def load_table(settings: Settings) -> SpecialtyTable:
    """Load the office's edited specialty table when configured, else the packaged one."""
    if settings.specialty_table is None:
        return load_default_table()
    path = settings.specialty_table
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(
            f"ADVISING_SPECIALTY_TABLE: cannot read {path} ({exc.strerror}); "
            "fix the path or unset it to use the table shipped with the product"
        ) from None
    return parse_table(text, str(path))
