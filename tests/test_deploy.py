"""The cluster recipe in deploy/, checked without a cluster: every file parses, the Kubernetes objects pass the
API's own schemas, and each recipe (compose, the Kubernetes Job, the Slurm array) runs the one worker command
every machine runs, `sweep run SWEEP --storage URL --tracking-uri URL`, read by the `sweep` parser itself, with
a sweep file, database, tracking server and data that the recipe does provide. The tracking server's command is
read by MLflow's own parser, and run for real with the recipe's --allowed-hosts.

Docker, a container registry and a cluster are not here: `docker compose config` and `kubectl kustomize` run
where those commands are installed, and are skipped with the reason where they are not."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import dockerfile
import kubernetes_validate
import pytest
import yaml
from mlflow.cli import server as mlflow_server_command

from pipeline.cli import build_parser
from pipeline.config import load_sweep
from pipeline.processes import mlflow_server

from conftest import ROOT, SWEEPS

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
SLURM = DEPLOY / "slurm" / "sweep-array.sbatch"
K8S_KINDS = collections.Counter({"Namespace": 1, "Secret": 1, "ConfigMap": 2, "Service": 2, "StatefulSet": 1,
                                 "Deployment": 1, "PersistentVolumeClaim": 2, "Job": 1})
OLDEST_KUBERNETES = "1.29"  # the oldest release still patched by the cloud providers' long-term channels


def kustomization(folder: Path = K8S) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def k8s_files(folder: Path = K8S) -> list[Path]:
    """The manifests a kustomization applies, in its order."""
    return [folder / name for name in kustomization(folder)["resources"]]


def k8s_objects(folder: Path = K8S) -> list[dict]:
    """What `kubectl apply -k` applies: the manifests' objects and the ConfigMaps made from files (kustomize's
    configMapGenerator, names without a hash suffix)."""
    objects = [doc for path in k8s_files(folder) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for made in kustomization(folder).get("configMapGenerator", []):
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": made["name"]},
                        "data": {name: (folder / name).read_text() for name in made["files"]}})
    return objects


def component_patches(folder: Path = K8S / "storage-proxy") -> dict[str, dict]:
    """The storage-proxy component's JSON patches to the workers' Job, by path."""
    (patch,) = kustomization(folder)["patches"]
    assert patch["target"] == {"kind": "Job", "name": "sweep-workers"}
    return {op["path"]: op for op in yaml.safe_load(patch["patch"])}


def k8s_object(kind: str, name: str) -> dict:
    (found,) = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def container_line(container: dict, secret: dict) -> list[str]:
    """A container's command and args as the kubelet runs them: `$(NAME)` replaced by the container's env,
    values or keys of the Secret."""
    env = {e["name"]: e["value"] if "value" in e else secret["stringData"][e["valueFrom"]["secretKeyRef"]["key"]]
           for e in container.get("env", [])}
    for e in container.get("env", []):
        if "valueFrom" in e:
            assert e["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"], e
    line = container["command"] + container["args"]
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], part) for part in line]


def compose_text(value: str, environment: dict[str, str]) -> str:
    """Compose's interpolation of `${NAME:-default}`, innermost first, for variables left unset but these."""
    pattern = re.compile(r"\$\{(\w+)(?::-([^${}]*))?\}")
    while pattern.search(value):
        value = pattern.sub(lambda m: environment.get(m.group(1), m.group(2) or ""), value)
    return value


def compose_file(environment: dict[str, str]) -> dict:
    """compose.yaml with its variables at their defaults (and `environment`), YAML anchors merged."""
    def interpolate(node):
        if isinstance(node, dict):
            return {k: interpolate(v) for k, v in node.items()}
        if isinstance(node, list):
            return [interpolate(v) for v in node]
        return compose_text(node, environment) if isinstance(node, str) else node
    return interpolate(yaml.safe_load(COMPOSE.read_text()))


def parsed_worker(line: list[str]):
    """The worker command read by `sweep`'s own parser: a `run` with both stores named."""
    assert line[0] == "sweep", line
    args = build_parser().parse_args(line[1:])
    assert args.command == "run" and args.storage and args.tracking_uri, line
    return args


def parsed_tracking_server(line: list[str]) -> dict:
    """The tracking server's command read by MLflow's own parser (an unknown or misspelt option fails here)."""
    assert line[:2] == ["mlflow", "server"], line
    return mlflow_server_command.make_context("server", line[2:]).params


