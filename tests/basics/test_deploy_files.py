"""The deployment files agree with the code: settings they name exist, the image is non-root
and health-checked, compose wires the bot to PostgreSQL, the systemd units run real commands
hardened, and every install path uses the hashed lock. (No Docker engine or systemd runs
here; `make lint` also runs hadolint on the Dockerfile.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.errors import ConfigError
from bot.settings import Settings, check_local_room_bind, load_settings

REPO = Path(__file__).resolve().parents[2]
SETTING = re.compile(r"\bSUPPORTBOT_([A-Z0-9_]+)\b")
SYSTEMD = "deploy/systemd"
SYSTEMD_UNITS = tuple(
    f"{SYSTEMD}/{name}"
    for name in ("supportbot.service", "supportbot-index.service", "supportbot-index.timer")
)


def _names(text: str) -> set[str]:
    return {m.lower() for m in SETTING.findall(text)}


def test_every_setting_named_in_deploy_files_exists() -> None:
    known = set(Settings.model_fields)
    for name in ("Dockerfile", "compose.yaml", "supportbot.example.env", *SYSTEMD_UNITS):
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
    assert text.index('pip install "torch==') < text.index("pip install --no-deps .")
    # The build reads pyproject's readme and license-files: both must be in the context.
    assert re.search(r"^COPY pyproject.toml README.md LICENSE ./$", text, re.M)


def test_the_image_serves_the_local_room_only_when_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The image binds 0.0.0.0; without a Matrix room it must not silently publish the local
    room (no sign-in) but refuse, until SUPPORTBOT_ROOM_TRANSPORT=local says so."""
    runtime = (REPO / "Dockerfile").read_text(encoding="utf-8").split("AS runtime", 1)[1]
    instructions = "\n".join(x for x in runtime.splitlines() if not x.lstrip().startswith("#"))
    image_env = dict(re.findall(r"\b(SUPPORTBOT_[A-Z0-9_]+)=(\S+)", instructions))
    assert image_env["SUPPORTBOT_WEB_HOST"] == "0.0.0.0"
    assert "SUPPORTBOT_ROOM_TRANSPORT" not in image_env
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("SUPPORTBOT_")]:
        monkeypatch.delenv(name)
    for name, value in image_env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="SUPPORTBOT_ROOM_TRANSPORT=local"):
        check_local_room_bind(load_settings())
    monkeypatch.setenv("SUPPORTBOT_ROOM_TRANSPORT", "local")
    check_local_room_bind(load_settings())


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


