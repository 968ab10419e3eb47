"""Every admin page in headless Chromium at 1280 px: it loads, its main table fits, nothing it asks for fails."""

import json
import os
from pathlib import Path

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.admin_pages.dataset import admin_dataset
from tests.browser import needs_browser

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]

SCREENSHOTS = os.environ.get("ADMIN_SCREENSHOTS_DIR")


def admin_pages(config) -> list[tuple[str, str]]:
    """(name, path) of every registered model's list, change and add pages, and the results pages."""
    pages = [("index", reverse("admin:index"))]
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        name = f"{opts.app_label}_{opts.model_name}"
        pages.append((f"{name}_changelist", reverse(f"admin:{name}_changelist")))
        first = model_admin.get_queryset(None).order_by("pk").first() if False else model.objects.order_by("pk").first()
        if first is not None:
            pages.append((f"{name}_change", reverse(f"admin:{name}_change", args=[first.pk])))
    pages.append(("config_add", reverse("admin:autoengagement_autoengagementconfig_add")))
    pages.append(("config_results", f"/admin/autoengagement/autoengagementconfig/{config.pk}/results/"))
    pages.append(("all_results", "/admin/autoengagement/autoengagementconfig/results/"))
    return pages


def _failed_requests(driver) -> list[str]:
    failed = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived" and message["params"]["response"]["status"] >= 400:
            response = message["params"]["response"]
            failed.append(f"{response['status']} {response['url']}")
        elif message["method"] == "Network.loadingFailed":
            failed.append(f"failed: {message['params'].get('errorText')}")
    return failed


MEASURE = """
const page = document.documentElement;
const table = document.querySelector('#result_list, .results-table, #content-main table');
const box = table && table.parentElement;
return {
  page: [page.scrollWidth, page.clientWidth],
  table: table ? [table.scrollWidth, box.clientWidth, table.id || table.className] : null,
};
"""


def test_every_admin_page_fits_1280_px_and_loads_everything(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    config = admin_dataset()
    browser.set_window_size(1280, 1000)
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(admin_user.username)
    browser.find_element(By.NAME, "password").send_keys("password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda d: "/admin/login/" not in d.current_url)
    problems = []
    for name, path in admin_pages(config):
        browser.get_log("performance")
        browser.get(f"{live_server.url}{path}")
        sizes = browser.execute_script(MEASURE)
        print(name, sizes)
        if failed := _failed_requests(browser):
            problems.append(f"{name}: {failed}")
        if sizes["page"][0] > sizes["page"][1]:
            problems.append(f"{name}: the page is {sizes['page'][0]} px wide in {sizes['page'][1]}")
        if sizes["table"] and sizes["table"][0] > sizes["table"][1]:
            problems.append(f"{name}: its table is {sizes['table'][0]} px wide in {sizes['table'][1]}")
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))
    assert not problems, "\n".join(problems)