def assert_reaches_the_tracking_server(tracking_uri: str, server: dict, service_names: set[str]) -> None:
    """Workers call the server by a name the recipe gives it, and the Host header they send is allowed."""
    where = urlsplit(tracking_uri)
    assert where.scheme == "http" and where.hostname in service_names and where.port == server["port"]
    assert where.netloc in server["allowed_hosts"].split(","), (where.netloc, server["allowed_hosts"])
    assert "localhost:5000" in server["allowed_hosts"].split(",")  # the UI through a published or forwarded port


def assert_store(url: str, host: str, database: str) -> None:
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.path) == ("postgresql", host, f"/{database}"), url


def created_databases(sql: str) -> set[str]:
    return set(re.findall(r"CREATE DATABASE (\w+)", sql))


def test_every_yaml_file_parses():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert COMPOSE in files and K8S / "kustomization.yaml" in files
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert documents and all(isinstance(d, dict) for d in documents), path


def test_the_kustomization_applies_every_manifest_and_the_expected_objects():
    assert kustomization()["generatorOptions"]["disableNameSuffixHash"]  # the Job mounts the ConfigMap by name
    made = {K8S / name for entry in kustomization()["configMapGenerator"] for name in entry["files"]}
    assert set(k8s_files()) | made == set(K8S.glob("*.yaml")) - {K8S / "kustomization.yaml"}
    objects = k8s_objects()
    for o in objects:
        assert o["apiVersion"] and o["kind"] and o["metadata"]["name"], o
    assert collections.Counter(o["kind"] for o in objects) == K8S_KINDS


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_the_kubernetes_objects_pass_the_api_schemas(version):
    """Strict: a misspelt or misplaced field fails, as `kubectl apply --validate=strict` would."""
    for o in k8s_objects() + k8s_objects(K8S / "storage-proxy"):
        kubernetes_validate.validate(o, version, strict=True)


def test_the_kubernetes_workers_run_the_sweep_command_on_what_the_manifests_provide(tmp_path):
    secret, job = k8s_object("Secret", "sweep-database"), k8s_object("Job", "sweep-workers")
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["parallelism"] >= 2
    spec = pod_spec(job)
    (worker,) = spec["containers"]
    args = parsed_worker(container_line(worker, secret))

    mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    folder, name = args.sweep_file.rsplit("/", 1)
    config_map = k8s_object("ConfigMap", volumes[mounts[folder]["name"]]["configMap"]["name"])
    assert mounts[folder]["readOnly"] and name in config_map["data"]
    shipped = tmp_path / "sweep.yaml"
    shipped.write_text(config_map["data"][name])
    load_sweep(shipped)  # a valid sweep file, and the one the repository ships:
    assert yaml.safe_load(shipped.read_text()) == yaml.safe_load((SWEEPS / "fashion_mnist.yaml").read_text())

    data = mounts[args.data_dir]
    claim = volumes[data["name"]]["persistentVolumeClaim"]
    assert data["readOnly"] and claim["readOnly"]
    k8s_object("PersistentVolumeClaim", claim["claimName"])

    postgres = k8s_object("StatefulSet", "postgres")
    (database,) = [e["value"] for e in pod_spec(postgres)["containers"][0]["env"] if e["name"] == "POSTGRES_DB"]
    assert_store(args.storage, postgres["spec"]["serviceName"], database)
    k8s_object("Service", postgres["spec"]["serviceName"])
    (server,) = pod_spec(k8s_object("Deployment", "mlflow"))["containers"]
    assert_reaches_the_tracking_server(args.tracking_uri, parsed_tracking_server(container_line(server, secret)),
                                       {o["metadata"]["name"] for o in k8s_objects() if o["kind"] == "Service"})


def test_the_kubernetes_tracking_server_keeps_its_store_in_postgres_and_proxies_artifacts():
    secret, deployment = k8s_object("Secret", "sweep-database"), k8s_object("Deployment", "mlflow")
    (server,) = pod_spec(deployment)["containers"]
    params = parsed_tracking_server(container_line(server, secret))
    postgres = k8s_object("StatefulSet", "postgres")
    (database,) = created_databases(k8s_object("ConfigMap", "postgres-init")["data"]["mlflow-database.sql"])
    assert_store(params["backend_store_uri"], postgres["spec"]["serviceName"], database)
    assert params["serve_artifacts"] and not params["artifacts_only"]
    (mount,) = [m for m in server["volumeMounts"] if m["mountPath"] == params["artifacts_destination"]]
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
    k8s_object("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"} in server["env"]


