"""After seeding the demo, its config's admin results page shows the journey's steps and step 1's winner with its
interval: through Django's test client, and in a real headless Chromium (tests/browser.py)."""

import re

import pytest
from django.urls import reverse

from autoengagement.stats import engagement_stats
from devtools.demo import DEMO_BUSINESS_ID, seed_demo
from tests.browser import log_in, needs_browser, wait_for
from wallet.models import Business


def _points(difference) -> str:
    """As the results page writes a difference (autoengagement.admin)."""
    return (
        f"{difference.estimate * 100:+.1f} pts (95% CI {difference.ci95_low * 100:+.1f} to "
        f"{difference.ci95_high * 100:+.1f})"
    )


def _demo() -> tuple[str, list[str]]:
    """Seed the demo as `make demo` does; its results page and the step 1 row of the offer as the page shows it."""
    seed = seed_demo(simulate_days=28)
    offer = engagement_stats(business=seed.business).steps[0].variants[1]
    assert offer.name == "offer" and offer.vs_first.ci95_low > 0
    url = reverse("admin:autoengagement_autoengagementconfig_results", args=[seed.config.pk])
    return url, ["offer best", str(offer.reached), str(offer.reactivated), f"{offer.rate * 100:.1f}%",
                 _points(offer.uplift), _points(offer.vs_first)]  # fmt: skip


def _cells(table: str) -> list[list[str]]:
    rows = table.split("<tbody>")[1].split("<tr")[1:]
    return [[" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in row.split("<td>")[1:]] for row in rows]


@pytest.mark.django_db
def test_the_demo_configs_results_page_marks_the_offer_best_with_its_interval(admin_client):
    url, offer_row = _demo()
    html = admin_client.get(url).content.decode()  # the default window: the last 30 days
    assert "Step 1: best offer" in html
    step_1 = html.split('<table id="step-1-variants"')[1].split("</table>")[0]
    assert [row[0] for row in _cells(step_1)] == ["friendly", "offer best"]
    assert _cells(step_1)[1] == offer_row
    assert step_1.count('class="best-variant"') == 1
    for step in (2, 3):
        assert f'<table id="step-{step}-variants"' in html


@pytest.mark.django_db(transaction=True)
@needs_browser
def test_the_demo_configs_results_page_in_a_browser(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By

    url, offer_row = _demo()
    assert Business.objects.filter(business_id=DEMO_BUSINESS_ID).exists()
    log_in(browser, live_server, admin_user, url)
    best = wait_for(browser, "#step-1-variants tr.best-variant")[0]
    assert best.is_displayed()
    assert [cell.text for cell in best.find_elements(By.TAG_NAME, "td")] == offer_row
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.step-variants")) == 3
