"""Consistency of the container setup: Dockerfile, compose.yaml, deploy/compose/.

Run by scripts/check-infra with the .venv-infra interpreter (PyYAML comes
with ansible). The compose-spec schema, promtool and nginx check each file
on its own; this checks that they fit together, without any container
engine:

1. Dockerfile: the runtime stages `gateway` and `api` exist, each sets its
   listen address to 0.0.0.0:<port> through GATEWAY_LISTEN / API_LISTEN,
   EXPOSEs that port, runs as a numeric non-root USER, and has an exec-form
   HEALTHCHECK running the probe on that variable and /healthz.
2. compose.yaml: redis, postgres, api, nginx, prometheus, grafana and at
   least two gateway-* services. The gateways build the `gateway` target
   into one image, have distinct GATEWAY_NODE_ID, and share one
   GATEWAY_RESUME_KEY, GATEWAY_REDIS_URL and GATEWAY_DURABLE, which equals
   the api's API_DURABLE; the api builds the `api` target. Nobody
   overrides the listen addresses. The gateways' stop timeout exceeds
   their drain delay + drain window. Every bind mount's source exists, and
   ports are published on 127.0.0.1 only.
3. deploy/compose/nginx.conf: the gateway upstream hashes the affinity
   cookie (`hash $cookie_<GATEWAY_AFFINITY_COOKIE or GW_AFFINITY>
   consistent`) and lists exactly the gateway services on their port; /v1/
   goes to the api on its port.
4. deploy/compose/prometheus.yml: job stomp-gateway scrapes exactly the
   gateway services, job stomp-api the api (the job names the alert rules
   and dashboards expect); the rule_files globs, seen through compose's
   mounts, match the rule files of dashboards/alerts and none of their
   tests.
5. Grafana: the dashboard provider reads the directory where compose
   mounts dashboards/, the default home dashboard exists there, and the
   provisioned default data source is the prometheus service. Every
   dashboards/*.json selects its data source through a `datasource`
   variable of type prometheus (which starts on that default).

Prints nothing and exits 0 when everything agrees; otherwise one line per
problem and exit 1.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import sys
from pathlib import Path, PurePosixPath

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
NGINX = ROOT / "deploy" / "compose" / "nginx.conf"
PROMETHEUS = ROOT / "deploy" / "compose" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "compose" / "grafana" / "provisioning"

problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- Dockerfile --------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions of each named stage: {stage: [(INSTRUCTION, arguments)]}."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    stages: dict[str, list[tuple[str, str]]] = {}
    stage: list[tuple[str, str]] | None = None
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args.strip(), re.I)
            stage = []
            stages[m.group(2) if m else f"#{len(stages)}"] = stage
        elif stage is not None:
            stage.append((instruction, args.strip()))
    return stages


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                if sep:
                    env[key] = value
    return env


def check_dockerfile() -> dict[str, int]:
    """Checks the runtime stages; returns the listen port of each."""
    ports: dict[str, int] = {}
    stages = dockerfile_stages()
    for target, variable in (("gateway", "GATEWAY_LISTEN"), ("api", "API_LISTEN")):
        stage = stages.get(target)
        if stage is None:
            problem(f"Dockerfile: no stage named {target!r} (docker build --target {target})")
            continue
        where = f"Dockerfile, stage {target}"
        listen = env_of(stage).get(variable, "")
        m = re.fullmatch(r"0\.0\.0\.0:(\d+)", listen)
        if not m:
            problem(f"{where}: ENV {variable} must be 0.0.0.0:<port> (the service's own default is loopback), not {listen!r}")
            continue
        port = int(m.group(1))
        ports[target] = port
        exposed = {a for i, a in stage if i == "EXPOSE"}
        if not any(str(port) in a.split() or f"{port}/tcp" in a.split() for a in exposed):
            problem(f"{where}: EXPOSE {port} is missing")
        users = [a for i, a in stage if i == "USER"]
        if not users or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
            problem(f"{where}: the last USER must be a numeric non-root uid[:gid], not {users[-1] if users else None!r}")
        checks = [a for i, a in stage if i == "HEALTHCHECK"]
        if len(checks) != 1:
            problem(f"{where}: needs exactly one HEALTHCHECK")
            continue
        cmd = re.search(r"\bCMD\s+(\[.*\])\s*$", checks[0])
        try:
            argv = json.loads(cmd.group(1)) if cmd else None
        except json.JSONDecodeError:
            argv = None
        if not argv or argv[1:] != ["--env", variable, "/healthz"]:
            problem(f"{where}: HEALTHCHECK must be exec form CMD [\"<probe>\", \"--env\", \"{variable}\", \"/healthz\"], got {checks[0]!r}")
    return ports


# --- compose.yaml ------------------------------------------------------------


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def millis(value: str, default: int) -> int:
    if not value:
        return default
    m = re.fullmatch(r"(\d+)(ms|s|m)?", value.strip())
    if not m:
        problem(f"compose.yaml: cannot read the duration {value!r}")
        return default
    return int(m.group(1)) * {None: 1, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]


def check_compose(ports: dict[str, int]) -> tuple[list[str], dict[str, dict], dict]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services: dict[str, dict] = compose.get("services") or {}
    for name in ("redis", "postgres", "api", "nginx", "prometheus", "grafana"):
        if name not in services:
            problem(f"compose.yaml: no service {name!r}")
    gateways = sorted(n for n in services if n.startswith("gateway-"))
    if len(gateways) < 2:
        problem(f"compose.yaml: a cluster needs at least two gateway-* services, found {gateways}")

    def target(name: str) -> str | None:
        build = services.get(name, {}).get("build")
        return build.get("target") if isinstance(build, dict) else None

    envs = {g: environment(services[g]) for g in gateways}
    for g in gateways:
        if target(g) != "gateway":
            problem(f"compose.yaml: {g} must build the Dockerfile's gateway target")
        if "GATEWAY_LISTEN" in envs[g]:
            problem(f"compose.yaml: {g} overrides GATEWAY_LISTEN; nginx and Prometheus expect the image's port")
    if len({services[g].get("image") for g in gateways}) > 1:
        problem("compose.yaml: the gateway services must share one image")
    node_ids = [envs[g].get("GATEWAY_NODE_ID", "") for g in gateways]
    if "" in node_ids or len(set(node_ids)) != len(node_ids):
        problem(f"compose.yaml: every gateway needs its own GATEWAY_NODE_ID, got {node_ids}")
    for key in ("GATEWAY_RESUME_KEY", "GATEWAY_REDIS_URL", "GATEWAY_DURABLE"):
        values = {envs[g].get(key, "") for g in gateways}
        if "" in values or len(values) != 1:
            problem(f"compose.yaml: every gateway needs the same {key} (the cluster's), got {sorted(values)}")
    for g in gateways:
        delay = millis(envs[g].get("GATEWAY_DRAIN_DELAY_MS", ""), 15000)
        window = millis(envs[g].get("GATEWAY_DRAIN_WINDOW_MS", ""), 30000)
        grace = services[g].get("stop_grace_period", "10s")
        m = re.fullmatch(r"(\d+)s", str(grace))
        if not m or int(m.group(1)) * 1000 <= delay + window + 5000:
            problem(f"compose.yaml: {g}: stop_grace_period {grace} must exceed drain delay + window + 5 s ({(delay + window) / 1000 + 5:g} s)")

    api = services.get("api", {})
    api_env = environment(api)
    if target("api") != "api":
        problem("compose.yaml: api must build the Dockerfile's api target")
    if "API_LISTEN" in api_env:
        problem("compose.yaml: api overrides API_LISTEN; nginx and Prometheus expect the image's port")
    if gateways and api_env.get("API_DURABLE") != envs[gateways[0]].get("GATEWAY_DURABLE"):
        problem("compose.yaml: the api's API_DURABLE must equal the gateways' GATEWAY_DURABLE")
    for key in ("DATABASE_URL", "REDIS_URL", "API_CONSUMER"):
        if not api_env.get(key):
            problem(f"compose.yaml: the api needs {key}")

    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and source.startswith("."):
                if not (ROOT / source).exists():
                    problem(f"compose.yaml: {name} mounts {source}, which does not exist")
        for port in service.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                problem(f"compose.yaml: {name} publishes {port!r} beyond 127.0.0.1 (development setup, no authentication)")
    return gateways, services, envs


def mounts(service: dict) -> dict[str, Path]:
    """Container path -> source path in the repository, for bind mounts."""
    result: dict[str, Path] = {}
    for volume in service.get("volumes") or []:
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[0].startswith("."):
            result[parts[1]] = (ROOT / parts[0]).resolve()
    return result


def host_path(service: dict, container_path: str) -> Path | None:
    """Where a container path of a service lives in the repository."""
    path = PurePosixPath(container_path)
    best: tuple[int, Path] | None = None
    for target, source in mounts(service).items():
        t = PurePosixPath(target)
        if path == t or t in path.parents:
            if best is None or len(t.parts) > best[0]:
                best = (len(t.parts), source / path.relative_to(t))
    return best[1] if best else None


# --- nginx, Prometheus, Grafana ----------------------------------------------


def check_nginx(gateways: list[str], envs: dict, ports: dict[str, int]) -> None:
    text = re.sub(r"#[^\n]*", "", NGINX.read_text(encoding="utf-8"))
    upstreams = {m.group(1): m.group(2) for m in re.finditer(r"upstream\s+(\S+)\s*\{([^}]*)\}", text)}
    cookie = (envs[gateways[0]].get("GATEWAY_AFFINITY_COOKIE") if gateways else None) or "GW_AFFINITY"

    def servers(body: str) -> set[str]:
        return {m.group(1) for m in re.finditer(r"^\s*server\s+(\S+?)[\s;]", body, re.M)}

    want = {f"{g}:{ports.get('gateway')}" for g in gateways}
    gateway_upstreams = [n for n, body in upstreams.items() if servers(body) & want]
    if "gateway" not in ports:
        pass  # reported with the Dockerfile
    elif len(gateway_upstreams) != 1:
        problem(f"{rel(NGINX)}: want one upstream of the gateway services, found {gateway_upstreams}")
    else:
        body = upstreams[gateway_upstreams[0]]
        if servers(body) != want:
            problem(f"{rel(NGINX)}: upstream {gateway_upstreams[0]} lists {sorted(servers(body))}, want {sorted(want)}")
        if not re.search(rf"^\s*hash\s+\$cookie_{re.escape(cookie)}\s+consistent\s*;", body, re.M):
            problem(f"{rel(NGINX)}: upstream {gateway_upstreams[0]} must stick on the cookie: hash $cookie_{cookie} consistent;")
        if not re.search(rf"location\s+/\s*\{{[^}}]*proxy_pass\s+http://{gateway_upstreams[0]}\s*;", text):
            problem(f"{rel(NGINX)}: location / must proxy_pass to http://{gateway_upstreams[0]}")
    if "api" not in ports:
        return  # reported with the Dockerfile
    api = f"api:{ports['api']}"
    api_upstreams = [n for n, body in upstreams.items() if servers(body) == {api}]
    if len(api_upstreams) != 1:
        problem(f"{rel(NGINX)}: want one upstream holding exactly {api}")
    elif not re.search(rf"location\s+/v1/\s*\{{[^}}]*proxy_pass\s+http://{api_upstreams[0]}\s*;", text):
        problem(f"{rel(NGINX)}: location /v1/ must proxy_pass to http://{api_upstreams[0]} (the ALB's /v1/* rule)")


def check_prometheus(gateways: list[str], services: dict, ports: dict[str, int]) -> None:
    prometheus = services.get("prometheus", {})
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs: dict[str, set[str]] = {}
    for job in config.get("scrape_configs") or []:
        jobs[job.get("job_name")] = {t for sc in job.get("static_configs") or [] for t in sc.get("targets") or []}
    want = {
        "stomp-gateway": {f"{g}:{ports.get('gateway')}" for g in gateways},
        "stomp-api": {f"api:{ports.get('api')}"},
    }
    for job, targets in want.items():
        if ("gateway" not in ports and job == "stomp-gateway") or ("api" not in ports and job == "stomp-api"):
            continue  # reported with the Dockerfile
        if jobs.get(job) != targets:
            problem(f"{rel(PROMETHEUS)}: job {job} scrapes {sorted(jobs.get(job, []))}, want {sorted(targets)}")

    alerts = ROOT / "dashboards" / "alerts"
    want_rules = {p.resolve() for p in alerts.glob("*.yml") if not p.name.endswith(".test.yml")}
    config_dir = PurePosixPath("/etc/prometheus")
    mounted_config = host_path(prometheus, str(config_dir / "prometheus.yml"))
    if mounted_config is None or mounted_config != PROMETHEUS.resolve():
        problem(f"compose.yaml: prometheus must mount {rel(PROMETHEUS)} as /etc/prometheus/prometheus.yml")
    found: set[Path] = set()
    for pattern in config.get("rule_files") or []:
        full = PurePosixPath(pattern) if pattern.startswith("/") else config_dir / pattern
        directory = host_path(prometheus, str(full.parent))
        if directory is None or not directory.is_dir():
            problem(f"{rel(PROMETHEUS)}: rule_files {pattern!r}: {full.parent} is not a directory mounted from the repository")
            continue
        found |= {p.resolve() for p in directory.iterdir() if fnmatch.fnmatch(p.name, full.name)}
    if found != want_rules:
        problem(
            f"{rel(PROMETHEUS)}: rule_files load {sorted(rel(p) for p in found)}, "
            f"want the rules of dashboards/alerts {sorted(rel(p) for p in want_rules)} (not the *.test.yml)"
        )


def check_grafana(services: dict) -> None:
    grafana = services.get("grafana", {})
    env = environment(grafana)
    if host_path(grafana, "/etc/grafana/provisioning") != GRAFANA.resolve():
        problem(f"compose.yaml: grafana must mount {rel(GRAFANA)} as /etc/grafana/provisioning")
    dashboards = sorted((ROOT / "dashboards").glob("*.json"))
    providers = [
        p
        for f in sorted((GRAFANA / "dashboards").glob("*.y*ml"))
        for p in (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("providers") or []
    ]
    paths = [host_path(grafana, (p.get("options") or {}).get("path", "")) for p in providers]
    if (ROOT / "dashboards").resolve() not in paths:
        problem(f"{rel(GRAFANA)}/dashboards: no provider reads the directory compose mounts dashboards/ on")
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home and (host_path(grafana, home) is None or not host_path(grafana, home).is_file()):
        problem(f"compose.yaml: grafana's home dashboard {home} is not a mounted file")

    sources = [
        d
        for f in sorted((GRAFANA / "datasources").glob("*.y*ml"))
        for d in (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("datasources") or []
    ]
    defaults = [d for d in sources if d.get("isDefault")]
    if len(defaults) != 1 or defaults[0].get("type") != "prometheus" or defaults[0].get("url") != "http://prometheus:9090":
        problem(f"{rel(GRAFANA)}/datasources: want one default data source, type prometheus, url http://prometheus:9090")
    for path in dashboards:
        dash = json.loads(path.read_text(encoding="utf-8"))
        variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        v = variables.get("datasource", {})
        if v.get("type") != "datasource" or v.get("query") != "prometheus":
            problem(f"{rel(path)}: no `datasource` variable of type prometheus; the provisioned default would not apply")


def main() -> int:
    ports = check_dockerfile()
    gateways, services, envs = check_compose(ports)
    check_nginx(gateways, envs, ports)
    check_prometheus(gateways, services, ports)
    check_grafana(services)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