def test_every_kubernetes_pod_asks_for_resources_and_workers_get_time_to_end_a_trial():
    workloads = k8s_objects() + k8s_objects(K8S / "storage-proxy")
    containers = [c for w in workloads if w["kind"] in ("Job", "Deployment", "StatefulSet")
                  for c in pod_spec(w)["containers"] + pod_spec(w).get("initContainers", [])]
    containers += [op["value"] for path, op in component_patches().items() if path.endswith("/initContainers/-")]
    for container in containers:
        assert set(container["resources"]) == {"requests", "limits"}, container
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
    # SIGTERM ends the trial FAIL and its run KILLED, then stops the worker processes (30 s each, at most).
    assert pod_spec(k8s_object("Job", "sweep-workers"))["terminationGracePeriodSeconds"] >= 60


def test_the_storage_proxy_component_fronts_the_study_database_and_the_workers_call_it():
    """Read without kustomize: the proxy's command, its Service, and the study URL the component gives workers."""
    component = K8S / "storage-proxy"
    assert kustomization(component)["kind"] == "Component"
    objects = {o["kind"]: o for o in k8s_objects(component)}
    (proxy,) = pod_spec(objects["Deployment"])["containers"]
    line = container_line(proxy, k8s_object("Secret", "sweep-database"))
    args = build_parser().parse_args(line[1:])
    assert (line[0], args.command, args.host) == ("sweep", "storage-proxy", "0.0.0.0")
    postgres = k8s_object("StatefulSet", "postgres")
    assert_store(args.storage, postgres["spec"]["serviceName"], "optuna")
    (port,) = objects["Service"]["spec"]["ports"]
    assert port["targetPort"] == args.port
    patches = component_patches(component)
    study_url = patches["/spec/template/spec/containers/0/env/0"]["value"]["value"]
    assert study_url == f"grpc://{objects['Service']['metadata']['name']}:{port['port']}"

    # The proxy exits when its database is not up yet: it starts once the database it fronts answers.
    (wait,) = pod_spec(objects["Deployment"])["initContainers"]
    assert wait["name"] == "wait-for-study-database" and [e for e in wait["env"] if e["name"] == "STUDY_DATABASE_URL"] == [
        e for e in proxy["env"] if e["name"] == "STUDY_DATABASE_URL"]
    # A worker exits when no proxy answers in 5 s: each waits for the proxy it is given, after the tracking server.
    added = patches["/spec/template/spec/initContainers/-"]
    assert added["op"] == "add" and {"name": "STUDY_URL", "value": study_url} in added["value"]["env"]


def _job_failure_policy(spec: dict) -> None:
    """Failures counted per index (a few start-up races cannot fail the Job), which Kubernetes allows only for an
    Indexed Job of restartPolicy Never with maxFailedIndexes at most completions: rules the schemas do not hold."""
    assert spec["completionMode"] == "Indexed" and spec["template"]["spec"]["restartPolicy"] == "Never"
    assert "backoffLimit" not in spec and spec["backoffLimitPerIndex"] >= 2
    assert 0 < spec["maxFailedIndexes"] < spec["completions"] == spec["parallelism"]


def test_the_workers_job_counts_failures_per_index_with_or_without_the_storage_proxy():
    job = k8s_object("Job", "sweep-workers")
    _job_failure_policy(job["spec"])
    patched = {path.rsplit("/", 1)[1]: op["value"] for path, op in component_patches().items()
               if path.count("/") == 2 and op["op"] == "replace"}
    assert set(patched) == {"parallelism", "completions", "maxFailedIndexes"}
    _job_failure_policy({**job["spec"], **patched})


def _kustomize(folder: Path) -> list[dict]:
    built = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return [o for o in yaml.safe_load_all(built.stdout) if o is not None]


def _init_containers() -> dict[str, dict]:
    """Every init container, the storage proxy's and the one its component gives workers included, by name."""
    workloads = [k8s_object("Job", "sweep-workers"), k8s_object("Deployment", "mlflow"),
                 *(o for o in k8s_objects(K8S / "storage-proxy") if o["kind"] == "Deployment")]
    found = [c for workload in workloads for c in pod_spec(workload)["initContainers"]]
    found += [op["value"] for path, op in component_patches().items() if path.endswith("/initContainers/-")]
    return {c["name"]: c for c in found}


def test_the_init_containers_wait_in_valid_shell_and_the_database_wait_ends_once_it_answers(tracking_database):
    """Each init container's loop parses as sh; the tracking server's, given a database that answers, ends."""
    for name, container in _init_containers().items():
        assert container["command"][:2] == ["sh", "-c"]
        assert subprocess.run(["sh", "-n", "-c", container["command"][2]]).returncode == 0, name
    (wait,) = pod_spec(k8s_object("Deployment", "mlflow"))["initContainers"]
    environment = {**os.environ, "TRACKING_STORE_URL": tracking_database}
    subprocess.run(wait["command"], env=environment, check=True, timeout=120)


