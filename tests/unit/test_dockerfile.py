"""The container image and compose file, checked without a Docker engine (issue 15).

The image once missed ``repository/`` and ``schedules/`` (the API and worker could not
import them), ran as a user that could not write its storage volume, and compose built the
same image three times. These read the Dockerfile, .dockerignore, pyproject.toml and
docker-compose.yml as written, and build the wheel the image installs.
"""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CAIRN_SERVICES = ("migrate", "api", "worker")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    found = []
    for line in lines:
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _packages() -> set[str]:
    """Top-level package folders pyproject installs (``api*`` -> ``api``)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*").rstrip(".") for pattern in patterns}


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _storage_mount_root() -> str:
    env = _compose()["x-cairn-env"]
    return str(env["CAIRN_STORAGE_MOUNT_ROOT"])


def test_every_package_pyproject_installs_is_copied_and_not_ignored() -> None:
    copied = set()
    for keyword, args in _instructions():
        if keyword == "COPY":
            *sources, _destination = shlex.split(args)
            copied |= {source.rstrip("/") for source in sources}
    assert _packages() - copied == set()
    assert {"pyproject.toml", "README.md"} <= copied
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in [*_packages(), "pyproject.toml", "README.md"]:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), path


def test_the_worker_tools_are_installed() -> None:
    installs = [shlex.split(args) for keyword, args in _instructions() if keyword == "RUN"]
    words = {word for command in installs for word in command}
    assert "apt-get" in words and "install" in words
    assert {"restic", "postgresql-client"} <= words


def test_a_non_root_user_owns_the_storage_mount_point() -> None:
    instructions = _instructions()
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    user = users[-1]
    root = _storage_mount_root()
    commands = [args for keyword, args in instructions if keyword == "RUN"]
    assert any(f"mkdir -p {root}" in command for command in commands)
    owner = f"{user}:{user}"
    assert any(
        "chown" in command and owner in command and root.startswith(command.split()[-1])
        for command in (part.strip() for c in commands for part in c.split("&&"))
    ), commands
    worker_volumes = _compose()["services"]["worker"]["volumes"]
    assert any(volume.split(":")[1] == root for volume in worker_volumes)


def test_one_image_built_once_for_api_worker_and_migrations() -> None:
    services = _compose()["services"]
    images = {services[name]["image"] for name in CAIRN_SERVICES}
    assert len(images) == 1
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["migrate"]
    for name in CAIRN_SERVICES:
        if name != "migrate":
            assert services[name]["pull_policy"] == "never"  # run what migrate built
            assert services[name]["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }


def test_temporal_health_uses_the_temporal_cli() -> None:
    check = " ".join(_compose()["services"]["temporal"]["healthcheck"]["test"])
    assert "temporal operator cluster health" in check
    assert "tctl" not in (ROOT / "docker-compose.yml").read_text()


def test_the_wheel_holds_every_file_of_the_packages(tmp_path: Path) -> None:
    """What ``pip install .`` puts in the image: every module and data file (templates,
    static assets, migrations) of the copied packages."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in _packages():
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if ".dist-info/" not in name}
    files = {
        str(path.relative_to(source))
        for package in _packages()
        for path in (source / package).rglob("*")
        if path.is_file()
    }
    assert files - in_wheel == set()
