"""The Docker files agree with the code: settings they name exist, the image is non-root and
health-checked, compose wires the bot to PostgreSQL. (No Docker engine runs here; `make lint`
also runs hadolint on the Dockerfile.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SETTING = re.compile(r"\bSUPPORTBOT_([A-Z0-9_]+)\b")


def _names(text: str) -> set[str]:
    return {m.lower() for m in SETTING.findall(text)}


def test_every_setting_named_in_deploy_files_exists() -> None:
    known = set(Settings.model_fields)
    for name in ("Dockerfile", "compose.yaml", "supportbot.example.env"):
        named = _names((REPO / name).read_text(encoding="utf-8"))
        assert named, name
        assert named <= known, f"{name}: unknown settings {sorted(named - known)}"


def test_dockerfile_is_multistage_non_root_and_health_checked() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    user = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert user and not user[-1].startswith(("root", "0:", "0")), user
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    # torch is installed before the project, so the CPU image never pulls the CUDA build.
    assert text.index('pip install "torch==') < text.index('pip install ".[keras]"')


def test_compose_runs_the_bot_against_postgres() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"db", "bot", "bot-2"} <= set(services)
    for name in ("bot", "bot-2"):
        bot = services[name]
        env = bot["environment"]
        assert env["SUPPORTBOT_DATABASE_URL"].startswith("postgresql://")
        assert "@db:" in env["SUPPORTBOT_DATABASE_URL"]
        assert ":" not in env["SUPPORTBOT_DATABASE_URL"].split("//", 1)[1].split("@", 1)[0], (
            "no password in the URL"
        )
        assert bot["depends_on"]["db"]["condition"] == "service_healthy"
        assert all(str(p).startswith("127.0.0.1:") for p in bot["ports"])
        assert "matrix_token" in bot["secrets"]
    workers = {services[n]["environment"]["SUPPORTBOT_WORKER_ID"] for n in ("bot", "bot-2")}
    assert len(workers) == 2
    assert "healthcheck" in services["db"]


def test_package_data_ships_every_template_static_file_and_migration() -> None:
    """A non-editable install (the Docker image, `pip install .`) must carry the web assets
    and the migration script template: package-data globs cover every such file."""
    import fnmatch
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    for folder in ("bot/web/templates", "bot/web/static", "bot/store/migrations"):
        for path in (REPO / folder).rglob("*"):
            if not path.is_file() or path.suffix == ".py" or "__pycache__" in path.parts:
                continue  # modules ship as part of their package
            package = path.parent.relative_to(REPO).as_posix().replace("/", ".")
            owners = [p for p in package_data if package == p or package.startswith(p + ".")]
            assert owners, f"{path.relative_to(REPO)}: no package-data entry for {package}"
            owner = max(owners, key=len)
            relative = path.relative_to(REPO / owner.replace(".", "/")).as_posix()
            assert any(fnmatch.fnmatch(relative, g) for g in package_data[owner]), (
                f"{path.relative_to(REPO)} is not in [tool.setuptools.package-data]"
            )