@pytest.mark.slow
def test_the_storage_proxy_s_waits_end_once_its_database_answers_and_once_it_listens(tracking_database):
    """Run for real: the proxy's wait on a database that answers, then the workers' wait on a real `sweep
    storage-proxy` in front of it, given its printed URL."""
    from test_storage_proxy import running_proxy

    waits = _init_containers()
    environment = {**os.environ, "STUDY_DATABASE_URL": tracking_database}
    subprocess.run(waits["wait-for-study-database"]["command"], env=environment, check=True, timeout=120)
    with running_proxy(tracking_database) as proxy:
        environment = {**os.environ, "STUDY_URL": proxy.url}
        subprocess.run(waits["wait-for-storage-proxy"]["command"], env=environment, check=True, timeout=120)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_manifests_into_one_namespace():
    objects = _kustomize(K8S)
    assert collections.Counter(o["kind"] for o in objects) == K8S_KINDS
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"keras-sweep"}
    (made,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "sweep"]
    assert made["data"] == k8s_object("ConfigMap", "sweep")["data"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_with_the_storage_proxy_sends_the_workers_through_it(tmp_path):
    """kustomization.yaml with the line its comment tells a user to add."""
    folder = tmp_path / "k8s"
    shutil.copytree(K8S, folder)
    with open(folder / "kustomization.yaml", "a") as file:
        file.write("components: [storage-proxy]\n")
    objects = _kustomize(folder)
    assert collections.Counter(o["kind"] for o in objects) == K8S_KINDS + collections.Counter(Deployment=1, Service=1)
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    (job,) = [o for o in objects if o["kind"] == "Job"]
    args = parsed_worker(container_line(pod_spec(job)["containers"][0], secret))
    assert args.storage == "grpc://storage-proxy:13000" and job["spec"]["parallelism"] == 32
    waits = [c["name"] for c in pod_spec(job)["initContainers"]]
    assert waits == ["wait-for-tracking-server", "wait-for-storage-proxy"]
    _job_failure_policy(job["spec"])
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version()):
        for o in objects:
            kubernetes_validate.validate(o, version, strict=True)
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"keras-sweep"}


def test_the_compose_workers_run_the_sweep_command_on_what_compose_provides():
    compose = compose_file({"HOME": "/home/user"})
    services = compose["services"]
    worker, server, postgres = services["worker"], services["mlflow"], services["postgres"]
    args = parsed_worker(["sweep", *worker["command"]])
    assert worker["deploy"]["replicas"]

    mounts = {v["target"]: v for v in worker["volumes"]}
    folder, name = args.sweep_file.rsplit("/", 1)
    assert mounts[folder]["read_only"] and mounts[args.data_dir]["read_only"]
    load_sweep(COMPOSE.parent / mounts[folder]["source"] / name)
    assert mounts[args.data_dir]["source"] == "/home/user/.keras/datasets/fashion-mnist"  # where Keras keeps it

    assert_store(args.storage, "postgres", postgres["environment"]["POSTGRES_DB"])
    params = parsed_tracking_server(server["entrypoint"] + server["command"])
    assert_reaches_the_tracking_server(args.tracking_uri, params, set(services))
    assert set(worker["depends_on"]) == {"postgres", "mlflow"}
    for needed in worker["depends_on"].values():
        assert needed["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"] and server["healthcheck"]


def test_the_compose_tracking_server_keeps_its_store_in_postgres_and_proxies_artifacts():
    compose = compose_file({})
    server = compose["services"]["mlflow"]
    params = parsed_tracking_server(server["entrypoint"] + server["command"])
    (database,) = created_databases(compose["configs"]["mlflow-database"]["content"])
    assert_store(params["backend_store_uri"], "postgres", database)
    assert params["serve_artifacts"] and not params["artifacts_only"]
    assert f"artifacts:{params['artifacts_destination']}" in server["volumes"]
    assert server["ports"] == ["127.0.0.1:5000:5000"]  # the UI on this machine's loopback, not its network


def _docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60).returncode == 0


@pytest.mark.skipif(not _docker_compose_works(), reason="`docker compose` is not installed")
def test_docker_compose_config_accepts_the_file_and_runs_the_same_worker_command(tmp_path):
    environment = {**os.environ, "DATA_DIR": str(tmp_path), "WORKERS": "3"}
    for name in ("SWEEP", "POSTGRES_PASSWORD", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"):
        environment.pop(name, None)
    shown = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--format", "json"],
                           capture_output=True, text=True, timeout=120, env=environment)
    assert shown.returncode == 0, shown.stderr
    worker = json.loads(shown.stdout)["services"]["worker"]
    assert worker["command"] == compose_file({"HOME": os.environ["HOME"]})["services"]["worker"]["command"]
    assert worker["deploy"]["replicas"] == 3
    assert {v["target"]: v["source"] for v in worker["volumes"]}["/data"] == str(tmp_path)


