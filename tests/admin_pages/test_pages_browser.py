"""Every admin page in headless Chromium at 1280 px: it loads, its main table fits, nothing it asks for fails; and
the config page's widgets and buttons work.

With ADMIN_SCREENSHOTS_DIR set, each page is also saved there as a PNG (`make screenshots` writes docs/screenshots/,
which the docs show).
"""

import json
import os
import re
from pathlib import Path

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.admin_pages.dataset import admin_dataset
from tests.browser import log_in, needs_browser, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]

SCREENSHOTS = os.environ.get("ADMIN_SCREENSHOTS_DIR")
# The pages docs/admin.md shows (one PNG each in docs/screenshots/).
SCREENSHOT_PAGES = {
    "index",
    "autoengagement_autoengagementconfig_changelist",
    "autoengagement_autoengagementconfig_change",
    "config_preview_audience",
    "config_results",
    "notifications_notificationlog_changelist",
    "notifications_notificationlog_change",
    "wallet_customer_changelist",
    "wallet_business_changelist",
    "autoengagement_runpart_changelist",
}
WIDTH = 1280
# Room a table must leave in its box: another machine's fonts, or other random ids, take a few pixels more.
TABLE_MARGIN = 30
# The page's width, and its main table's narrowest width (its content's, measured at width 1px) against the box
# that holds it (the list, the results tables).
MEASURE = """
const page = document.documentElement;
const table = document.querySelector('#result_list, #content-main table');
if (!table) return {page: [page.scrollWidth, page.clientWidth], table: null};
const width = table.style.width;
table.style.width = '1px';
const narrowest = table.scrollWidth;
table.style.width = width;
return {page: [page.scrollWidth, page.clientWidth], table: [narrowest, table.parentElement.clientWidth]};
"""


def admin_pages(config) -> list[tuple[str, str]]:
    """(name, path) of every registered model's list and first object's change page, the config's add page, and
    the results pages: a model registered later is visited without being listed here."""
    pages = [("index", reverse("admin:index"))]
    for model in admin.site._registry:
        name = f"{model._meta.app_label}_{model._meta.model_name}"
        pages.append((f"{name}_changelist", reverse(f"admin:{name}_changelist")))
        if (first := model.objects.order_by("pk").first()) is not None:
            pages.append((f"{name}_change", reverse(f"admin:{name}_change", args=[first.pk])))
    pages += [
        ("autoengagement_autoengagementconfig_add", reverse("admin:autoengagement_autoengagementconfig_add")),
        ("config_results", reverse("admin:autoengagement_autoengagementconfig_results", args=[config.pk])),
        ("all_results", reverse("admin:autoengagement_autoengagementconfig_results_all")),
    ]
    return pages


def _problems(driver) -> list[str]:
    """Failed requests (Chrome's performance log) and console errors since the last call."""
    problems = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived" and message["params"]["response"]["status"] >= 400:
            response = message["params"]["response"]
            problems.append(f"{response['status']} {response['url']}")
        elif message["method"] == "Network.loadingFailed":
            problems.append(f"failed: {message['params'].get('errorText')}")
    problems += [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return problems


def _save_screenshot(driver, name: str) -> None:
    """The whole page, as tall as its content (the window grows for the shot, then returns to 1280 x 1000)."""
    if SCREENSHOTS and name in SCREENSHOT_PAGES:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(WIDTH, min(max(height, 800), 2400))
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))
        driver.set_window_size(WIDTH, 1000)


def test_every_admin_page_fits_1280_px_and_loads_everything(browser, live_server, admin_user):
    config = admin_dataset()
    browser.set_window_size(WIDTH, 1000)
    log_in(browser, live_server, admin_user)
    problems = []
    pages = admin_pages(config)
    for name, path in pages:
        browser.get(f"{live_server.url}{path}")
        assert "Server Error" not in browser.title and "Page not found" not in browser.title, (name, browser.title)
        sizes = browser.execute_script(MEASURE)
        problems += [f"{name}: {problem}" for problem in _problems(browser)]
        if sizes["page"][0] > sizes["page"][1]:
            problems.append(f"{name}: the page is {sizes['page'][0]} px wide in {sizes['page'][1]}")
        if sizes["table"] and sizes["table"][0] + TABLE_MARGIN > sizes["table"][1]:
            problems.append(f"{name}: its table needs {sizes['table'][0]} px in {sizes['table'][1]}")
        _save_screenshot(browser, name)
    assert not problems, "\n".join(problems)
    assert len(pages) >= 20


