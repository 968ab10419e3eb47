"""deploy/kubernetes: the kustomize base and the production overlay, rendered without kubectl
(tests/deploy/kustomize.py) and checked against the Kubernetes API schemas of several versions (kubernetes-validate
ships them: no network), and against what the project needs: hardened pods, probes on /healthz and /readyz, every
Secret/ConfigMap key a pod references defined, the credential files mounted where the settings say, the schedules
of deploy/crontab.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate.utils
import pytest
import yaml

from tests.deploy.kustomize import load_documents, pod_specs, render

PROJECT = Path(__file__).resolve().parents[2]
KUBERNETES = PROJECT / "deploy" / "kubernetes"
SECRET_TEMPLATE = KUBERNETES / "base" / "secret.example.yaml"
TARGETS = {"base": KUBERNETES / "base", "production": KUBERNETES / "overlays" / "production"}
# The oldest and newest minor versions worth supporting: CronJob's timeZone is GA from 1.27; the newest the package
# ships. Strict schemas: an unknown (misspelt) field is an error too.
KUBERNETES_VERSIONS = ("1.29", "1.33", kubernetes_validate.utils.latest_version())
ROLES = {"web", "run", "prune", "webhooks", "prune-idempotency", "migrate"}
CREDENTIALS_DIR = "/var/run/secrets/auto-engagement"
# Settings naming credential files (engagement_site/settings.py); each must point into a mounted Secret.
FILE_SETTINGS = (
    "APPLE_PASS_CERT_FILE",
    "APPLE_PASS_KEY_FILE",
    "APPLE_WWDR_CERT_FILE",
    "GOOGLE_WALLET_CREDENTIALS",
    "FCM_CREDENTIALS",
)


@pytest.fixture(scope="module", params=sorted(TARGETS))
def rendered(request) -> list[dict[str, Any]]:
    return render(TARGETS[request.param])


@pytest.fixture(scope="module")
def secret_templates() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in load_documents(SECRET_TEMPLATE)}


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def config_map(objects: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = by_kind(objects, "ConfigMap")
    return config["data"]


def containers(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(spec, container) for spec in pod_specs(objects) for container in spec["containers"]]


def test_renders_every_workload(rendered):
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for obj in rendered)
    assert kinds == [
        ("ConfigMap", "auto-engagement-config"),
        ("CronJob", "auto-engagement-deliver-webhooks"),
        ("CronJob", "auto-engagement-prune-idempotency-keys"),
        ("CronJob", "auto-engagement-prune-logs"),
        ("CronJob", "auto-engagement-run"),
        ("Deployment", "auto-engagement-web"),
        ("Ingress", "auto-engagement"),
        ("Job", "auto-engagement-migrate"),
        ("Service", "auto-engagement-web"),
    ]
    # The Secret template is never applied with the manifests: it would overwrite the real credentials.
    assert not by_kind(rendered, "Secret")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_matches_the_kubernetes_schema(rendered, secret_templates, version):
    for obj in [*rendered, *secret_templates.values()]:
        try:
            kubernetes_validate.utils.validate(obj, version, strict=True)
        except kubernetes_validate.utils.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on Kubernetes {version}: {path}: {error.message}")
        # SchemaNotFoundError propagates: an object kind without a schema is not validated, so it is a failure.


def test_schema_validation_catches_mistakes():
    """The validator is not a no-op: a misspelt field and a wrong type are both rejected."""
    (deployment,) = by_kind(render(TARGETS["base"]), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.utils.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    (deployment,) = by_kind(render(TARGETS["base"]), "Deployment")
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.utils.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def image_user() -> tuple[int, int]:
    """The numeric USER of the Dockerfile's final stage."""
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", (PROJECT / "Dockerfile").read_text(), re.MULTILINE)
    assert users, "the Dockerfile's final stage must set a numeric USER uid:gid (runAsNonRoot checks the number)"
    return int(users[-1][0]), int(users[-1][1])


