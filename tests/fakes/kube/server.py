"""The HTTPS front of the fake API server: paths, verbs, authentication, streaming answers."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import secrets
import signal
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import trustme

from tests.fakes.https import TLSHandler, TLSServer
from tests.fakes.kube import openapi, resources
from tests.fakes.kube.api import Api, Result
from tests.fakes.kube.controllers import Controllers
from tests.fakes.kube.errors import ApiError, method_not_allowed, page_not_found, unauthorized
from tests.fakes.kube.kubelet import External, Kubelet, require_root
from tests.fakes.kube.resources import BY_PATH, CSI_DRIVER, DRIVERS, STORAGE_CLASS, ResourceType
from tests.fakes.kube.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One request as RBAC sees it (``nonResourceURL`` requests have ``path`` instead)."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    path: str = ""


class FakeKube:
    """A Kubernetes API server with a simulated kubelet and CSI driver on local folders."""

    def __init__(
        self,
        root: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._root_arg = Path(root) if root else None
        self.root = self._root_arg or Path("/nonexistent")
        self.store = Store()
        self.api = Api(self.store)
        self.requests: list[Request] = []
        self._log_cuts: list[int] = []  # lines after which the next follow streams end
        self._log_refusals = 0  # how many of the next pods/log requests cannot reach the node
        self._lock = threading.Lock()
        self._mounts: list[tuple[str, str, Path, bool]] = []  # (kind, key, folder, squash)
        self._server: TLSServer[FakeKube] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.kubelet: Kubelet | None = None
        self.controllers: Controllers | None = None
        self.ca_path = Path()
        self.kubeconfig = Path()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeKube:
        require_root()  # its kubelet runs each container as its pod's user
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-kube-")
        tmp = Path(self._tmp.name)
        self.root = self._root_arg or tmp / "cluster"
        for sub in ("volumes", "snapshots", "pods"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        self.ca_path = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(self.host, "localhost", "127.0.0.1").configure_cert(context)
        self.kubelet = Kubelet(
            self.api,
            volume_folder=lambda pvc: (
                self.controllers.volume_folder(pvc) if self.controllers else None
            ),
            external_folder=self._mapped,
            scratch_root=self.root / "pods",
            env_base={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        self.controllers = Controllers(self.api, self.kubelet, self.root, CSI_DRIVER)
        self.controllers.start()
        self._seed()
        self._stopping.clear()
        self._server = TLSServer((self.host, self.port), self, context, _Handler, "fake kube")
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-kube-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self.kubeconfig = tmp / "kubeconfig"
        self.write_kubeconfig(self.kubeconfig)
        return self

    def _seed(self) -> None:
        """What a fresh cluster has: the default namespaces (and their default accounts),
        a default StorageClass and one of the second CSI driver."""
        for name in ("default", "kube-system", "kube-public"):
            self.api.create(
                resources.lookup("", "namespaces"),
                "",
                json.dumps({"metadata": {"name": name}}).encode(),
                {},
            )
        for name, driver in DRIVERS.items():
            meta: dict[str, Any] = {"name": name}
            if name == STORAGE_CLASS:
                meta["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
            self.api.create(
                resources.lookup("storage.k8s.io", "storageclasses"),
                "",
                json.dumps({"metadata": meta, "provisioner": driver}).encode(),
                {},
            )

    def stop(self) -> None:
        self._stopping.set()
        self.store.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.controllers is not None:
            self.controllers.stop()
        if self.kubelet is not None:
            self.kubelet.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def write_kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """A kubeconfig (JSON, which is YAML) for the official clients: CA, server, token."""
        ca_data = base64.b64encode(self.ca_path.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": context,
                    "cluster": {"server": self.url, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": context, "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": "default"},
                }
            ],
            "current-context": context,
            "preferences": {},
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    # --- knobs and inspection for tests ------------------------------------------------------

    def map_nfs(self, server: str, export: str, folder: Path, *, root_squash: bool = False) -> None:
        """An ``nfs`` volume of ``server:export`` (or below it) is this folder. With
        ``root_squash``, as the export option: a container that mounts it and would run as
        uid or gid 0 runs as nobody (``kubelet.squashed``)."""
        self._mounts.append(("nfs", f"{server}:{export.rstrip('/')}", Path(folder), root_squash))

    def map_host_path(self, path: str, folder: Path) -> None:
        """A ``hostPath`` of ``path`` (or below it) is this folder instead of the host's path."""
        self._mounts.append(("hostPath", path.rstrip("/"), Path(folder), False))

    def _mapped(self, kind: str, source: dict[str, Any]) -> External | None:
        if kind == "nfs":
            wanted = f"{source.get('server')}:{str(source.get('path', '')).rstrip('/')}"
        else:
            wanted = str(source.get("path", "/")).rstrip("/")
        mounts = sorted(self._mounts, key=lambda m: len(m[1]), reverse=True)
        for mount_kind, key, folder, root_squash in mounts:
            if mount_kind == kind and (wanted == key or wanted.startswith(key + "/")):
                return External(folder / wanted[len(key) :].lstrip("/"), root_squash)
        if kind == "hostPath":
            return External(Path(wanted or "/"))  # the fake's node is this machine
        return None

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object (as held by the fake), or None."""
        return self.store.get(resources.lookup(group, plural), namespace, name)

    def list(self, group: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.list(resources.lookup(group, plural), namespace)

    def pvc_path(self, namespace: str, name: str) -> Path:
        """The folder backing a bound claim (raises while the claim is missing or Pending)."""
        pvc = self.get("", "persistentvolumeclaims", namespace, name)
        folder = self.controllers.volume_folder(pvc) if pvc and self.controllers else None
        if folder is None:
            raise LookupError(f"persistentvolumeclaim {namespace}/{name} is not bound")
        return folder

    def snapshot_path(self, namespace: str, name: str) -> Path:
        snapshot = self.get("snapshot.storage.k8s.io", "volumesnapshots", namespace, name)
        bound = ((snapshot or {}).get("status") or {}).get("boundVolumeSnapshotContentName")
        content = self.get("snapshot.storage.k8s.io", "volumesnapshotcontents", "", str(bound))
        ready = (snapshot or {}).get("status", {}).get("readyToUse")
        if not content or not ready or self.controllers is None:
            raise LookupError(f"volumesnapshot {namespace}/{name} is not ready")
        return self.controllers.snapshot_folder(content)

    def cut_log_streams(self, count: int, after_lines: int) -> None:
        """The next ``count`` followed logs end after ``after_lines`` lines while the
        container still runs, as when a proxy or a kubelet restart cuts the connection."""
        with self._lock:
            self._log_cuts += [after_lines] * count

    def refuse_logs(self, count: int) -> None:
        """The next ``count`` ``pods/log`` requests answer 500: the API server cannot reach
        the node's kubelet (a firewalled port 10250), while pods run and report as usual."""
        with self._lock:
            self._log_refusals = count

    def take_log_refusal(self) -> bool:
        with self._lock:
            refused = self._log_refusals > 0
            self._log_refusals -= int(refused)
            return refused

    def take_log_cut(self) -> int | None:
        with self._lock:
            return self._log_cuts.pop(0) if self._log_cuts else None

    def inject_sidecar(self, namespace: str, enabled: bool = True) -> None:
        """Pods created in ``namespace`` from now on (or, ``enabled`` False, no longer) get a
        service mesh's proxy container, which runs until the pod is deleted: a Job's pod
        with it never ends, whatever its other containers did."""
        if enabled:
            self.api.meshed.add(namespace)
        else:
            self.api.meshed.discard(namespace)

    def evict(self, namespace: str, name: str) -> None:
        """What a node drain does to a pod: a ``DisruptionTarget`` condition, then a graceful
        deletion (SIGTERM, SIGKILL after the grace period)."""
        assert self.controllers is not None
        self.controllers.evict(namespace, name)

    def compact(self) -> None:
        """Drops the watch history: a watch from an older resourceVersion gets 410 Expired."""
        if self.controllers is not None:
            self.controllers.wait_synced()
        self.store.compact()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def reset_requests(self) -> None:
        """Forgets the recorded requests (e.g. before the part a test compares with RBAC)."""
        with self._lock:
            self.requests.clear()

    def used_in(self) -> set[tuple[str, str, str, str]]:
        """(namespace, verb, group, resource[/subresource]) of every resource request served;
        the namespace is empty for cluster-scoped objects and lists across all namespaces
        (which RBAC grants only cluster-wide)."""
        with self._lock:
            return {
                (
                    "" if r.resource == "namespaces" else r.namespace,
                    r.verb,
                    r.group,
                    f"{r.resource}/{r.subresource}" if r.subresource else r.resource,
                )
                for r in self.requests
                if r.resource
            }

    def used_permissions(self) -> set[tuple[str, str, str]]:
        """(verb, group, resource[/subresource]) of every resource request served."""
        with self._lock:
            return {
                (r.verb, r.group, f"{r.resource}/{r.subresource}" if r.subresource else r.resource)
                for r in self.requests
                if r.resource
            }


