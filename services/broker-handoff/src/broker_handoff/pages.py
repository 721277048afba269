"""The pages a person meets in the browser: consent, and how the handoff ended. Pure HTML, no IO.

Every value is escaped; nothing a request carries (the provider's `error`, a state) is echoed
except through a fixed table of messages. No scripts, no external resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

CALLBACK_PATH = "/v1/broker/alpaca/callback"
CONSENT_PATH = "/v1/broker/alpaca/consent"
RETRY_PATH = "/v1/broker/alpaca/retry"

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1b1b1b}h1{font-size:1.5rem}.warn{background:#fff4e5;padding:.75rem;"
    "border-left:4px solid #e69500}button{font-size:1rem;padding:.5rem 1.25rem;margin-right:1rem}"
    ".ok{color:#0a6b2d}.fail{color:#a11}"
)


def security_headers(form_targets: str = "") -> dict[str, str]:
    """Headers of every page: not cached, not framed, no referrer, nothing but inline style.

    `form_targets` adds origins a form may reach (the provider, which our 303 leads to: Chromium
    applies `form-action` to the redirects that follow a form submission).
    """
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        f"frame-ancestors 'none'; form-action 'self' {form_targets}".rstrip()
    )
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


def _page(title: str, outcome: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f'<meta name="raxx-outcome" content="{escape(outcome)}">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><main data-outcome="{escape(outcome)}">{body}</main></body></html>'
    )


def consent_page(link: str, user_id: str, env: str) -> str:
    """The explicit consent step: what connecting allows, for which Raxx account, two buttons."""
    kind = "live (real money)" if env == "live" else "paper (simulated)"
    return _page(
        "Connect Alpaca to Raxx",
        "consent",
        "<h1>Connect your Alpaca account to Raxx</h1>"
        f"<p>You are about to connect an Alpaca <strong>{escape(kind)}</strong> account to the "
        f"Raxx account <strong>{escape(user_id)}</strong>.</p>"
        "<p>If you agree, Raxx will be able to <strong>read your Alpaca account and place "
        "orders in it</strong> on your instructions. The access Alpaca grants is kept only in "
        "Raxx's secret store; you can disconnect at any time, which revokes it.</p>"
        "<p class=warn>If you did not just ask the Raxx app to connect your broker, someone may "
        "have sent you this link to take over your broker account: choose "
        "<em>Cancel</em>.</p>"
        f'<form method=post action="{CONSENT_PATH}">'
        f'<input type=hidden name=link value="{escape(link)}">'
        "<button type=submit name=decision value=connect>I agree, continue to Alpaca</button>"
        "<button type=submit name=decision value=cancel>Cancel</button></form>",
    )


@dataclass(frozen=True)
class Outcome:
    """How a browser step ended: the page's title, text, and whether it offers a retry."""

    title: str
    text: str


_OUTCOMES: dict[str, Outcome] = {
    "connected": Outcome(
        "Alpaca connected",
        "Your Alpaca {env} account is now connected to Raxx. You can close this window.",
    ),
    "cancelled": Outcome(
        "Nothing was connected", "You cancelled. Nothing was connected; you can close this window."
    ),
    "invalid_state": Outcome(
        "Nothing was connected",
        "This authorization is not valid or was already used. Nothing was connected. Start "
        "again from the Raxx app.",
    ),
    "expired": Outcome(
        "Nothing was connected",
        "This authorization expired. Nothing was connected. Start again from the Raxx app.",
    ),
    "binding_mismatch": Outcome(
        "Nothing was connected",
        "This authorization was started in a different browser, so nothing was connected. If "
        "you did not start connecting your broker to Raxx in this browser, someone may have "
        "sent you the link: ignore it. Otherwise start again from the Raxx app, in the browser "
        "you will approve in.",
    ),
    "declined": Outcome(
        "Nothing was connected", "The authorization was declined at Alpaca. Nothing was connected."
    ),
    "provider_rejected": Outcome(
        "Nothing was connected",
        "Alpaca did not accept the authorization. Nothing was connected.",
    ),
    "provider_unavailable": Outcome(
        "Nothing was connected", "Alpaca did not answer in time. Nothing was connected."
    ),
    "vault_unavailable": Outcome(
        "Nothing was connected",
        "Our secret store is unavailable right now. Nothing was connected and nothing was "
        "kept; the access Alpaca granted has been revoked.",
    ),
    "database_unavailable": Outcome(
        "Nothing was connected",
        "Our database is unavailable right now. Nothing was connected. Reload this page in a "
        "moment.",
    ),
    "not_eligible": Outcome(
        "Nothing was connected",
        "Your Raxx plan does not include connecting a live broker. Nothing was connected.",
    ),
    "in_progress": Outcome(
        "Please wait",
        "This authorization is being completed in another window. Check your connection "
        "status in the Raxx app.",
    ),
    "invalid_link": Outcome(
        "This link cannot be used",
        "This link is not valid, was already used or expired (links last a few minutes and "
        "work once). Nothing was connected. Start again from the Raxx app.",
    ),
    "cross_site_request": Outcome(
        "Nothing was connected",
        "This request did not come from a Raxx page, so it was refused. Nothing was connected.",
    ),
}
_GENERIC = Outcome(
    "Nothing was connected", "Something went wrong. Nothing was connected. Try again later."
)


def outcome_page(outcome: str, env: str | None = None, retry_state: str | None = None) -> str:
    """The page that ends a browser step: connected, or why not (and a retry when possible)."""
    info = _OUTCOMES.get(outcome, _GENERIC)
    kind = {"live": "live", "paper": "paper"}.get(env or "", "")
    text = info.text.replace("{env}", kind).replace("  ", " ")
    css = "ok" if outcome == "connected" else "fail"
    body = f"<h1 class={css}>{escape(info.title)}</h1><p>{escape(text)}</p>"
    if retry_state:
        body += (
            "<p>You can try again from here: Alpaca will ask you to approve once more.</p>"
            f'<form method=post action="{RETRY_PATH}">'
            f'<input type=hidden name=state value="{escape(retry_state)}">'
            "<button type=submit>Try again</button></form>"
        )
    return _page(info.title, outcome, body)
