"""Called by pytest (scripts/test.sh, .ci/run): the container image that scripts/build-image.sh
builds runs release-bot as its non-root user on a read-only root filesystem.

The image is built once per session through the script (base and wheelhouse come from its
cache). Commands run inside it two ways: `buildah run` (chroot isolation), and a chroot of the
image's mounted rootfs made read-only, with a fresh tmpfs on /tmp and the config files
bind-mounted read-only on /mnt, entered as the image's own user and entrypoint, the way a
Kubernetes pod with readOnlyRootFilesystem and an emptyDir on /tmp runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "deploy" / "examples" / "apps.yaml"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
BUILDAH_ENV = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
SIZE_BUDGET_MB = 600
"""247 MB at first (Debian base 129 MB, the venv the rest); charts and the statistical judge add
numpy, scipy, matplotlib and Pillow, about 310 MB installed (their own test suites removed)."""

# A cold build (debootstrap base, wheelhouse, image) runs in the first test's setup.
pytestmark = pytest.mark.timeout(1500)

# Runs as root in a private mount and PID namespace: $1 is the image's mounted rootfs, $2 the
# host directory to show read-only on /mnt, $3 the image's user, $4 its working directory;
# the rest is `env -i` assignments followed by the command.
READ_ONLY_RUN = r"""
set -eu
root=$1 config=$2 user=$3 workdir=$4
shift 4
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m tmpfs "$root/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"
for device in null zero full random urandom; do
  touch "$root/dev/$device"
  mount --bind "/dev/$device" "$root/dev/$device"
done
mount --bind -o ro "$config" "$root/mnt"
exec chroot --userspec="$user" --groups="${user#*:}" "$root" \
  /usr/bin/env -i --chdir="$workdir" "$@"