# --- request routing ----------------------------------------------------------------------------


@dataclass
class _Target:
    resource: ResourceType
    namespace: str | None  # None: all namespaces (or cluster-scoped)
    name: str
    subresource: str


def _route(path: str) -> tuple[str, str, list[str]] | None:
    """(group, version, rest) of a resource path under /api/v1 or /apis/<g>/<v>."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        return "", "v1", parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2], parts[3:]
    return None


def _target(group: str, version: str, rest: list[str]) -> _Target | None:
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_PATH:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    resource = BY_PATH.get((group, version, rest[0]))
    if resource is None or (namespace is not None and not resource.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in resource.subresources:
        return None
    if resource.namespaced and name and namespace is None:
        return None
    return _Target(resource, namespace, name, sub)


class _Handler(TLSHandler):
    timeout = 120
    server: TLSServer[FakeKube]

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    # plumbing

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.server.fake
        try:
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                raise unauthorized()
            self._dispatch(method, path, params, raw)
        except ApiError as exc:
            self._json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # the API server answers 500 with a Status, never a traceback
            logger.exception("fake kube: %s %s failed", method, path)
            self._json(
                500, ApiError(500, "InternalError", f"Internal error occurred: {exc}").status()
            )

    def _dispatch(self, method: str, path: str, params: dict[str, str], raw: bytes) -> None:
        fake = self.server.fake
        if method == "GET":
            document = self._discovery(path)
            if document is not None:
                fake.record(Request("get", "", "", "", "", "", path))
                self._json(200, document)
                return
            if path.startswith("/openapi/"):
                fake.record(Request("get", "", "", "", "", "", path))
                self._openapi(path)
                return
        route = _route(path)
        target = _target(*route) if route else None
        if target is None:
            fake.record(Request(method.lower(), "", "", "", "", "", path))
            raise page_not_found()
        verb = self._verb(method, target, params)
        r = target.resource
        fake.record(
            Request(
                verb, r.group, r.plural, target.subresource, target.namespace or "", target.name
            )
        )
        api = fake.api
        ns = target.namespace or ""
        if target.subresource == "log":
            self._log(ns, target.name, params)
        elif target.subresource == "scale":
            if verb == "get":
                self._json(200, api.get_scale(r, ns, target.name))
            elif verb in ("update", "patch"):
                content_type = self._content_type() if verb == "patch" else None
                self._result(api.write_scale(r, ns, target.name, raw, content_type, params))
            else:
                raise method_not_allowed(method, r.group, f"{r.plural}/scale")
        elif verb == "get":
            self._json(200, api.get(r, ns, target.name))
        elif verb == "list":
            self._json(200, api.list(r, target.namespace if r.namespaced else None, params))
        elif verb == "watch":
            self._watch(r, target.namespace if r.namespaced else None, params)
        elif verb == "create":
            self._result(api.create(r, ns, raw, params))
        elif verb == "update":
            self._result(api.update(r, ns, target.name, raw, params))
        elif verb == "patch":
            self._result(api.patch(r, ns, target.name, raw, self._content_type(), params))
        elif verb == "delete":
            self._result(api.delete(r, ns, target.name, raw, params))
        elif verb == "deletecollection":
            self._result(
                api.delete_collection(r, target.namespace if r.namespaced else None, raw, params)
            )
        else:
            raise method_not_allowed(method, r.group, r.plural)

    @staticmethod
    def _verb(method: str, target: _Target, params: dict[str, str]) -> str:
        collection = not target.name
        if method == "GET":
            if params.get("watch") in ("true", "1"):
                return "watch"
            return "list" if collection else "get"
        if method == "POST":
            return "create" if collection else "post"
        if method == "DELETE":
            return "deletecollection" if collection else "delete"
        if collection:
            return method.lower()
        return {"PUT": "update", "PATCH": "patch"}[method]

    def _content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip()

    def _discovery(self, path: str) -> dict[str, Any] | None:
        fake = self.server.fake
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return resources.version_info()
        if parts == ["api"]:
            return resources.api_versions(f"{fake.host}:{fake.port}")
        if parts == ["apis"]:
            return resources.api_group_list()
        if parts == ["api", "v1"]:
            return resources.resource_list("", "v1")
        if len(parts) == 2 and parts[0] == "apis":
            return resources.api_group(parts[1])
        if len(parts) == 3 and parts[0] == "apis":
            return resources.resource_list(parts[1], parts[2])
        return None

    def _openapi(self, path: str) -> None:
        accept = self.headers.get("Accept") or ""
        body, content_type = openapi.serve(path, accept)
        if body is None:
            raise page_not_found()
        self._send(200, body, content_type)

    def _result(self, result: Result) -> None:
        self._json(result.code, result.body, result.warnings)

    def _json(self, code: int, body: dict[str, Any], warnings: list[str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._send(code, data, "application/json", warnings)

    def _send(
        self, code: int, data: bytes, content_type: str, warnings: list[str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for warning in warnings or []:
            # k8s.io/apiserver's warning header: the text quoted, `\` and `"` escaped.
            quoted = warning.replace("\\", "\\\\").replace('"', '\\"')
            self.send_header("Warning", f'299 - "{quoted}"')
        self.end_headers()
        self.wfile.write(data)

    # streaming

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _watch(self, resource: ResourceType, namespace: str | None, params: dict[str, str]) -> None:
        fake = self.server.fake
        events = fake.api.watch(resource, namespace, params, fake._stopping)
        self._start_stream("application/json")
        try:
            for event in events:
                self._chunk(json.dumps(event).encode() + b"\n")
        finally:
            self._end_stream()

    def _log(self, namespace: str, name: str, params: dict[str, str]) -> None:
        kubelet = self.server.fake.kubelet
        assert kubelet is not None
        buffer, container = kubelet.log(namespace, name, params)
        if self.server.fake.take_log_refusal():
            query = "?follow=true" if params.get("follow") in ("true", "1") else ""
            raise ApiError(
                500,
                "",
                f'Get "https://127.0.0.1:10250/containerLogs/{namespace}/{name}/{container}'
                f'{query}": dial tcp 127.0.0.1:10250: connect: connection refused',
            )
        stamps = params.get("timestamps") in ("true", "1")
        tail = int(params["tailLines"]) if params.get("tailLines") else None
        limit = int(params["limitBytes"]) if params.get("limitBytes") else None

        def render(entries: list[tuple[str, bytes]]) -> bytes:
            return b"".join((f"{s} ".encode() if stamps else b"") + line for s, line in entries)

        with buffer.changed:
            entries = list(buffer.lines)
            sent = len(entries)
        if tail is not None:
            entries = entries[-tail:] if tail > 0 else []
        if params.get("follow") not in ("true", "1"):
            data = render(entries)
            self._send(200, data[:limit] if limit is not None else data, "text/plain")
            return
        self._start_stream("text/plain")
        budget = self.server.fake.take_log_cut()
        try:
            if budget is not None:
                entries, budget = entries[:budget], budget - len(entries[:budget])
            data = render(entries)
            if data:
                self._chunk(data)
            while not self.server.fake._stopping.is_set() and budget != 0:
                with buffer.changed:
                    if len(buffer.lines) == sent and not buffer.closed:
                        buffer.changed.wait(0.5)
                    fresh = buffer.lines[sent:]
                    if budget is not None:
                        fresh, budget = fresh[:budget], budget - len(fresh[:budget])
                    sent += len(fresh)
                    closed = buffer.closed and sent == len(buffer.lines)
                if fresh:
                    self._chunk(render(fresh))
                if closed and not fresh:
                    break
        finally:
            self._end_stream()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake Kubernetes API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--root", default=None, help="folder for volumes and snapshots")
    parser.add_argument("--kubeconfig", default=None, help="also write the kubeconfig here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    fake = FakeKube(args.root, args.host, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fake:
        if args.kubeconfig:
            fake.write_kubeconfig(Path(args.kubeconfig))
        print(f"fake Kubernetes listening on {fake.url}", flush=True)
        print(f"kubeconfig: {args.kubeconfig or fake.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
