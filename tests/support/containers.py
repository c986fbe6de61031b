"""Run a real container engine and registry for homec's integration tests.

Everything here works without pytest, so fixtures and plain scripts can share it:

- ``LocalRegistry`` runs Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1.
- ``PodmanService`` serves the Docker Engine API from ``podman system service``
  on a Unix socket, with its own containers.conf and registries.conf.
- ``ensure_base_image`` imports a Debian bookworm image with Python 3.11 built by
  debootstrap, because no public image can be pulled on the test machines.
- ``build_wheelhouse`` downloads wheels on the host, because pip inside a
  container cannot verify TLS there.

Caches live under ``$HOMEC_TEST_CACHE``, or ``~/.cache/homec-tests`` when that
variable is unset or empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "HOMEC_TEST_CACHE"
DEBIAN_MIRROR_ENV_VAR = "HOMEC_DEBIAN_MIRROR"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"

BASE_IMAGE_TAG = "localhost/python:3.11-bookworm"
BASE_IMAGE_SUITE = "bookworm"
# Debian bookworm ships Python 3.11. python3-venv brings ensurepip's bundled pip
# wheel, so `python3 -m venv` works without network. python-is-python3 adds the
# `python` command that the official python images have.
BASE_IMAGE_PACKAGES = ("python3", "python3-venv", "python-is-python3")
BASE_IMAGE_KEY_LABEL = "io.homec.test.base-image-key"
BASE_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)

# Every tool that a real build, push and run needs on the host.
CONTAINER_TOOLS = ("podman", "runc", "docker-registry", "debootstrap")
SETUP_HINT = "run `bash .ci/setup-containers.sh` as root to install them"


def containers_conf() -> str:
    """Render the containers.conf for the API service.

    Podman gives containers of root an RLIMIT_NOFILE of 1048576 by default, and
    runc fails with "error setting rlimits ... operation not permitted" when
    that exceeds the hard limit of the service's own process (20000 on the
    Debian 12 test machines). So nofile is capped at this process's hard
    limit, which the service inherits, and nproc at the lower of that hard
    limit and 32768.

    crun fails with podman 4.3 on those machines, so runc is the runtime. They
    run no systemd journal, so podman's events go to a file.
    """
    nofile = _capped_hard_limit(resource.RLIMIT_NOFILE, 1048576)
    nproc = _capped_hard_limit(resource.RLIMIT_NPROC, 32768)
    return (
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "\n"
        "[engine]\n"
        'runtime = "runc"\n'
        'events_logger = "file"\n'
    )


def _capped_hard_limit(limit: int, cap: int) -> int:
    _soft, hard = resource.getrlimit(limit)
    if hard == resource.RLIM_INFINITY:
        return cap
    return min(hard, cap)


# --- tools and cache ---------------------------------------------------------


def tool_available(name: str) -> bool:
    """Return whether the executable ``name`` is on PATH."""
    return shutil.which(name) is not None


def missing_tools(names: Iterable[str] = CONTAINER_TOOLS) -> list[str]:
    """Return the executables from ``names`` that are not on PATH, in order."""
    return [name for name in names if not tool_available(name)]


def missing_tools_reason(names: Iterable[str] = CONTAINER_TOOLS) -> str | None:
    """Return a skip or failure reason naming the missing tools, or None if all exist."""
    missing = missing_tools(names)
    if not missing:
        return None
    return f"container tools not found on PATH: {', '.join(missing)}; {SETUP_HINT}"


def default_cache_dir() -> Path:
    """Return ``$HOMEC_TEST_CACHE``, or ``~/.cache/homec-tests`` when it is unset or empty."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "homec-tests"


def _cache_key(payload: dict[str, Any]) -> str:
    encoded = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an flock on ``lock_path`` so parallel test processes build a cache entry once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _read_tail(path: Path, lines: int = 40) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except FileNotFoundError:
        return f"(no output: {path} does not exist)"


# --- HTTP helpers ------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket, enough for the engine's /_ping."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


def _ping_unix_socket(socket_path: str, timeout: float = 2.0) -> bool:
    """Return whether the Docker API on ``socket_path`` returns 200 for GET /_ping."""
    connection = _UnixHTTPConnection(socket_path, timeout)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


