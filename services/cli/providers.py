"""``homecare providers credentials ...``: provider API credentials, through the providers
service's council-administrator operations, so the CLI never touches its tables. The CLI signs in
as ``HOMECARE_CLI_USER`` (default demo-admin, a council_admin) with the password grant of the
development-only homecare-cli client (``HOMECARE_DEMO_PASSWORD``; the local Keycloak's by default)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import typer

from services.cli import output
from services.runtime import clock
from services.runtime.oidc_client import TokenError, user_auth
from services.runtime.ports import local_url, local_url_shown

app = typer.Typer(no_args_is_help=True, help="Providers on the framework.")
credentials = typer.Typer(
    no_args_is_help=True, help="Provider API credentials (hashed at rest; the token is shown once)."
)
app.add_typer(credentials, name="credentials")

URL = typer.Option(
    default_factory=partial(local_url, "providers"),
    show_default=local_url_shown("providers"),
    envvar="PROVIDERS_URL",
    help="The providers service",
)


@contextlib.contextmanager
def _client(url: str) -> Iterator[httpx.Client]:
    """A client of the providers service at ``url``, signed in; a service that does not answer, or an
    identity provider that gives no token, ends the command with one line saying so (exit 1), not a
    traceback (found by a new user)."""
    try:
        auth = user_auth(os.environ.get("HOMECARE_CLI_USER", "demo-admin"))
    except TokenError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        with httpx.Client(base_url=url, auth=auth, timeout=10) as client:
            yield client
    except TokenError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        raise output.service_unreachable("providers", url, exc) from None


def _accepted(response: httpx.Response) -> httpx.Response:
    """The response when the service accepted the request; else its refusal printed and exit 1."""
    if response.status_code >= 400:
        typer.echo(f"refused ({response.status_code}): {response.json().get('error', response.text)}", err=True)
        raise typer.Exit(1)
    return response


@credentials.command("issue")
def issue(
    provider_id: str,
    label: str = typer.Option("", help="What it is for"),
    rotate: bool = typer.Option(False, help="Revoke the provider's other credentials"),
    url: str = URL,
) -> None:
    """Issue a credential; prints the token (give it to the provider: it is not stored)."""
    with _client(url) as client:
        response = client.post(f"/providers/{provider_id}/credentials", json={"label": label, "replace": rotate})
        body: dict[str, Any] = _accepted(response).json()
    typer.echo(
        f"credential {body['credential_id']} for {provider_id}"
        + (f"; revoked {', '.join(body['revoked'])}" if body["revoked"] else "")
    )
    typer.echo(body["token"])


@credentials.command("list")
def list_(
    provider_id: str,
    url: str = URL,
    as_json: bool = typer.Option(False, "--json", help="JSON only, instead of the table"),
) -> None:
    """A provider's credentials: id, label, when created, and live (last used) or revoked."""
    with _client(url) as client:
        listed: list[dict[str, Any]] = _accepted(client.get(f"/providers/{provider_id}/credentials")).json()
    if as_json:
        output.echo_json(listed)
        return
    output.echo(render_credentials(provider_id, list(listed), output.width()))


def render_credentials(provider_id: str, listed: list[dict[str, Any]], room: int) -> str:
    """The credentials as the providers service lists them, as text at most ``room`` characters wide."""
    Col = output.Column
    rows = [
        (
            c["credential_id"],
            c["label"] or "-",
            clock.format_uk(c["created_at"]),
            f"revoked {clock.format_uk(c['revoked_at'])}"
            if c["revoked_at"]
            else f"live, last used {clock.format_uk(c['last_used_at'], missing='never')}",
        )
        for c in listed
    ]
    return output.table(
        [Col("credential"), Col("label", wrap=True), Col("created"), Col("state", wrap=True)],
        rows,
        title=f"credentials of {provider_id}",
        room=room,
    )


@credentials.command("revoke")
def revoke(provider_id: str, credential_id: str, url: str = URL) -> None:
    with _client(url) as client:
        _accepted(client.post(f"/providers/{provider_id}/credentials/{credential_id}/revoke"))
    typer.echo(f"revoked {credential_id}")


@app.command("import-cqc")
def import_cqc(
    file: typer.FileBinaryRead = typer.Argument(..., help="The CQC care directory CSV ('-' for standard input)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would change; change nothing"),
    url: str = URL,
    as_json: bool = typer.Option(False, "--json", help="The report as JSON only"),
) -> None:
    """Import CQC ratings from the CQC's care directory CSV (decision 0104): providers are matched by
    CQC location id. All or nothing: exit 1, with the refused rows listed, when any row is refused.
    Signs in as HOMECARE_CLI_USER (a contracts_quality user, e.g. demo-quality)."""
    data = file.read()
    name = os.path.basename(getattr(file, "name", "") or "")[:200]
    with _client(url) as client:
        response = client.post(
            "/quality/cqc-imports",
            content=data,
            params={"dry_run": str(dry_run).lower(), "file_name": name},
            headers={"Content-Type": "text/csv"},
            timeout=120,
        )
        report: dict[str, Any] = _accepted(response).json()
    if as_json:
        output.echo_json(report)
    else:
        output.echo(render_cqc_import(report))
    if report["refused"]:
        raise typer.Exit(1)


def render_cqc_import(report: dict[str, Any]) -> str:
    """A CQC import's report as text: what changed (or would), what was refused and why."""
    verb = "changed" if report["applied"] else "would change (nothing was changed)"
    lines = [
        f"CQC import {report['import_id']}: {report['rows']} rows read, {len(report['changed'])} providers {verb}, "
        f"{len(report['unchanged'])} unchanged, {report['not_on_the_framework']} locations not on the framework, "
        f"{report.get('refused_rows', len(report['refused']))} rows refused."
    ]
    for c in report["changed"]:
        lines.append(
            f"  {c['provider_id']} ({c['cqc_location_id']}): {c['cqc_rating_was']} -> {c['cqc_rating']} "
            f"(published {c['cqc_inspected_on'] or 'no date'}), line {c['line']}"
        )
    for r in report["refused"]:
        lines.append(f"  refused line {r['line']} ({r['cqc_location_id'] or 'no id'}): {r['field']}: {r['problem']}")
    return "\n".join(lines)
