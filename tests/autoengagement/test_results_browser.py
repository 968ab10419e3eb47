"""The admin results page in a real headless Chromium (Debian's chromium + chromedriver through Selenium).

The browser comes from tests/browser.py.
"""

import datetime as dt
import json
import urllib.request

import pytest

from notifications.models import NotificationLog
from tests.browser import log_in, needs_browser, wait_for
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, save_logs

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]

FIRST_DAY = dt.date(2026, 3, 2)
DAYS = 7


def _results_data(first_day: dt.date = FIRST_DAY):
    config = AutoEngagementConfigFactory(channels=["wallet"], holdout_percent=20)
    rows = []
    for day in range(DAYS):
        at = dt.datetime.combine(first_day + dt.timedelta(days=day), dt.time(9), tzinfo=dt.UTC)
        for index in range(6):
            customer = CustomerFactory(business=config.business)
            status = "holdout" if index < 2 else ("failed" if index == 5 else "sent")
            back = at + dt.timedelta(days=1) if index in (0, 2, 3) else None
            rows.append(
                NotificationLog(
                    business=config.business,
                    config=config,
                    customer=customer,
                    channel="wallet",
                    status=status,
                    created_at=at,
                    run_date=at.date(),
                    reactivated_at=back,
                )
            )
    save_logs(rows)
    return config


def _network_problems(driver) -> tuple[list[str], list[str]]:
    """Every URL the page fetched with its status (from Chrome's performance log) and every failure."""
    fetched, failed = [], []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            fetched.append(response["url"])
            if response["status"] >= 400:
                failed.append(f"{response['status']} {response['url']}")
        elif message["method"] == "Network.loadingFailed":
            failed.append(f"failed: {message['params'].get('errorText')}")
    return fetched, failed


def _assert_static_files_load(driver, live_server) -> None:
    """Every stylesheet, script and image the page references is served by the live server (200), so nothing
    a cached earlier page fetched can hide a broken reference."""
    from selenium.webdriver.common.by import By

    urls = [
        element.get_attribute(attribute)
        for selector, attribute in (("link[href]", "href"), ("script[src]", "src"), ("img[src]", "src"))
        for element in driver.find_elements(By.CSS_SELECTOR, selector)
    ]
    static = [url for url in urls if url.startswith(f"{live_server.url}/static/")]
    assert any("/static/admin/css/" in url for url in static)
    for url in static:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200, url
    assert all(url.startswith((live_server.url, "data:")) for url in urls)


def test_the_config_results_page_draws_the_series_and_the_uplift(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By

    config = _results_data()
    last_day = FIRST_DAY + dt.timedelta(days=DAYS - 1)
    path = f"/admin/autoengagement/autoengagementconfig/{config.pk}/results/?date_from={FIRST_DAY}&date_to={last_day}"
    log_in(browser, live_server, admin_user, path)
    assert browser.current_url.endswith(path), browser.current_url
    fetched, failed = _network_problems(browser)
    assert not failed
    assert all(url.startswith(live_server.url) or url.startswith("data:") for url in fetched)  # no network access
    _assert_static_files_load(browser, live_server)
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe

    chart = browser.find_element(By.ID, "daily-chart")
    assert chart.is_displayed()
    for series in ("sent", "failed", "reactivated"):
        points = chart.find_elements(By.CSS_SELECTOR, f"circle.point-{series}")
        assert len(points) == DAYS
    assert [p.get_attribute("data-value") for p in chart.find_elements(By.CSS_SELECTOR, "circle.point-sent")] == [
        "3"
    ] * DAYS
    uplift = browser.find_element(By.ID, "uplift-chart")
    assert uplift.find_elements(By.CSS_SELECTOR, "rect.interval")
    assert uplift.find_elements(By.CSS_SELECTOR, "circle.estimate")
    # 14 of 21 reached came back vs 7 of 14 held out: +0.1667.
    assert browser.find_element(By.ID, "figure-uplift").text == "+16.7 pts"
    assert browser.find_element(By.ID, "figure-reached").text == "21"


def test_the_all_businesses_page_loads_from_the_changelist_link(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By

    recent = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DAYS)
    _results_data(recent)
    _results_data(recent)
    log_in(browser, live_server, admin_user, "/admin/autoengagement/autoengagementconfig/")
    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href$='/autoengagementconfig/results/']").click()
    wait_for(browser, "#figure-reached")
    assert "/admin/autoengagement/autoengagementconfig/results/" in browser.current_url
    _, failed = _network_problems(browser)
    assert not failed
    _assert_static_files_load(browser, live_server)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#daily-chart circle.point-sent")) == 30  # default window
    assert browser.find_element(By.ID, "figure-holdout").text == "28"
    assert browser.find_element(By.ID, "figure-reached").text == "42"
