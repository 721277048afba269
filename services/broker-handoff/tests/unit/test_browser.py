from broker_handoff import domain, pages


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
