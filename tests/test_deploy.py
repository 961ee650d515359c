"""Deployment files (Dockerfile, compose.yaml, compose.local-sandbox.yaml, .env.example) and the
README's settings table agree with the code: every shoal variable they use is a real setting,
and every setting is documented. No Docker engine needed — the files are parsed.

`python -m tests.test_deploy` prints the README's settings table generated from `Settings`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from shoal.config import Settings

ROOT = Path(__file__).resolve().parents[1]
# Variables of these families must be shoal settings; anything else in the deployment files is
# a documented third-party variable (images, Compose interpolation, LiteLLM).
OURS = re.compile(r"\b((?:SHOAL|LANGFUSE|DAYTONA|STRIPE|SUPABASE)_[A-Z0-9_]+)\b")
THIRD_PARTY = {
    "POSTGRES_PASSWORD",
    "POSTGRES_USER",
    "POSTGRES_DB",
    "RABBITMQ_DEFAULT_USER",
    "RABBITMQ_DEFAULT_PASS",
    "PROXY_PORT",
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "TAVILY_API_KEY",
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
README_START = "<!-- settings-table:start -->"
README_END = "<!-- settings-table:end -->"


def setting_names() -> dict[str, Any]:
    """Every environment variable Settings reads, mapped to its field."""
    out: dict[str, Any] = {}
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices), field
        for choice in alias.choices:
            out[str(choice)] = field
    return out


def _text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _compose(name: str = "compose.yaml") -> dict[str, Any]:
    data = yaml.safe_load(_text(name))
    assert isinstance(data, dict)
    return data


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


@pytest.mark.parametrize(
    "name", ["Dockerfile", "compose.yaml", "compose.local-sandbox.yaml", ".env.example"]
)
def test_every_shoal_variable_in_deployment_files_is_a_setting(name: str) -> None:
    used = set(OURS.findall(_text(name)))
    assert used, f"{name} names no shoal variable at all?"
    unknown = sorted(used - set(setting_names()))
    assert not unknown, f"{name} uses variables Settings does not read: {unknown}"


def test_compose_environment_keys_are_settings_or_documented_third_party() -> None:
    known = set(setting_names()) | THIRD_PARTY
    for file in ("compose.yaml", "compose.local-sandbox.yaml"):
        for service_name, service in _compose(file)["services"].items():
            unknown = sorted(set(_service_env(service)) - known)
            assert not unknown, f"{file}: {service_name} sets unknown variables {unknown}"


def test_compose_has_the_production_column() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "rabbitmq", "migrate", "api", "worker", "proxy"} <= set(services)
    api, worker, migrate = services["api"], services["worker"], services["migrate"]
    assert api["deploy"]["replicas"] == 2 and worker["deploy"]["replicas"] == 2
    assert api["command"][:3] == ["serve", "--host", "0.0.0.0"]
    assert worker["command"] == ["worker"] and migrate["command"] == ["migrate"]
    assert "ports" not in worker and "expose" not in worker  # workers take no traffic
    assert "ports" not in api  # replicas are reached through the proxy only
    assert migrate["restart"] == "no"
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        for backing in ("postgres", "redis", "rabbitmq"):
            assert deps[backing]["condition"] == "service_healthy"
            assert "healthcheck" in services[backing]
    env = _service_env(worker)
    assert env["SHOAL_ENV"] == "production"
    assert env["SHOAL_DATABASE_URL"].startswith("postgresql://")
    assert env["SHOAL_BROKER_URL"].startswith("amqp://")
    assert env["SHOAL_REDIS_URL"].startswith("redis://")
    assert "daytona" in env["SHOAL_SANDBOX_PROVIDER"] and "DAYTONA_API_KEY" in env
    assert _service_env(api) == env  # every shoal process sees the same configuration


def test_local_sandbox_override_relaxes_only_what_bubblewrap_needs() -> None:
    services = _compose("compose.local-sandbox.yaml")["services"]
    for name in ("api", "worker"):
        service = services[name]
        assert _service_env(service)["SHOAL_SANDBOX_PROVIDER"] == "local"
        assert service["build"]["target"] == "local-sandbox"
        assert set(service["security_opt"]) == {
            "seccomp=unconfined",
            "apparmor=unconfined",
            "systempaths=unconfined",
        }
        assert not service.get("cap_add") and not service.get("privileged")
        assert any(str(v).endswith(":/data") for v in service["volumes"])


def _stages(dockerfile: str) -> dict[str, list[str]]:
    """Instructions per build stage (continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(2) or match.group(1), [])
        current.append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    text = _text("Dockerfile")
    stages = _stages(text)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert {"build", "runtime", "local-sandbox"} <= set(stages)
    assert list(stages)[-1] == "default" and stages["default"][0].endswith("runtime AS default")
    assert any("-c constraints.txt" in line for line in stages["build"])
    runtime = stages["runtime"]
    assert not any(line.startswith("RUN pip") or "gcc" in line for line in runtime)
    # Every stage that can be a final image ends as the unprivileged user.
    for stage in ("runtime", "local-sandbox"):
        users = [line.split()[1] for line in stages[stage] if line.startswith("USER ")]
        assert users and users[-1] == "shoal", stage
    assert 'ENTRYPOINT ["shoal"]' in runtime
    health = next(line for line in runtime if line.startswith("HEALTHCHECK"))
    assert "/api/health" in health


def test_compose_uses_the_same_entrypoint_commands_as_the_cli() -> None:
    from typer.main import get_command

    from shoal.cli import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for service in _compose()["services"].values():
        command = service.get("command")
        if service.get("image", "").startswith("shoal") and command:
            assert command[0] in commands


# -- README ----------------------------------------------------------------------------------


def _readme_block() -> str:
    text = _text("README.md")
    assert README_START in text and README_END in text, "README lacks the settings table"
    return text.split(README_START, 1)[1].split(README_END, 1)[0]


def test_readme_documents_every_setting_and_only_real_ones() -> None:
    block = _readme_block()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)`", block, re.MULTILINE))
    names = set(setting_names())
    missing = sorted(names - documented)
    assert not missing, (
        f"README.md settings table lacks {missing}; `python -m tests.test_deploy` prints the "
        "table generated from Settings:\n" + settings_table()
    )
    stale = sorted(documented - names)
    assert not stale, f"README.md documents settings that no longer exist: {stale}"


def test_readme_keeps_its_first_lines() -> None:
    assert _text("README.md").startswith("# shoal\n\n```sh\nmake run")


def settings_table() -> str:
    """The README table: every setting, its default and its description."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for env, field in setting_names().items():
        default = field.default if field.default_factory is None else field.default_factory()
        shown = "—" if default in (None, [], {}) else f"`{default}`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{env}` | {shown} | {description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