# Loopback requests must not go through a proxy from the environment.
_loopback_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url`` and return (status, body), also for HTTP error statuses."""
    try:
        with _loopback_opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop_process(process: subprocess.Popen[bytes], name: str, timeout: float = 15.0) -> None:
    """Send SIGTERM, then SIGKILL if ``process`` is still running after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, process.pid, timeout)
        process.kill()
        process.wait()


# --- registry ----------------------------------------------------------------


class LocalRegistry:
    """A ``docker-registry`` serving plain HTTP on a free 127.0.0.1 port.

    Use it as a context manager. Storage is a temporary directory unless
    ``storage_dir`` is given, and the temporary one is deleted on exit.
    """

    def __init__(
        self,
        storage_dir: str | os.PathLike[str] | None = None,
        *,
        binary: str = "docker-registry",
        startup_timeout: float = 30.0,
    ) -> None:
        self._requested_storage = Path(storage_dir) if storage_dir is not None else None
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._work_dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        """Host and port as image references use them, e.g. ``127.0.0.1:5123``."""
        if self.port is None:
            raise RuntimeError("LocalRegistry is not running; enter its context first")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the registry's HTTP API."""
        return f"http://{self.address}"

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the registry and wait until GET /v2/ returns 200.

        A port taken by another process between choosing and binding it makes
        the registry exit at once, so start retries with a new port up to three times.
        """
        self._work_dir = tempfile.TemporaryDirectory(prefix="homec-registry-")
        work = Path(self._work_dir.name)
        storage = self._requested_storage or work / "storage"
        storage.mkdir(parents=True, exist_ok=True)

        failure = ""
        for _attempt in range(3):
            self.port = _free_loopback_port()
            config_path = work / "config.yml"
            config_path.write_text(self._config(storage))
            log_path = work / "registry.log"
            with open(log_path, "wb") as log_file:
                self._process = subprocess.Popen(
                    [self._binary, "serve", str(config_path)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            log.info("started %s (pid %d) on %s", self._binary, self._process.pid, self.address)
            failure = self._wait_until_ready()
            if not failure:
                return
            _stop_process(self._process, self._binary)
            output = _read_tail(log_path)
            failure = f"{failure}. Its log ends with:\n{output}"
            if "address already in use" not in output:
                break
            log.warning("port %d was taken before %s bound it; retrying", self.port, self._binary)

        self.stop()
        raise RuntimeError(failure)

    def _config(self, storage: Path) -> str:
        config = {
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {"filesystem": {"rootdirectory": str(storage)}},
            "http": {"addr": self.address},
        }
        # JSON is valid YAML, so no YAML library is needed.
        return json.dumps(config, indent=2)

    def _wait_until_ready(self) -> str:
        """Wait until GET /v2/ returns 200, and return "" then or else why it failed."""
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return f"{self._binary} exited with code {self._process.returncode} during startup"
            try:
                status, _body = _http_get(f"{self.url}/v2/", timeout=2.0)
            except OSError:
                status = None
            if status == 200:
                return ""
            time.sleep(0.2)
        return (
            f"timed out after {self._startup_timeout:g} s waiting for {self._binary} "
            f"on {self.address} to return 200 for GET /v2/"
        )

    def stop(self) -> None:
        """Stop the registry process and delete temporary storage."""
        if self._process is not None:
            _stop_process(self._process, self._binary)
            log.info("stopped %s (pid %d)", self._binary, self._process.pid)
            self._process = None
        if self._work_dir is not None:
            self._work_dir.cleanup()
            self._work_dir = None

    def list_tags(self, repository: str) -> list[str]:
        """Return the tags of ``repository`` (e.g. ``homec/app``), or [] if it does not exist."""
        status, body = _http_get(f"{self.url}/v2/{repository}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise RuntimeError(
                f"GET /v2/{repository}/tags/list on {self.address} failed with HTTP {status}: {body[:500]!r}"
            )
        return json.loads(body).get("tags") or []

    def catalog(self) -> list[str]:
        """Return the repository names that the registry stores."""
        status, body = _http_get(f"{self.url}/v2/_catalog")
        if status != 200:
            raise RuntimeError(
                f"GET /v2/_catalog on {self.address} failed with HTTP {status}: {body[:500]!r}"
            )
        return json.loads(body).get("repositories") or []


# --- podman API service ------------------------------------------------------


def registries_conf(insecure_registries: Iterable[str]) -> str:
    """Render a registries.conf (v2 format) that allows plain HTTP to ``insecure_registries``.

    It sets no unqualified-search registries, so a short name like
    ``python:3.11-bookworm`` only resolves to an image in local storage.
    """
    lines = ["unqualified-search-registries = []", ""]
    for address in insecure_registries:
        lines += ["[[registry]]", f"location = {json.dumps(address)}", "insecure = true", ""]
    return "\n".join(lines)


class PodmanService:
    """``podman system service`` serving the Docker Engine API on a Unix socket.

    Use it as a context manager. Start any ``LocalRegistry`` first and pass its
    ``address`` in ``insecure_registries``, because podman reads
    registries.conf when the service starts. Images go to podman's usual
    storage (``/var/lib/containers/storage`` for root) and stay after ``stop``.
    """

    def __init__(
        self,
        insecure_registries: Sequence[str] = (),
        *,
        binary: str = "podman",
        startup_timeout: float = 60.0,
    ) -> None:
        self.insecure_registries = tuple(insecure_registries)
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._work_dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.socket_path: Path | None = None
        self.containers_conf: Path | None = None
        self.registries_conf: Path | None = None

    @property
    def socket_url(self) -> str:
        """Docker API address for clients, e.g. ``unix:///tmp/homec-podman-x/podman.sock``."""
        if self.socket_path is None:
            raise RuntimeError("PodmanService is not running; enter its context first")
        return f"unix://{self.socket_path}"

    @property
    def env(self) -> dict[str, str]:
        """Variables that point a subprocess at this service and its config.

        DOCKER_HOST is for Docker clients. CONTAINERS_CONF and
        CONTAINERS_REGISTRIES_CONF make a ``podman`` or ``buildah`` CLI use the
        same runtime and insecure registries as the service. The dict contains
        only these three, so merge it into ``os.environ``.
        """
        if self.containers_conf is None or self.registries_conf is None:
            raise RuntimeError("PodmanService is not running; enter its context first")
        return {
            "DOCKER_HOST": self.socket_url,
            "CONTAINERS_CONF": str(self.containers_conf),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
        }

    def __enter__(self) -> PodmanService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config files, start the service and wait until /_ping returns 200."""
        self._work_dir = tempfile.TemporaryDirectory(prefix="homec-podman-")
        work = Path(self._work_dir.name)
        self.containers_conf = work / "containers.conf"
        self.containers_conf.write_text(containers_conf())
        self.registries_conf = work / "registries.conf"
        self.registries_conf.write_text(registries_conf(self.insecure_registries))
        self.socket_path = work / "podman.sock"

        log_path = work / "podman-service.log"
        with open(log_path, "wb") as log_file:
            self._process = subprocess.Popen(
                [self._binary, "system", "service", "--time=0", self.socket_url],
                env={**os.environ, **self.env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        log.info("started %s system service (pid %d) on %s", self._binary, self._process.pid, self.socket_url)

        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = _read_tail(log_path)
                code = self._process.returncode
                self.stop()
                raise RuntimeError(f"{self._binary} system service exited with code {code}:\n{output}")
            if self.socket_path.exists() and _ping_unix_socket(str(self.socket_path)):
                return
            time.sleep(0.2)

        output = _read_tail(log_path)
        self.stop()
        raise RuntimeError(
            f"timed out after {self._startup_timeout:g} s waiting for {self._binary} "
            f"system service to return 200 for GET /_ping. Its output ends with:\n{output}"
        )

    def stop(self) -> None:
        """Stop the service and delete its socket and config files, but keep images in storage."""
        if self._process is not None:
            _stop_process(self._process, f"{self._binary} system service")
            log.info("stopped %s system service (pid %d)", self._binary, self._process.pid)
            self._process = None
        if self._work_dir is not None:
            self._work_dir.cleanup()
            self._work_dir = None
        self.socket_path = None
        self.containers_conf = None
        self.registries_conf = None


# --- Docker SDK helpers ------------------------------------------------------


class PushError(RuntimeError):
    """An image push whose progress stream reported an error."""


def docker_client(engine: Any, timeout: int = 600) -> Any:
    """Return a ``docker.DockerClient`` for ``engine``.

    ``engine`` is a DockerClient (returned as is), a ``PodmanService``, a
    ``unix://`` URL or a socket path. ``timeout`` is the HTTP read timeout in
    seconds. It applies to each read of a build's output stream, so a RUN step
    that prints nothing for longer fails the build.
    """
    import docker

    if isinstance(engine, docker.DockerClient):
        return engine
    if isinstance(engine, PodmanService):
        base_url = engine.socket_url
    else:
        base_url = os.fspath(engine)
        if base_url.startswith("/"):
            base_url = f"unix://{base_url}"
    return docker.DockerClient(base_url=base_url, timeout=timeout)


def build_image(
    client: Any,
    context_dir: str | os.PathLike[str],
    tag: str,
    *,
    network_mode: str = "none",
    **build_kwargs: Any,
) -> tuple[Any, str]:
    """Build ``context_dir`` as ``tag`` and return (image, build log text).

    The build never pulls (``pull=False``), and RUN steps get no network
    unless ``network_mode`` sets another mode. Other keyword arguments go to
    ``client.images.build``. A failed build raises
    ``docker.errors.BuildError``, whose ``build_log`` contains the output.
    """
    # Without forcerm, podman 4.3 keeps the buildah working container of a
    # failed build, visible with `podman ps --all --external`.
    build_kwargs.setdefault("rm", True)
    build_kwargs.setdefault("forcerm", True)
    image, log_entries = client.images.build(
        path=os.fspath(context_dir),
        tag=tag,
        network_mode=network_mode,
        pull=False,
        **build_kwargs,
    )
    return image, build_log_text(log_entries)


def build_log_text(log_entries: Iterable[dict[str, Any]]) -> str:
    """Join the ``stream`` and ``error`` entries of a Docker build log into text."""
    parts = []
    for entry in log_entries:
        if "stream" in entry:
            parts.append(entry["stream"])
        elif "error" in entry:
            parts.append(f"ERROR: {entry['error']}\n")
    return "".join(parts)


def push_image(client: Any, repository: str, tag: str) -> list[dict[str, Any]]:
    """Push ``repository:tag`` and return the decoded progress entries.

    The Docker API reports push failures inside the progress stream, not as an
    HTTP error, so this raises ``PushError`` with that message.
    """
    entries = list(client.images.push(repository, tag=tag, stream=True, decode=True))
    errors = [entry for entry in entries if "error" in entry or "errorDetail" in entry]
    if errors:
        message = errors[0].get("error") or errors[0]["errorDetail"].get("message", "")
        raise PushError(f"push of {repository}:{tag} failed: {message}")
    return entries


# --- base image ----------------------------------------------------------------


def base_image_key(
    packages: Sequence[str] = BASE_IMAGE_PACKAGES,
    suite: str = BASE_IMAGE_SUITE,
) -> str:
    """Return the cache key of a base image built from ``suite`` with ``packages``."""
    return _cache_key(
        {
            "suite": suite,
            "variant": "minbase",
            "arch": _debian_arch(),
            "packages": sorted(packages),
            "changes": list(BASE_IMAGE_CHANGES),
        }
    )


def _debian_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def base_rootfs_tarball(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    packages: Sequence[str] = BASE_IMAGE_PACKAGES,
    suite: str = BASE_IMAGE_SUITE,
    mirror: str | None = None,
) -> Path:
    """Return the cached rootfs tarball for the base image, building it if needed.

    debootstrap needs root and took 39 to 44 s on a 2-core test machine, so
    the tarball is kept under ``cache_dir``, named by ``base_image_key``. The
    key does not pin package versions: a build gets whatever the mirror
    (``$HOMEC_DEBIAN_MIRROR``, else deb.debian.org) serves at that time, so
    delete the tarball to pick up newer Debian point releases.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = base_image_key(packages, suite)
    tarball = cache / f"base-rootfs-{suite}-{key}.tar"
    with _exclusive_lock(cache / "base-rootfs.lock"):
        if tarball.exists():
            log.info("reusing cached base rootfs %s", tarball)
            return tarball
        # Holding the lock means no build is running, so these are left over
        # from a killed one. They are not deleted here because debootstrap
        # may have left /proc mounted inside them.
        for stale in cache.glob("rootfs-*"):
            log.warning(
                "found %s from an interrupted base rootfs build; unmount anything under it, then delete it",
                stale,
            )
        _debootstrap_tarball(tarball, packages, suite, mirror)
    return tarball


