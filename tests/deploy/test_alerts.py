"""The example alert rules parse and only use metrics the service exposes."""

import re
from pathlib import Path

import yaml

from autoengagement.monitoring import RunCollector

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def test_every_alert_uses_a_metric_the_service_exposes(db):
    exposed = {family.name for family in RunCollector().collect()} | {"up"}
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {"AutoEngagementBusinessNotRunSuccessfully", "AutoEngagementRunFailed"}
    for rule in rules:
        without_labels = re.sub(r"\{[^}]*\}", "", rule["expr"])
        used = set(re.findall(r"\b([a-z_]+)(?=\s*(?:>|<|==))", without_labels))
        assert used and used <= exposed, (rule["alert"], used - exposed)