# --- systemd -------------------------------------------------------------------------------------
def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (systemd allows a key several times, e.g. Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (REPO / name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def _exec_args(service: dict[str, list[str]]) -> list[str]:
    [command] = service["ExecStart"]
    program, *args = command.split()
    assert program == "/opt/supportbot/.venv/bin/supportbot"
    return args


def test_systemd_units_run_real_commands_hardened() -> None:
    from bot.cli.parser import build_parser

    bot = _unit(f"{SYSTEMD}/supportbot.service")["Service"]
    index = _unit(f"{SYSTEMD}/supportbot-index.service")["Service"]
    assert build_parser().parse_args(_exec_args(bot)).command == "run"
    parsed = build_parser().parse_args(_exec_args(index))
    assert (parsed.command, parsed.index_command) == ("index", "build")
    for service in (bot, index):
        assert service["DynamicUser"] == ["yes"] and service["User"] == ["supportbot"]
        assert service["StateDirectory"] == ["supportbot"]
        assert "SUPPORTBOT_DATA_DIR=%S/supportbot" in service["Environment"]
        assert service["EnvironmentFile"] == ["/etc/supportbot/supportbot.env"]
        for key, value in (
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("CapabilityBoundingSet", ""),
            ("UMask", "0077"),
        ):
            assert service[key] == [value], key
    # The token is a credential (a file only the service reads), never an environment value.
    assert bot["LoadCredential"] == ["matrix_token:/etc/supportbot/matrix_token"]
    assert "SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE=%d/matrix_token" in bot["Environment"]
    assert not any("SUPPORTBOT_MATRIX_ACCESS_TOKEN=" in e for e in bot["Environment"])
    assert bot["Restart"] == ["on-failure"] and bot["RestartPreventExitStatus"] == ["2"]
    timer = _unit(f"{SYSTEMD}/supportbot-index.timer")
    assert timer["Timer"]["Unit"] == ["supportbot-index.service"]
    assert timer["Timer"]["OnCalendar"] == ["*-*-* 03:17:00 UTC"]


def test_exit_status_2_is_what_a_fatal_error_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RestartPreventExitStatus=2 relies on this: a bad setting (or a revoked token, any
    FatalError) ends the command with 2, so systemd does not restart it forever."""
    from bot.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SUPPORTBOT_DEVICE", "tpu")
    assert main(["index", "status"]) == 2


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_accepts_the_units(tmp_path: Path) -> None:
    """systemd's own parser: no unknown key, no value it cannot parse (it only warns, so the
    warnings are what is checked). The venv path is swapped for one that exists here."""
    for name in SYSTEMD_UNITS:
        text = (REPO / name).read_text(encoding="utf-8")
        text = text.replace("/opt/supportbot/.venv/bin/supportbot", "/bin/true")
        (tmp_path / Path(name).name).write_text(text, encoding="utf-8")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
        timeout=60,
    )
    problems = [line for line in proc.stderr.splitlines() if str(tmp_path) in line]
    assert proc.returncode == 0 and not problems, proc.stderr


# --- the lock ------------------------------------------------------------------------------------
LOCKS = ("requirements.lock", "requirements-dev.lock")
TORCH_ONLY = re.compile(r"^(torch|triton|nvidia-|cuda-)", re.M)


def _pins(lock: str) -> dict[str, list[str]]:
    """name -> pinned versions (a universal lock may pin one name per Python range)."""
    pins: dict[str, list[str]] = {}
    text = (REPO / lock).read_text(encoding="utf-8")
    for match in re.finditer(r"^([A-Za-z0-9._-]+)==([^\s;]+)", text, re.M):
        pins.setdefault(canonicalize_name(match.group(1)), []).append(match.group(2))
    return pins


def test_the_locks_pin_every_requirement_with_hashes_except_torch() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = {
        "requirements.lock": project["dependencies"] + extras["keras"],
        "requirements-dev.lock": project["dependencies"] + extras["keras"] + extras["dev"],
    }
    for lock in LOCKS:
        text = (REPO / lock).read_text(encoding="utf-8")
        assert not TORCH_ONLY.search(text), f"{lock}: torch or a CUDA-only package is pinned"
        # Every pinned requirement carries at least one hash (pip --require-hashes needs it).
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        for entry in entries:
            if re.match(r"[A-Za-z0-9]", entry):
                assert "--hash=sha256:" in entry, entry.splitlines()[0]
        pins = _pins(lock)
        for spec in wanted[lock]:
            req = Requirement(spec)
            name = canonicalize_name(req.name)
            if name == "torch":
                continue  # installed first, outside the lock
            assert name in pins, f"{lock}: {req.name} is not pinned"
            assert any(req.specifier.contains(v, prereleases=True) for v in pins[name]), (
                f"{lock}: {req.name}=={pins[name]} does not satisfy {req.specifier}"
            )
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert all(dev.get(name) == versions for name, versions in runtime.items()), (
        "requirements-dev.lock must pin the runtime packages as requirements.lock does"
    )


def test_make_and_docker_install_from_the_locks() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes --no-deps -r requirements-dev.lock" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    assert re.search(r"^lock:", makefile, re.M) and ".ci/lock" in makefile
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "pip install --no-deps . && pip check" in dockerfile
    # torch first, then the lock, then the project.
    order = [
        dockerfile.index('pip install "torch=='),
        dockerfile.index("-r requirements.lock"),
        dockerfile.index("pip install --no-deps ."),
    ]
    assert order == sorted(order)
    torch_version = re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.M)
    make_version = re.search(r"^TORCH_VERSION \?= (\S+)$", makefile, re.M)
    assert torch_version and make_version and torch_version.group(1) == make_version.group(1)


def test_license_file_is_the_apache_license() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