def _debootstrap_tarball(tarball: Path, packages: Sequence[str], suite: str, mirror: str | None) -> None:
    missing = missing_tools(["debootstrap"])
    if missing:
        raise RuntimeError(f"cannot build {tarball.name}: debootstrap not found on PATH; {SETUP_HINT}")
    if os.geteuid() != 0:
        raise RuntimeError(f"cannot build {tarball.name}: debootstrap must run as root")

    mirror = mirror or os.environ.get(DEBIAN_MIRROR_ENV_VAR) or DEFAULT_DEBIAN_MIRROR
    started = time.monotonic()
    # The rootfs is built next to the cache, not in /tmp, because debootstrap
    # creates device nodes and a tmpfs may be mounted nodev.
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=tarball.parent) as work:
        root = Path(work) / "root"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--arch={_debian_arch()}",
            f"--include={','.join(packages)}",
            suite,
            str(root),
            mirror,
        ]
        log.info("building base rootfs: %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            details = _read_tail(root / "debootstrap" / "debootstrap.log")
            raise RuntimeError(
                f"debootstrap exited with code {result.returncode}.\n"
                f"stderr:\n{_tail(result.stderr)}\ndebootstrap.log:\n{details}"
            )

        # Downloaded .deb files and apt lists only make the image bigger, and
        # containers on the test machines cannot reach a mirror to use them.
        for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"):
            for path in root.glob(pattern):
                if path.is_file():
                    path.unlink()

        partial = tarball.with_suffix(".tar.partial")
        subprocess.run(
            [
                "tar",
                "--create",
                f"--file={partial}",
                f"--directory={root}",
                "--numeric-owner",
                "--sort=name",
                # The engine mounts its own /dev, /proc and /sys into containers.
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                ".",
            ],
            check=True,
        )
        partial.rename(tarball)
    log.info(
        "built base rootfs %s (%.0f MiB) in %.1f s",
        tarball,
        tarball.stat().st_size / 2**20,
        time.monotonic() - started,
    )


def ensure_base_image(
    engine_or_socket: Any,
    tag: str = BASE_IMAGE_TAG,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    packages: Sequence[str] = BASE_IMAGE_PACKAGES,
    suite: str = BASE_IMAGE_SUITE,
    mirror: str | None = None,
) -> str:
    """Make sure the engine has ``tag`` built from ``packages`` and return ``tag``.

    ``engine_or_socket`` is anything ``docker_client`` accepts. The image
    carries its cache key in the ``io.homec.test.base-image-key`` label. An
    image under ``tag`` with the same key is kept, and otherwise the cached
    rootfs tarball (built first if missing) is imported under ``tag``.
    """
    import docker

    client = docker_client(engine_or_socket)
    key = base_image_key(packages, suite)
    try:
        existing = client.images.get(tag)
    except docker.errors.ImageNotFound:
        existing = None
    if existing is not None and existing.labels.get(BASE_IMAGE_KEY_LABEL) == key:
        log.info("engine already has base image %s (key %s)", tag, key)
        return tag

    tarball = base_rootfs_tarball(cache_dir, packages=packages, suite=suite, mirror=mirror)
    repository, _, image_tag = tag.rpartition(":")
    if not repository or "/" in image_tag:
        raise ValueError(f"invalid base image tag {tag!r}: expected REPOSITORY:TAG")

    started = time.monotonic()
    changes = [*BASE_IMAGE_CHANGES, f"LABEL {BASE_IMAGE_KEY_LABEL}={key}"]
    # podman 4.3 ignores the import's `tag` parameter and names the image
    # REPOSITORY:latest, so the image is imported unnamed and tagged by ID.
    output = client.api.import_image(src=str(tarball), changes=changes)
    image_id = _imported_image_id(output)
    client.api.tag(image_id, repository, image_tag)
    imported = client.images.get(tag)
    if imported.labels.get(BASE_IMAGE_KEY_LABEL) != key:
        raise RuntimeError(
            f"imported {tarball} as {tag}, but its label {BASE_IMAGE_KEY_LABEL} is "
            f"{imported.labels.get(BASE_IMAGE_KEY_LABEL)!r}, expected {key!r}; "
            "the engine probably ignored the import's `changes` parameter"
        )
    log.info("imported %s as %s in %.1f s", tarball.name, tag, time.monotonic() - started)
    return tag


def _imported_image_id(output: str) -> str:
    """Return the image ID from the JSON lines that POST /images/create?fromSrc=- returns."""
    for line in reversed(output.splitlines()):
        if not line.strip():
            continue
        entry = json.loads(line)
        if "error" in entry:
            raise RuntimeError(f"image import failed: {entry['error']}")
        for field in ("id", "status"):
            value = str(entry.get(field, ""))
            if value.startswith("sha256:"):
                return value
    raise RuntimeError(f"image import returned no image ID; output: {output[:500]!r}")


# --- wheelhouse ----------------------------------------------------------------


# Bookworm has glibc 2.36, so any manylinux wheel up to 2_36 runs in the base image.
_MANYLINUX_X86_64 = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]


