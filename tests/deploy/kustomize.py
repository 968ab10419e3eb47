"""The subset of kustomize the manifests under deploy/kubernetes use, to render them in CI without kubectl.

Supported kustomization fields: resources (files and directories), namespace, images, replicas and patches in JSON
6902 form (a list of operations, inline or from a file, with a target). Anything else raises `Unsupported`, so a
manifest change that needs more of kustomize fails the tests loudly instead of being rendered wrong. The tests
compare this renderer with `kubectl kustomize` wherever kubectl is installed.
"""

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
    "IngressClass",
}
WORKLOADS_WITH_REPLICAS = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}


class Unsupported(Exception):
    pass


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise Unsupported(f"{directory}: kustomization fields outside the tested subset: {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects.extend(render(path) if path.is_dir() else load_documents(path))
    for patch in kustomization.get("patches", []):
        _apply_patch(directory, patch, objects)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for spec in pod_specs(objects):
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                container["image"] = _set_image(container["image"], image)
    for replicas in kustomization.get("replicas", []):
        matched = [
            o for o in objects if o["kind"] in WORKLOADS_WITH_REPLICAS and o["metadata"]["name"] == replicas["name"]
        ]
        if not matched:
            raise Unsupported(f"{directory}: replicas names no workload: {replicas['name']}")
        for obj in matched:
            obj["spec"]["replicas"] = replicas["count"]
    return objects


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pod specs of the workloads (Deployment, Job, CronJob, ...), as live references."""
    specs = []
    for obj in objects:
        if obj["kind"] == "CronJob":
            specs.append(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        elif obj["kind"] == "Pod":
            specs.append(obj["spec"])
        elif "template" in obj.get("spec", {}):
            specs.append(obj["spec"]["template"]["spec"])
    return specs


def _set_image(current: str, rule: dict[str, str]) -> str:
    if "@" in current:
        raise Unsupported(f"image digests are outside the tested subset: {current}")
    name, separator, tag = current.rpartition(":")
    if not separator or "/" in tag:  # no tag; the colon was a registry's port
        name, tag = current, ""
    if name != rule["name"]:
        return current
    unknown = set(rule) - {"name", "newName", "newTag"}
    if unknown:
        raise Unsupported(f"images fields outside the tested subset: {sorted(unknown)}")
    return f"{rule.get('newName', name)}:{rule.get('newTag', tag or 'latest')}"


def _apply_patch(directory: Path, patch: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    if set(patch) - {"path", "patch", "target"}:
        raise Unsupported(f"{directory}: patch fields outside the tested subset: {sorted(patch)}")
    operations = yaml.safe_load((directory / patch["path"]).read_text() if "path" in patch else patch["patch"])
    if not isinstance(operations, list) or "target" not in patch:
        raise Unsupported(f"{directory}: only JSON 6902 patches (a list of operations with a target) are supported")
    target = patch["target"]
    if set(target) - {"group", "version", "kind", "name", "namespace"}:
        raise Unsupported(f"{directory}: target selectors outside the tested subset: {target}")
    matched = [obj for obj in objects if _matches(obj, target)]
    if not matched:  # kustomize itself is silent here; a patch that changes nothing is a mistake worth failing on.
        raise Unsupported(f"{directory}: patch target matches nothing: {target}")
    for obj in matched:
        for operation in operations:
            _apply_operation(obj, operation)


def _matches(obj: dict[str, Any], target: dict[str, str]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    return (
        target.get("kind", obj["kind"]) == obj["kind"]
        and target.get("name", obj["metadata"]["name"]) == obj["metadata"]["name"]
        and target.get("group", group) == group
        and target.get("version", version) == version
        and target.get("namespace", obj["metadata"].get("namespace")) == obj["metadata"].get("namespace")
    )


def _apply_operation(obj: dict[str, Any], operation: dict[str, Any]) -> None:
    op = operation["op"]
    if op not in {"add", "replace", "remove"}:
        raise Unsupported(f"JSON patch operation outside the tested subset: {op}")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
    parent = obj
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(parent, list):
        if op == "add":
            parent.insert(len(parent) if last == "-" else int(last), value)
        elif op == "replace":
            parent[int(last)] = value
        else:
            del parent[int(last)]
        return
    if op != "add" and last not in parent:
        raise KeyError(f"JSON patch {op} of a missing path: {operation['path']}")
    if op == "remove":
        del parent[last]
    else:
        parent[last] = value
