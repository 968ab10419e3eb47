"""The production path as an operator runs it: `collectstatic` with DEBUG off, then gunicorn with the project's
config, serving the admin's styles and the API docs by itself (WhiteNoise), checked in headless Chromium."""

import time
import urllib.request

from tests.browser import needs_browser

pytestmark = needs_browser


def test_static_files_are_served_hashed_and_compressed(production_server):
    page = urllib.request.urlopen(f"{production_server}/admin/login/").read().decode()
    [stylesheet] = [part.split('"')[0] for part in page.split('href="')[1:] if "/static/admin/css/base." in part]
    assert stylesheet != "/static/admin/css/base.css", "the manifest's hashed name"
    request = urllib.request.Request(f"{production_server}{stylesheet}", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert "max-age=315360000" in response.headers["Cache-Control"]


def test_the_admin_is_styled_and_the_api_docs_render_in_a_browser(production_server, browser):
    browser.get(f"{production_server}/admin/login/")
    header = browser.find_element("id", "header")
    # Django's admin stylesheet gives the header its dark background; unstyled, it would be transparent.
    assert header.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
    browser.get(f"{production_server}/api/docs/")
    deadline = time.monotonic() + 20
    while not browser.find_elements("css selector", ".opblock"):
        assert time.monotonic() < deadline, "Swagger UI rendered no operation"
        time.sleep(0.2)
    assert len(browser.find_elements("css selector", ".opblock")) > 10