def build_wheelhouse(
    requirements: Sequence[str],
    dest: str | os.PathLike[str] | None = None,
    python_version: str = "3.11",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Collect wheels for ``requirements`` and their dependencies for the base image.

    Wheels are cached under ``<cache>/wheelhouses/<key>``, keyed by the sorted
    requirements, ``python_version`` and target platform (CPython, manylinux
    x86_64 up to glibc 2.36, or pure Python). With ``dest``, the wheels are
    also copied into that directory (e.g. a build context) and ``dest`` is
    returned; otherwise the cache directory is returned. Install them with
    ``pip install --no-index --find-links DIR``.

    pip first downloads binary wheels only. If a requirement has no wheel,
    ``pip wheel`` builds it from source on the host, which is only allowed
    when the host runs the same Python version on x86_64 Linux.
    """
    if not requirements:
        raise ValueError("build_wheelhouse needs at least one requirement")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(
        {"requirements": sorted(requirements), "python": python_version, "platforms": _MANYLINUX_X86_64}
    )
    wheelhouse = cache / "wheelhouses" / key
    complete_marker = wheelhouse / ".complete"

    with _exclusive_lock(cache / "wheelhouses" / f"{key}.lock"):
        if complete_marker.exists():
            log.info("reusing cached wheelhouse %s for %s", wheelhouse, list(requirements))
        else:
            _fill_wheelhouse(wheelhouse, list(requirements), python_version)
            complete_marker.write_text(json.dumps(sorted(requirements)) + "\n")

    if dest is None:
        return wheelhouse
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    for wheel in wheelhouse.glob("*.whl"):
        shutil.copy2(wheel, target / wheel.name)
    return target


def _fill_wheelhouse(wheelhouse: Path, requirements: list[str], python_version: str) -> None:
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    partial = wheelhouse.with_name(wheelhouse.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)

    abi = "cp" + python_version.replace(".", "")
    download = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet"]
    download += ["--only-binary=:all:", "--implementation=cp", f"--python-version={python_version}"]
    download += [f"--abi={abi}"] + [f"--platform={tag}" for tag in _MANYLINUX_X86_64]
    download += ["--dest", str(partial), *requirements]
    result = subprocess.run(download, capture_output=True, text=True)

    if result.returncode != 0:
        host_version = f"{sys.version_info.major}.{sys.version_info.minor}"
        host_matches = (
            host_version == python_version and sys.platform == "linux" and platform.machine() == "x86_64"
        )
        if not host_matches:
            raise RuntimeError(
                f"pip download of binary wheels for {requirements} failed, and building "
                f"from source needs a host with Python {python_version} on x86_64 Linux "
                f"(this host: Python {host_version}, {sys.platform} {platform.machine()}).\n"
                f"pip stderr:\n{_tail(result.stderr)}"
            )
        log.info("no binary wheels for all of %s; building with pip wheel", requirements)
        build = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--quiet"]
        build += ["--wheel-dir", str(partial), *requirements]
        result = subprocess.run(build, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"pip wheel for {requirements} exited with code {result.returncode}.\n"
                f"pip stderr:\n{_tail(result.stderr)}"
            )

    partial.rename(wheelhouse)
