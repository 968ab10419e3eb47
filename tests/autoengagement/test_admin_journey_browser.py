"""The config change page's Journey in a real headless Chromium at 1280 px (tests/browser.py): steps and variants
added with the page's buttons, a step moved, saved; every request answered, nothing wider than the window."""

import json

import pytest

from tests.browser import log_in, needs_browser, wait_for
from tests.factories import AutoEngagementConfigFactory

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]


def _failed_requests(driver) -> list[str]:
    """Every request of the page that failed or was answered 400 or more (Chrome's performance log)."""
    failed = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            if response["status"] >= 400 or not response["url"].startswith(("http://localhost", "data:")):
                failed.append(f"{response['status']} {response['url']}")
        elif message["method"] == "Network.loadingFailed":
            failed.append(f"failed: {message['params'].get('errorText')}")
    return failed


def _overflow(driver) -> dict[str, object]:
    """How far the page is wider than the window, and the visible controls and preview boxes of the form that
    stick out of it (the admin's form rows clip what overflows them, so the page's width alone cannot tell)."""
    return driver.execute_script(
        """
        const form = document.getElementById('autoengagementconfig_form');
        const right = form.getBoundingClientRect().right;
        const selector = 'input:not([type=hidden]), textarea, select, button, iframe, .journey-step, .preview-channel';
        return {
            page: Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth),
            outside: Array.from(form.querySelectorAll(selector))
                .filter((el) => el.offsetParent !== null && el.getBoundingClientRect().right > right + 0.5)
                .map((el) => el.name || el.className),
        };
        """
    )


def _fill(step_or_variant, field: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    element = step_or_variant.find_element(By.CSS_SELECTOR, f"[name$='-{field}']")
    element.clear()
    element.send_keys(text)


def test_staff_add_steps_and_variants_move_a_step_and_save(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By

    config = AutoEngagementConfigFactory(channels=["wallet", "email"])
    path = f"/admin/autoengagement/autoengagementconfig/{config.pk}/change/"
    log_in(browser, live_server, admin_user, path)
    assert browser.current_url.endswith(path)
    assert browser.execute_script("return window.innerWidth") == 1280
    journey = browser.find_element(By.ID, "journey")
    add_step = journey.find_element(By.CSS_SELECTOR, ".journey-add-step")
    add_step.click()
    add_step.click()
    first, second = journey.find_elements(By.CSS_SELECTOR, ".journey-steps > .journey-step")
    _fill(first, "after_days", "12")
    _fill(first, "message_header", "Still there, {first_name}?")
    _fill(first, "message_body", "We kept your points")
    _fill(second, "after_days", "5")
    _fill(second, "message_header", "We miss you")
    _fill(second, "message_body", "Come back to {business_name}")
    for _ in range(2):
        second.find_element(By.CSS_SELECTOR, ".journey-add-variant").click()
    plain, offer = second.find_elements(By.CSS_SELECTOR, ".journey-variant")
    _fill(plain, "name", "plain")
    _fill(plain, "weight", "70")
    _fill(offer, "name", "offer")
    _fill(offer, "weight", "30")
    offer.find_element(By.CSS_SELECTOR, "details > summary").click()
    _fill(offer, "message_header", "20% off")
    _fill(offer, "message_body", "Code {attributes.code|WELCOME}")
    second.find_element(By.CSS_SELECTOR, ".journey-move[data-direction='up']").click()
    assert [
        element.text for element in journey.find_elements(By.CSS_SELECTOR, ".journey-steps .journey-step-number")
    ] == ["Step 1", "Step 2"]
    for details in browser.find_elements(By.CSS_SELECTOR, ".journey details"):
        browser.execute_script("arguments[0].open = true", details)
    assert _overflow(browser) == {"page": 0, "outside": []}

    browser.find_element(By.CSS_SELECTOR, "input[name='_continue']").click()
    wait_for(browser, ".messagelist .success")

    config.refresh_from_db()
    assert config.steps == [
        {
            "after_days": 5,
            "message": {"header": "We miss you", "body": "Come back to {business_name}"},
            "variants": [
                {"name": "plain", "weight": 70},
                {
                    "name": "offer",
                    "weight": 30,
                    "message": {"header": "20% off", "body": "Code {attributes.code|WELCOME}"},
                },
            ],
        },
        {"after_days": 12, "message": {"header": "Still there, {first_name}?", "body": "We kept your points"}},
    ]
    # The saved journey is shown again, with its preview, and still fits the window.
    assert len(browser.find_elements(By.CSS_SELECTOR, ".journey-steps > .journey-step")) == 2
    assert "20% off" in browser.find_element(By.CSS_SELECTOR, "#preview-step-1 [data-variant='offer']").text
    assert browser.find_element(By.CSS_SELECTOR, "#preview-step-1 iframe.preview-html").get_attribute("sandbox") == ""
    assert _overflow(browser) == {"page": 0, "outside": []}
    assert not _failed_requests(browser)
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_errors_keep_what_was_typed_and_the_page_fits(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By

    config = AutoEngagementConfigFactory()
    path = f"/admin/autoengagement/autoengagementconfig/{config.pk}/change/"
    log_in(browser, live_server, admin_user, path)
    browser.find_element(By.CSS_SELECTOR, ".journey-add-step").click()
    step = browser.find_element(By.CSS_SELECTOR, ".journey-steps > .journey-step")
    _fill(step, "after_days", "3")
    _fill(step, "message_header", "Hi")
    _fill(step, "message_body", "A " + "very-long-word" * 40 + " {unknown}")
    browser.find_element(By.CSS_SELECTOR, "input[name='_continue']").click()
    wait_for(browser, ".errornote")

    row = browser.find_element(By.CSS_SELECTOR, ".journey-step .form-row.errors.field-message_body")
    assert "Unknown placeholder {unknown}" in row.text
    assert browser.find_element(By.NAME, "steps-0-message_header").get_attribute("value") == "Hi"
    assert _overflow(browser) == {"page": 0, "outside": []}
    config.refresh_from_db()
    assert config.steps is None
