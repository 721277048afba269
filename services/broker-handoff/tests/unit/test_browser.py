import logging

from broker_handoff import domain, pages
from broker_handoff.__main__ import RedactQuery


def _access(path: str) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", path, "1.1", 200),
        None,
    )


def test_the_access_log_drops_one_time_secrets_of_browser_urls() -> None:
    record = _access("/v1/broker/alpaca/callback?code=abc&state=xyz")
    assert RedactQuery().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5 - "GET /v1/broker/alpaca/callback?[redacted] HTTP/1.1" 200'
    )
    link = _access("/v1/broker/alpaca/consent?link=secret")
    RedactQuery().filter(link)
    assert "secret" not in link.getMessage()
    other = _access("/v1/broker/alpaca/connect?consent=true&env=paper")
    RedactQuery().filter(other)
    assert "consent=true&env=paper" in other.getMessage()


def test_binding_cookies_are_per_state_and_checked_in_constant_time() -> None:
    a, b = domain.new_state(), domain.new_state()
    assert domain.cookie_name(a) != domain.cookie_name(b)
    assert domain.cookie_name(a).startswith("bh_flow_")
    binding = domain.new_binding()
    stored = domain.binding_hash(binding)
    assert binding not in stored
    assert domain.binding_matches(binding, stored)
    assert not domain.binding_matches(None, stored)
    assert not domain.binding_matches(domain.new_binding(), stored)
    assert not domain.binding_matches(binding, "")


def test_pages_escape_everything_and_echo_no_request_text() -> None:
    consent = pages.consent_page('"><script>x</script>', "<b>u</b>", "live")
    assert "<script>" not in consent
    assert "&lt;b&gt;u&lt;/b&gt;" in consent
    assert "real money" in consent
    page = pages.outcome_page("binding_mismatch")
    assert 'content="binding_mismatch"' in page
    assert "different browser" in page
    assert "retry" not in page
    retry = pages.outcome_page("vault_unavailable", retry_state="st<ate")
    assert 'action="/v1/broker/alpaca/retry"' in retry
    assert "st&lt;ate" in retry
    unknown = pages.outcome_page("<weird>")
    assert "<weird>" not in unknown
    headers = pages.security_headers("http://alpaca.example")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "form-action 'self' http://alpaca.example" in headers["Content-Security-Policy"]