def test_every_pod_is_hardened(rendered):
    uid, gid = image_user()
    specs = pod_specs(rendered)
    assert len(specs) == 6
    for spec in specs:
        pod = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False
        assert pod.get("runAsNonRoot") is True
        assert (pod.get("runAsUser"), pod.get("runAsGroup")) == (uid, gid), "the Dockerfile's USER"
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}
        assert not spec.get("initContainers")
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in spec["containers"]:
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod.get("runAsNonRoot")) is True
            assert security.get("runAsUser", uid) != 0
            assert security.get("allowPrivilegeEscalation") is False, container["name"]
            assert security.get("readOnlyRootFilesystem") is True, container["name"]
            assert security.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
            assert not security.get("capabilities", {}).get("add"), container["name"]
            assert security.get("privileged", False) is False
            assert security.get("seccompProfile", pod.get("seccompProfile")) == {"type": "RuntimeDefault"}
            # A read-only root filesystem needs a writable /tmp (gunicorn's heartbeat files, Python's tempfile).
            (tmp,) = [mount for mount in container.get("volumeMounts", []) if mount["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})), container["name"]


def test_every_container_runs_a_role_of_the_image(rendered):
    images = set()
    roles = set()
    for _spec, container in containers(rendered):
        assert "command" not in container, "the image's entrypoint dispatches on args; do not override it"
        assert container["args"][0] in ROLES
        roles.add(container["args"][0])
        images.add(container["image"])
    assert roles == ROLES
    assert len(images) == 1, f"one image for every role: {images}"


def test_overlay_sets_the_image_tag_replicas_and_hosts():
    base, production = render(TARGETS["base"]), render(TARGETS["production"])
    assert {c["image"] for _, c in containers(production)} == {"registry.example.com/auto-engagement:1.0.0"}
    assert {c["image"] for _, c in containers(base)} == {"registry.example.com/auto-engagement:latest"}
    (deployment,) = by_kind(production, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert {obj["metadata"].get("namespace") for obj in production} == {"auto-engagement"}
    (ingress,) = by_kind(production, "Ingress")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["engage.example.net"]
    assert config_map(production)["WALLET_CHANNEL"] == "live"


def test_web_probes_and_ports(rendered):
    (deployment,) = by_kind(rendered, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    bind_port = int(config_map(rendered)["GUNICORN_BIND"].rpartition(":")[2])
    assert list(ports.values()) == [bind_port], "the container port is the one gunicorn binds"

    def port_number(probe):
        port = probe["httpGet"]["port"]
        return ports[port] if isinstance(port, str) else port

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert port_number(container[probe]) == bind_port
        assert container[probe]["httpGet"].get("scheme", "HTTP") == "HTTP"
    # Graceful shutdown outlasts a request gunicorn lets run.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(config_map(rendered)["GUNICORN_TIMEOUT"])


def test_service_and_ingress_reach_the_web_pods(rendered):
    (deployment,) = by_kind(rendered, "Deployment")
    (service,) = by_kind(rendered, "Service")
    (ingress,) = by_kind(rendered, "Ingress")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    hosts = set()
    for rule in ingress["spec"]["rules"]:
        hosts.add(rule["host"])
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["name"] == service["metadata"]["name"]
            assert path["backend"]["service"]["port"]["name"] in service_ports
    tls_hosts = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    assert hosts == tls_hosts, "every host served is served over TLS"
    assert all(tls.get("secretName") for tls in ingress["spec"]["tls"])
    # The settings agree with the Ingress: Django accepts its hosts, CSRF trusts them, links point at them.
    config = config_map(rendered)
    assert hosts <= set(config["ALLOWED_HOSTS"].split(","))
    assert {f"https://{host}" for host in hosts} <= set(config["CSRF_TRUSTED_ORIGINS"].split(","))
    for setting in ("PUBLIC_BASE_URL", "WALLET_WEB_SERVICE_URL"):
        assert re.match(r"https://([^/]+)", config[setting]).group(1) in hosts, setting


def test_every_referenced_config_map_and_secret_key_exists(rendered, secret_templates):
    config_maps = {obj["metadata"]["name"]: obj.get("data", {}) for obj in by_kind(rendered, "ConfigMap")}
    secrets = {name: doc.get("stringData", {}) | doc.get("data", {}) for name, doc in secret_templates.items()}
    for spec, container in containers(rendered):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {})
            if "configMapKeyRef" in reference:
                assert reference["configMapKeyRef"]["key"] in config_maps[reference["configMapKeyRef"]["name"]]
            if "secretKeyRef" in reference:
                assert reference["secretKeyRef"]["key"] in secrets[reference["secretKeyRef"]["name"]]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                keys = secrets[volume["secret"]["secretName"]]
                assert {item["key"] for item in volume["secret"].get("items", [])} <= set(keys), volume["name"]
            if "configMap" in volume:
                keys = config_maps[volume["configMap"]["name"]]
                assert {item["key"] for item in volume["configMap"].get("items", [])} <= set(keys), volume["name"]


def mounted_files(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """path -> (Secret, key) for every Secret key the container sees as a file."""
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    files = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if not secret:
            continue
        assert mount.get("readOnly") is True, f"{mount['mountPath']}: credentials are mounted read-only"
        assert "subPath" not in mount, "a subPath mount never sees a rotated Secret"
        for item in secret["items"]:
            files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


def test_credential_files_are_mounted_where_the_settings_say(rendered, secret_templates):
    config = config_map(rendered)
    for setting in FILE_SETTINGS:
        assert config[setting].startswith(CREDENTIALS_DIR + "/"), setting
    for spec, container in containers(rendered):
        files = mounted_files(spec, container)
        named = {config[setting] for setting in FILE_SETTINGS}
        # Every pod reading the ConfigMap finds each file where its setting says, and nothing else is mounted.
        assert set(files) == named, container["name"]
        for path, (secret, key) in files.items():
            assert key in secret_templates[secret]["stringData"], path
        credentials = next(
            v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "auto-engagement-files"
        )
        # Readable by the app's group (fsGroup), by nobody else.
        assert credentials["secret"]["defaultMode"] == 0o440
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]


def settings_names() -> set[str]:
    """Every environment variable the project reads: settings.py, gunicorn.conf.py, .env.example."""
    names = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (PROJECT / "engagement_site" / "settings.py").read_text()))
    names |= set(re.findall(r'_env\("([A-Z][A-Z0-9_]+)"', (PROJECT / "deploy" / "gunicorn.conf.py").read_text()))
    names |= set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (PROJECT / ".env.example").read_text(), re.MULTILINE))
    return names


