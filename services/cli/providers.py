"""``homecare providers credentials ...``: provider API credentials, through the providers
service's council-administrator operations, so the CLI never touches its tables. The CLI signs in
as ``HOMECARE_CLI_USER`` (default demo-admin, a council_admin) with the password grant of the
development-only homecare-cli client (``HOMECARE_DEMO_PASSWORD``; the local Keycloak's by default)."""

from __future__ import annotations

import os

import httpx
import typer

from services.runtime.oidc_client import TokenError, user_auth

app = typer.Typer(no_args_is_help=True, help="Providers on the framework.")
credentials = typer.Typer(
    no_args_is_help=True, help="Provider API credentials (hashed at rest; the token is shown once)."
)
app.add_typer(credentials, name="credentials")

URL = typer.Option("http://127.0.0.1:8002", envvar="PROVIDERS_URL", help="The providers service")


def _client(url: str) -> httpx.Client:
    try:
        auth = user_auth(os.environ.get("HOMECARE_CLI_USER", "demo-admin"))
    except TokenError as exc:
        raise typer.BadParameter(str(exc)) from None
    return httpx.Client(base_url=url, auth=auth, timeout=10)


def _answer(response: httpx.Response) -> dict | list:
    if response.status_code >= 400:
        typer.echo(f"refused ({response.status_code}): {response.json().get('error', response.text)}", err=True)
        raise typer.Exit(1)
    return response.json()


@credentials.command("issue")
def issue(
    provider_id: str,
    label: str = typer.Option("", help="What it is for"),
    rotate: bool = typer.Option(False, help="Revoke the provider's other credentials"),
    url: str = URL,
) -> None:
    """Issue a credential; prints the token (give it to the provider: it is not stored)."""
    with _client(url) as client:
        body = _answer(client.post(f"/providers/{provider_id}/credentials", json={"label": label, "replace": rotate}))
    typer.echo(
        f"credential {body['credential_id']} for {provider_id}"
        + (f"; revoked {', '.join(body['revoked'])}" if body["revoked"] else "")
    )
    typer.echo(body["token"])


@credentials.command("list")
def list_(provider_id: str, url: str = URL) -> None:
    with _client(url) as client:
        for c in _answer(client.get(f"/providers/{provider_id}/credentials")):
            state = (
                f"revoked {c['revoked_at']}" if c["revoked_at"] else f"live, last used {c['last_used_at'] or 'never'}"
            )
            typer.echo(f"{c['credential_id']}  {c['label'] or '-':20}  created {c['created_at']}  {state}")


@credentials.command("revoke")
def revoke(provider_id: str, credential_id: str, url: str = URL) -> None:
    with _client(url) as client:
        _answer(client.post(f"/providers/{provider_id}/credentials/{credential_id}/revoke"))
    typer.echo(f"revoked {credential_id}")
