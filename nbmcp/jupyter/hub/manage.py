"""/grants: a person sees which assistants they allowed, and revokes any of them.

Revoking ends the grant's refresh tokens at once; its access tokens are refused by the user's server as
soon as it next reads the revoked grants (within seconds, see ``resource``).
"""

from __future__ import annotations

import html
import secrets
import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .consent import ConsentPages, page
from .grants import Grants

__all__ = ["GrantsPage"]


class GrantsPage:
    def __init__(self, grants: Grants, consent: ConsentPages) -> None:
        self.grants = grants
        self.consent = consent
        self.csrf: dict[str, str] = {}  # user -> form token of the page last shown to them

    def routes(self) -> list[Route]:
        return [Route("/grants", self.handle, methods=["GET", "POST"])]

    async def handle(self, request: Request) -> Response:
        user = self.consent.signed_in_user(request)
        if user is None:
            return self.consent.sign_in(request.url.path)
        if request.method == "POST":
            form = await request.form()
            expected = self.csrf.get(user, "")
            if not expected or not secrets.compare_digest(str(form.get("csrf", "")), expected):
                return page("This form has expired", "<p>Reload the page and try again.</p>", status=403)
            grant = self.grants.grants.get(str(form.get("grant", "")))
            if grant is not None and grant.user == user:  # only one's own
                self.grants.revoke_grant(str(form.get("grant")))
            return RedirectResponse(request.url.path, status_code=303)
        token = self.csrf.setdefault(user, secrets.token_urlsafe(24))
        rows = []
        for grant_id, grant in self.grants.grants.items():
            if grant.user != user or grant.revoked:
                continue
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(grant.created))
            rows.append(
                f"<tr><td>{html.escape(grant.client_name)}</td><td>{html.escape(' '.join(grant.scopes))}</td>"
                f"<td>{when}</td><td><form method='post' action='{html.escape(request.url.path)}'>"
                f"<input type='hidden' name='csrf' value='{html.escape(token)}'>"
                f"<input type='hidden' name='grant' value='{html.escape(grant_id)}'>"
                "<button type='submit'>Revoke</button></form></td></tr>"
            )
        table = (
            "<table><tr><th>Assistant</th><th>May</th><th>Allowed</th><th></th></tr>" + "".join(rows) + "</table>"
            if rows
            else "<p>No assistant has access to your server.</p>"
        )
        return page(f"Assistants with access to {user}'s server", table)