def test_the_config_page_has_its_widgets_and_its_buttons_work(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    config = admin_dataset()
    browser.set_window_size(WIDTH, 1000)
    log_in(browser, live_server, admin_user)
    change = reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk])
    browser.get(f"{live_server.url}{change}")
    form = browser.find_element(By.ID, "autoengagementconfig_form")
    assert len(form.find_elements(By.CSS_SELECTOR, "input[type=checkbox][name=channels]")) == 4
    zone = form.find_element(By.NAME, "timezone")
    assert zone.get_attribute("list") == "id_timezone-zones"
    assert browser.find_elements(By.CSS_SELECTOR, "#id_timezone-zones option[value='Asia/Kolkata']")
    assert len(form.find_elements(By.CSS_SELECTOR, ".journey .journey-step")) == 3
    assert browser.find_elements(By.CSS_SELECTOR, "#journey-preview iframe.preview-html")
    assert not _problems(browser)

    browser.find_element(By.XPATH, "//button[normalize-space()='Preview audience']").click()
    wait_for(browser, "ul.messagelist li.info")
    assert "would be reached now" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist li.info").text
    assert browser.find_elements(By.CSS_SELECTOR, "ul.messagelist li.warning")
    _save_screenshot(browser, "config_preview_audience")

    browser.find_element(By.XPATH, "//button[normalize-space()='Run now']").click()
    wait_for(browser, "ul.messagelist li.success")
    config.refresh_from_db()
    assert config.run_requested_at is not None

    step_header = browser.find_element(By.NAME, "steps-0-message_header")
    step_header.clear()
    step_header.send_keys("Typed, {first_name}")
    browser.find_element(By.CSS_SELECTOR, "input[name=_preview]").click()
    WebDriverWait(browser, 20).until(lambda d: "not saved yet" in d.find_element(By.ID, "journey-preview").text)
    assert "Typed, Ana" in browser.find_element(By.ID, "journey-preview").text
    config.refresh_from_db()
    assert config.steps[0]["message"]["header"] == "We miss you, {first_name}"
    assert not _problems(browser)


def test_the_admin_docs_show_each_screenshot_the_tests_take():
    """docs/admin.md shows exactly the pages `make screenshots` saves, and each PNG is in the repository."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    shown = set(re.findall(r"\(screenshots/([a-z_]+)\.png\)", (docs / "admin.md").read_text()))
    assert shown == SCREENSHOT_PAGES
    assert all((docs / "screenshots" / f"{name}.png").is_file() for name in shown)


def test_every_admin_model_name_reads_as_english(admin_client):
    """No "Wallet passs": every registered model's plural is a word a person would write."""
    names = {str(model._meta.verbose_name_plural) for model in admin.site._registry}
    assert "wallet passes" in names
    assert not [name for name in names if name.endswith("ss")]  # "passs", "processs": Django's default plural


@pytest.mark.parametrize("page", ["index", "changelists"])
def test_no_admin_link_is_broken(admin_client, page):
    """Every link on the admin's pages (index, every list and the first object's change page) to this server (the
    admin, the API docs...) answers 200 or a redirect, never a 404 or an error ("View site" once led to a 404)."""
    from html.parser import HTMLParser

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.hrefs: set[str] = set()

        def handle_starttag(self, tag, attrs):
            href = dict(attrs).get("href") or ""
            local = href.startswith("/") and not href.startswith("/static/")
            if tag == "a" and local and "/logout/" not in href and "/delete/" not in href:
                self.hrefs.add(href.split("#")[0])

    config = admin_dataset()
    pages = admin_pages(config)
    pages = pages[:1] if page == "index" else pages[1:]
    links = Links()
    for _, path in pages:
        response = admin_client.get(path)
        assert response.status_code == 200, path
        links.feed(response.content.decode())
    broken = [(href, code) for href in sorted(links.hrefs) if (code := admin_client.get(href).status_code) >= 400]
    assert not broken
    assert len(links.hrefs) >= (10 if page == "index" else 50)