def test_every_config_and_secret_key_is_a_setting(rendered, secret_templates):
    known = settings_names()
    assert not set(config_map(rendered)) - known, "ConfigMap keys that no setting reads (a typo?)"
    env_secret = secret_templates["auto-engagement-secrets"]["stringData"]
    assert not set(env_secret) - known, "Secret keys that no setting reads (a typo?)"
    assert {"SECRET_KEY", "DATABASE_URL", "TWILIO_AUTH_TOKEN", "APPLE_PASS_KEY_PASSWORD"} <= set(env_secret)
    # Secrets are not in the ConfigMap, and nothing in the ConfigMap is a secret's name.
    assert not set(config_map(rendered)) & set(env_secret)


def cron_line(command: str) -> tuple[str, list[str]]:
    """deploy/crontab's schedule and arguments for a management command."""
    for line in (PROJECT / "deploy" / "crontab").read_text().splitlines():
        if line.startswith("#") or command not in line:
            continue
        schedule = " ".join(line.split()[:5])
        arguments = line.split(f"manage.py {command}", 1)[1].split(">>", 1)[0].split()
        return schedule, arguments
    raise AssertionError(f"no {command} line in deploy/crontab")


@pytest.mark.parametrize(
    ("name", "role", "command", "policy"),
    [
        # The run is safe to run concurrently (row claims with leases): a long run never delays the next tick.
        ("auto-engagement-run", "run", "run_auto_engagement", "Allow"),
        # Two pruners would only race for the same rows.
        ("auto-engagement-prune-logs", "prune", "prune_notification_logs", "Forbid"),
        # Deliverers claim messages with row locks and leases: copies at once are safe.
        ("auto-engagement-deliver-webhooks", "webhooks", "deliver_webhooks", "Allow"),
        # Two would race for the same expired Idempotency-Key records.
        ("auto-engagement-prune-idempotency-keys", "prune-idempotency", "prune_idempotency_keys", "Forbid"),
    ],
)
def test_cronjobs_keep_the_crontab_schedules(rendered, name, role, command, policy):
    (cronjob,) = [obj for obj in by_kind(rendered, "CronJob") if obj["metadata"]["name"] == name]
    schedule, arguments = cron_line(command)
    assert cronjob["spec"]["schedule"] == schedule
    assert cronjob["spec"]["timeZone"] == "Etc/UTC"
    assert cronjob["spec"]["concurrencyPolicy"] == policy
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [role, *arguments]
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_migrate_job(rendered):
    (job,) = by_kind(rendered, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert job["spec"].get("ttlSecondsAfterFinished"), "a finished Job is removed, so the next release can create it"


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed; the renderer is tested on its own")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_renderer_agrees_with_kubectl_kustomize(target):
    """Where kubectl is installed, the test renderer and the real kustomize give the same objects."""
    output = subprocess.run(
        ["kubectl", "kustomize", str(TARGETS[target])], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    key = lambda obj: (obj["kind"], obj["metadata"]["name"])  # noqa: E731
    real = sorted((doc for doc in yaml.safe_load_all(output) if doc), key=key)
    assert sorted(render(TARGETS[target]), key=key) == real


def test_production_settings_pass_the_deploy_check(tmp_path):
    """The production overlay's ConfigMap with the Secret template's keys (dummy values, dummy files at the mounted
    paths) is a configuration Django accepts: `manage.py check --deploy` reports no error."""
    config = config_map(render(TARGETS["production"]))
    secrets = {doc["metadata"]["name"]: doc["stringData"] for doc in load_documents(SECRET_TEMPLATE)}
    files = tmp_path / "credentials"
    files.mkdir()
    for key, value in secrets["auto-engagement-files"].items():
        (files / key).write_text(value)
    # A service-account key file the Google and FCM backends can read (they need a project id).
    service_account = json.dumps({"type": "service_account", "project_id": "example-project"})
    (files / "google-wallet.json").write_text(service_account)
    (files / "fcm.json").write_text(service_account)
    env = {key: value for key, value in os.environ.items() if key not in settings_names()}
    env.update({key: value.replace(CREDENTIALS_DIR, str(files)) for key, value in config.items()})
    env.update(secrets["auto-engagement-secrets"])
    # A key strong enough for the check (the template's CHANGE-ME is not), and a database that exists here.
    env["SECRET_KEY"] = "q8Vr2-Lw0ZtXc9Hn4Jp7Ks1Md6Fb3Gy5Ue8Ai0Oo2Ti4Rn6Sm9Wd1Xf3Ce5Bg7Hj!"
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
