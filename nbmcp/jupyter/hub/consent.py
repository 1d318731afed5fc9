"""Signing the person in through the Hub's own OAuth, and the consent page.

The service is an OAuth client of the Hub (``HubOAuth``): /consent without a session sends the browser
to the Hub's login and authorize pages, /oauth_callback learns who signed in, and /consent then shows
what the MCP client asks for. Only a POST from the same browser session, carrying the page's one-time
form token, approves.
"""

from __future__ import annotations

import html
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuth
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from tornado.httputil import url_concat

from .cimd import is_cimd_client_id
from .grants import Grants, Pending
from .scopes import READ, SCOPES

__all__ = ["ConsentPages", "page"]

SESSION_COOKIE = "nbmcp-oauth-session"
SESSION_TTL = 3600
LOGIN_COOKIE = "nbmcp-oauth-login"
LOGIN_TTL = 600


@dataclass
class _Login:
    next_url: str
    code_verifier: str
    expires_at: float


class ConsentPages:
    """/consent (GET: sign in, then the page; POST: allow or deny) and /oauth_callback."""

    def __init__(self, grants: Grants, hub_auth: HubOAuth, prefix: str, secure: bool) -> None:
        self.grants = grants
        self.hub_auth = hub_auth
        self.prefix = prefix  # the service's path, ends with "/"
        self.secure = secure
        self.sessions: dict[str, tuple[str, float]] = {}  # session id -> (user, expires)
        self.logins: dict[str, _Login] = {}  # Hub OAuth state -> where to go back

    def routes(self) -> list[Route]:
        return [
            Route("/consent", self.consent, methods=["GET", "POST"]),
            Route("/oauth_callback", self.callback, methods=["GET"]),
        ]

    def signed_in_user(self, request: Request) -> str | None:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if session is None or session[1] < time.time():
            return None
        return session[0]

    async def consent(self, request: Request) -> Response:
        request_id = request.query_params.get("request", "")
        pending = self.grants.pending.get(request_id)
        if pending is None or pending.expires_at < time.time():
            return page(
                "This sign-in request has expired or is unknown",
                "<p>Go back to your assistant and connect again.</p>",
                status=400,
            )
        user = self.signed_in_user(request)
        if user is None:
            return self.sign_in(_path_and_query(request))
        wanted = pending.params.resource
        # the one URL (``route``) opens whoever signs in's own server: any user may be asked
        one_url = wanted is not None and wanted.rstrip("/") == self.grants.one_url
        if wanted is not None and not one_url and self.grants.resource_user(wanted) != user:
            self.grants.pending.pop(request_id, None)
            owner = self.grants.resource_user(wanted)
            return page(
                "This is not your server",
                f"<p>You are signed in as <b>{html.escape(user)}</b>, but the assistant asked for access to "
                f"<b>{html.escape(owner or wanted)}</b>'s server. Connect it to "
                f"<code>{html.escape(self.grants.resource_of(user))}/mcp</code> instead, or sign in as that user.</p>",
                status=403,
            )
        if request.method == "GET":
            return page("Allow an assistant to use your notebooks?", self._form(pending, request_id, user))
        form = await request.form()
        if not secrets.compare_digest(str(form.get("csrf", "")), pending.csrf):
            return page("This form has expired", "<p>Reload the page and answer again.</p>", status=403)
        del self.grants.pending[request_id]
        if form.get("decision") == "allow":
            asked = pending.params.scopes or [READ]
            # the person may allow less than asked (read without execute), never more
            allowed = [s for s in asked if s in form.getlist("scope")] or [READ]
            return RedirectResponse(self.grants.approve(pending, user, allowed), status_code=303)
        return RedirectResponse(self.grants.deny(pending), status_code=303)

    def _form(self, pending: Pending, request_id: str, user: str) -> str:
        client = pending.client
        name = html.escape(client.client_name or client.client_id or "an unnamed client")
        if client.client_id and is_cimd_client_id(client.client_id):
            # the name is the document's say-so; its host is where it really comes from
            name += f" (from <code>{html.escape(urlsplit(client.client_id).netloc)}</code>)"
        redirect = html.escape(str(pending.params.redirect_uri))
        scopes = pending.params.scopes or [READ]
        items = "".join(
            f'<li><label><input type="checkbox" name="scope" value="{html.escape(s)}" checked'
            f"{' disabled' if s == READ else ''}> <code>{html.escape(s)}</code>: {html.escape(SCOPES[s])}</label>"
            + (f'<input type="hidden" name="scope" value="{READ}">' if s == READ else "")
            + "</li>"
            for s in scopes
        )
        server = self.grants.resource_of(user) + "/mcp"
        if pending.params.resource is not None and pending.params.resource.rstrip("/") == self.grants.one_url:
            server = f"{server}, through {self.grants.one_url}"
        server = html.escape(server)
        return (
            f"<p>Signed in as <b>{html.escape(user)}</b>.</p>"
            f"<p><b>{name}</b> asks to use <b>your</b> Jupyter server (<code>{server}</code>). Untick what it "
            f"should not do. It may:</p>"
            f'<form method="post" action="{html.escape(self.prefix)}consent?request={html.escape(request_id)}">'
            f"<ul>{items}</ul>"
            f"<p>If you allow it, your browser takes a one-time code to <code>{redirect}</code>. Access lasts "
            f"{self.grants.access_ttl // 60} minutes at a time and renews until you revoke it at "
            f'<a href="{html.escape(self.prefix)}grants">{html.escape(self.prefix)}grants</a>.</p>'
            f'<input type="hidden" name="csrf" value="{html.escape(pending.csrf)}">'
            '<button name="decision" value="allow" type="submit">Allow</button> '
            '<button name="decision" value="deny" type="submit">Deny</button></form>'
        )

    def sign_in(self, next_url: str) -> Response:
        state = secrets.token_urlsafe(24)
        verifier, challenge, method = self.hub_auth.generate_pkce_code_challenge()
        self._forget_old_logins()
        self.logins[state] = _Login(next_url, verifier, time.time() + LOGIN_TTL)
        url = url_concat(
            self.hub_auth.login_url, {"state": state, "code_challenge": challenge, "code_challenge_method": method}
        )
        response = RedirectResponse(url, status_code=302)
        # binds the sign-in to this browser: a callback URL someone else started cannot sign it in as them
        response.set_cookie(
            LOGIN_COOKIE, state, max_age=LOGIN_TTL, path=self.prefix, httponly=True, secure=self.secure, samesite="lax"
        )
        return response

    async def callback(self, request: Request) -> Response:
        state = request.query_params.get("state", "")
        login = self.logins.pop(state, None)
        code = request.query_params.get("code")
        same_browser = secrets.compare_digest(request.cookies.get(LOGIN_COOKIE, ""), state)
        if login is None or login.expires_at < time.time() or not code or not same_browser:
            return page("Sign-in did not complete", "<p>Go back to your assistant and connect again.</p>", 400)
        token = await self.hub_auth.token_for_code(code, code_verifier=login.code_verifier, sync=False)
        model = await self.hub_auth.user_for_token(token, use_cache=False, sync=False)
        if not model or model.get("kind", "user") != "user":
            return page("Sign-in did not complete", "<p>The Hub did not say who you are.</p>", 403)
        session = secrets.token_urlsafe(32)
        self.sessions[session] = (model["name"], time.time() + SESSION_TTL)
        response = RedirectResponse(login.next_url, status_code=302)
        response.delete_cookie(LOGIN_COOKIE, path=self.prefix)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=SESSION_TTL,
            path=self.prefix,
            httponly=True,
            secure=self.secure,
            samesite="lax",
        )
        return response

    def _forget_old_logins(self) -> None:
        now = time.time()
        for state in [s for s, login in self.logins.items() if login.expires_at < now]:
            del self.logins[state]
        for session in [s for s, (_, expires) in self.sessions.items() if expires < now]:
            del self.sessions[session]


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:40em;margin:2em auto'><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>",
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "frame-ancestors 'none'",
        },
    )


def _path_and_query(request: Request) -> str:
    # not the full URL: behind a TLS-terminating proxy the service sees http://
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")