"""


def buildah(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env=BUILDAH_ENV,
    )


def unavailable_reason() -> str | None:
    """Why buildah cannot run here at all, or None. The build script installs buildah when
    it is missing, which takes root; so does buildah itself (no rootless setup here)."""
    if os.geteuid() != 0:
        return "building and running the image needs root (apt-get, buildah, mount namespaces)"
    if shutil.which("apt-get") is None and shutil.which("buildah") is None:
        return "no buildah and no apt-get to install it"
    return None


@dataclass(frozen=True)
class Image:
    name: str
    image_id: str
    size: str
    inspect: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.inspect["OCIv1"]["config"]
        return config


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def image() -> Image:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the image, but {reason}")
        pytest.skip(reason)
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-image.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    assert built.returncode == 0, f"build-image.sh failed:\n{built.stderr[-6000:]}"
    printed = dict(line.split(": ", 1) for line in built.stdout.splitlines() if ": " in line)
    assert printed["image"] == f"localhost/release-bot:{VERSION}"
    assert re.fullmatch(r"[0-9a-f]{64}", printed["id"]), printed
    inspected = json.loads(buildah("inspect", "--type", "image", printed["id"]).stdout)
    return Image(printed["image"], printed["id"], printed["size"], inspected)


@pytest.fixture
def container(image: Image) -> Iterator[str]:
    name = buildah("from", "--quiet", "--pull=never", image.image_id).stdout.strip()
    yield name
    buildah("rm", name, check=False)


@pytest.fixture
def run_read_only(container: str, image: Image, tmp_path: Path) -> Iterator[Any]:
    """Run the image's entrypoint with arguments as described in the module docstring;
    files written to tmp_path appear read-only under /mnt."""
    root = buildah("mount", container).stdout.strip()
    tmp_path.chmod(0o755)  # readable by the image's user, like a mounted ConfigMap
    env = [entry for entry in image.config["Env"] if "=" in entry]

    def run(*args: str, entrypoint: list[str] | None = None) -> Run:
        command = [*(image.config["Entrypoint"] if entrypoint is None else entrypoint), *args]
        completed = subprocess.run(
            [
                *("unshare", "--mount", "--pid", "--fork", "sh", "-c", READ_ONLY_RUN, "sh"),
                *(root, str(tmp_path), image.config["User"], image.config["WorkingDir"]),
                *env,
                *command,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        return Run(completed.returncode, completed.stdout, completed.stderr)

    yield run
    buildah("umount", container, check=False)


def test_image_config_runs_release_bot_serve_as_a_numeric_non_root_user(image: Image) -> None:
    config = image.config
    user, _, group = config["User"].partition(":")
    assert user.isdigit() and int(user) != 0, config["User"]
    assert group.isdigit() and int(group) != 0, config["User"]
    assert config["Entrypoint"] == ["/opt/release-bot/bin/release-bot"]
    assert config["Cmd"] == ["serve"]
    assert "3000/tcp" in config["ExposedPorts"]
    env = dict(entry.split("=", 1) for entry in config["Env"])
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert config["WorkingDir"] == "/tmp"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "release-bot"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.base.name"].startswith("localhost/release-bot-base:")
    assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")


def test_image_stays_within_its_size_budget(image: Image) -> None:
    number, unit = image.size.split()
    size_mb = float(number) * {"kB": 1e-3, "MB": 1, "GB": 1e3}[unit]
    assert size_mb <= SIZE_BUDGET_MB, image.size


def test_buildah_run_starts_the_console_script_as_the_image_user(
    image: Image, container: str
) -> None:
    whoami = buildah("run", container, "--", "id", "-u", check=False)
    assert (whoami.returncode, whoami.stdout.strip()) == (0, image.config["User"].split(":")[0])

    helped = buildah("run", container, "--", *image.config["Entrypoint"], "--help", check=False)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: release-bot ")
    for command in ("serve", "check-config", "demo"):
        assert command in helped.stdout


def test_check_config_on_a_read_only_root_says_ok_for_the_example(
    run_read_only: Any, tmp_path: Path
) -> None:
    shutil.copy(EXAMPLE, tmp_path / "apps.yaml")
    example = yaml.safe_load(EXAMPLE.read_text())
    apps, plans = example["apps"], example["plans"]

    for path in ("/mnt/apps.yaml", "/usr/share/release-bot/examples/apps.yaml"):
        checked = run_read_only("check-config", path)
        assert checked.returncode == 0, checked.stderr
        assert checked.stderr == ""
        lines = checked.stdout.splitlines()
        assert lines[0] == f"OK: {len(apps)} apps, {len(plans) + 1} plans"  # + built-in default
        for app in apps:
            assert any(line.startswith(f"  {app}: ") for line in lines), (app, lines)


def test_check_config_on_a_read_only_root_names_file_line_and_column_of_a_mistake(
    run_read_only: Any, tmp_path: Path
) -> None:
    text = EXAMPLE.read_text()
    broken = text.replace("    slack_channel:", "    slack_chanel:", 1)
    assert broken != text
    line = next(
        number
        for number, content in enumerate(broken.splitlines(), start=1)
        if content.startswith("    slack_chanel:")
    )
    (tmp_path / "broken.yaml").write_text(broken)

    checked = run_read_only("check-config", "/mnt/broken.yaml")

    assert checked.returncode == 1, (checked.stdout, checked.stderr)
    assert checked.stdout == ""
    assert "Traceback" not in checked.stderr
    assert f"/mnt/broken.yaml:{line}:5: apps.shop-api.slack_chanel: unknown field" in (
        checked.stderr
    )


def test_serve_on_a_read_only_root_loads_the_app_and_names_the_missing_slack_token(
    run_read_only: Any,
) -> None:
    served = run_read_only("serve")

    assert served.returncode == 2, (served.stdout, served.stderr)
    assert "Traceback" not in served.stderr
    assert "missing environment variable SLACK_BOT_TOKEN" in served.stderr


def test_every_module_of_the_installed_project_imports_from_build_time_bytecode(
    run_read_only: Any,
) -> None:
    # All modules of the installed distribution (whatever its packages are called), then every
    # module loaded from a .py file by then, the standard library's included, must have come
    # with its bytecode: on a read-only root nothing compiled at start is ever cached.
    script = (
        "import importlib, importlib.metadata as md, os, sys\n"
        "names = sorted({str(f)[:-3].replace('/', '.').removesuffix('.__init__')\n"
        "    for f in md.files('release-bot') or ()\n"
        "    if str(f).endswith('.py') and not str(f).startswith('..')})\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "specs = [getattr(m, '__spec__', None) for m in list(sys.modules.values())]\n"
        "loaded = [s for s in specs if s and s.has_location and s.origin.endswith('.py')]\n"
        "uncompiled = sorted(s.name for s in loaded\n"
        "    if not (s.cached and os.path.exists(s.cached)))\n"
        "print(len(names), 'modules', len(loaded), 'loaded')\n"
        "print('no bytecode:', ' '.join(uncompiled))\n"
    )
    imported = run_read_only("-c", script, entrypoint=["/opt/release-bot/bin/python"])

    assert imported.returncode == 0, imported.stderr
    counts, uncompiled = imported.stdout.splitlines()
    project_modules, loaded = int(counts.split()[0]), int(counts.split()[2])
    assert project_modules >= 10, counts
    assert loaded > 200, counts  # slack_bolt, kubernetes, pydantic, redis... and the stdlib
    assert uncompiled.removeprefix("no bytecode:").split() == [], uncompiled


def test_the_root_filesystem_is_read_only_and_only_tmp_takes_writes(run_read_only: Any) -> None:
    probe = run_read_only(
        "-c",
        "import os, tempfile\n"
        "tempfile.NamedTemporaryFile(dir=os.environ['HOME']).close()\n"
        "for path in ('/opt/release-bot/probe', '/etc/probe'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as error:\n"
        "        print(path, error.strerror)\n",
        entrypoint=["/opt/release-bot/bin/python"],
    )

    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [
        "/opt/release-bot/probe Read-only file system",
        "/etc/probe Read-only file system",
    ]
