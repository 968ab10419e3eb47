"""A real headless Chromium for the browser tests: Debian's chromium and chromedriver through Selenium.

Nothing is downloaded at test time: the browser and its driver are the system packages (.ci/run installs them
when missing). Without them the tests marked `needs_browser` are skipped, saying so. The `browser` fixture is
registered for the whole suite by tests/conftest.py.
"""

from pathlib import Path
from urllib.parse import urlencode

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

needs_browser = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,1600",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, css: str, *, timeout: float = 20) -> list:
    """The elements matching `css` once the page holding them has loaded. Waiting for a URL or for any element is
    not enough: the URL changes when a navigation starts, and the page before still answers until the new one
    replaces it."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = "return document.readyState === 'complete' ? Array.from(document.querySelectorAll(arguments[0])) : []"
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script, css) or False)


def log_in(driver, live_server, admin_user, next_url: str = "/admin/") -> None:
    """Log the `admin_user` fixture's user into the admin and land on `next_url`, its requests and console then
    forgotten, so a test checks only the pages it is about."""
    from selenium.webdriver.common.by import By

    driver.get(f"{live_server.url}/admin/login/?{urlencode({'next': next_url})}")
    driver.find_element(By.NAME, "username").send_keys(admin_user.username)
    driver.find_element(By.NAME, "password").send_keys("password")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(driver, "#user-tools")
    driver.get_log("performance")
    driver.get_log("browser")