def test_the_slurm_script_is_valid_bash_and_runs_the_sweep_command(tmp_path):
    """Run for real with a `sweep` on PATH that prints the arguments it is given: what each array task runs."""
    assert subprocess.run(["bash", "-n", str(SLURM)], capture_output=True).returncode == 0
    text = SLURM.read_text()
    assert re.search(r"^#SBATCH --array=\d+-\d+$", text, re.M) and re.search(r"^#SBATCH --cpus-per-task=\d+$", text,
                                                                             re.M)
    fake = tmp_path / "bin" / "sweep"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    environment = {"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    ran = subprocess.run(["bash", str(SLURM)], capture_output=True, text=True, cwd=ROOT, env=environment, timeout=60)
    assert ran.returncode == 0, ran.stderr
    args = parsed_worker(["sweep", *json.loads(ran.stdout)])
    load_sweep(ROOT / args.sweep_file)  # a path from the submit folder, a checkout
    assert urlsplit(args.storage).scheme == "postgresql" and urlsplit(args.tracking_uri).scheme == "http"
    assert args.data_dir == f"{tmp_path}/.keras/datasets/fashion-mnist" and args.no_progress

    overridden = {**environment, "STUDY_URL": "grpc://proxy-host:13000", "SWEEP_FILE": "sweeps/smoke.yaml"}
    ran = subprocess.run(["bash", str(SLURM)], capture_output=True, text=True, cwd=ROOT, env=overridden, timeout=60)
    args = parsed_worker(["sweep", *json.loads(ran.stdout)])
    assert (args.storage, args.sweep_file) == ("grpc://proxy-host:13000", "sweeps/smoke.yaml")


def test_the_dockerfile_installs_the_package_and_runs_sweep():
    """Parsed by BuildKit's own parser: two stages on python:3.11-slim; the wheel stage copies every source its
    pyproject.toml names (and the Dockerfile's own .dockerignore lets them through); the image runs `sweep` as
    the user the Kubernetes pods run as."""
    commands = dockerfile.parse_file(str(DEPLOY / "Dockerfile"))
    assert [c.value[0] for c in commands if c.cmd == "FROM"] == ["python:3.11-slim", "python:3.11-slim"]
    copied = {source for c in commands if c.cmd == "COPY" and not c.flags for source in c.value[:-1]}
    project = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml").loads(
        (ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"], "pipeline",
              *project["tool"]["setuptools"]["package-dir"].values()}
    assert copied == needed and all((ROOT / p).exists() for p in copied)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split("\n")
    assert "*" in ignore and all(f"!{p}" in ignore for p in needed)

    (entrypoint,) = [c for c in commands if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and entrypoint.value == ("sweep",)
    (user,) = [c for c in commands if c.cmd == "USER"]
    uid = int(user.value[0].split(":")[0])
    for workload in (k8s_object("Job", "sweep-workers"), k8s_object("Deployment", "mlflow")):
        assert pod_spec(workload)["securityContext"]["runAsUser"] == uid


@pytest.fixture
def tracking_database(new_database) -> str:
    return new_database("deploy")


def _status(url: str, host: str) -> int:
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers={"Host": host}), timeout=30).status
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.mark.slow
def test_the_recipe_tracking_server_starts_on_an_empty_database_and_answers_its_service_name(tmp_path,
                                                                                           tracking_database):
    """The compose file's server options for real (on loopback, its store a fresh database): the workers' Host
    header `mlflow:5000` is served, a name the recipe does not give is refused, as MLflow 3.5+ does."""
    server = compose_file({})["services"]["mlflow"]
    options = server["command"][1:]
    kept = [part for i, part in enumerate(options) if not _placed_here(options, i)]
    with mlflow_server(tracking_database, "--artifacts-destination", str(tmp_path / "artifacts"), *kept) as uri:
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(search, "mlflow:5000") == 200
        assert _status(search, "tracking.example.com:5000") == 403


def _placed_here(options: list[str], i: int) -> bool:
    """The options a test server sets itself: its store, artifact folder and loopback address."""
    placed = ("--backend-store-uri", "--artifacts-destination", "--host", "--port")
    return options[i] in placed or (i > 0 and options[i - 1] in placed)
