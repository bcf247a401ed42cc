"""Consistency of the gateway's timing contract across terraform and ansible.

Run by scripts/check-infra with the .venv-infra interpreter (python-hcl2 comes
with checkov, PyYAML with ansible). Checks, without any provider or network:

1. terraform/envs/prod/variables.tf gives the contract variables literal
   defaults (not expressions), and those defaults obey the rules:
     deregistration delay >= drain delay + drain window
     ALB idle timeout      >  2 x heart-beat
     health check interval x unhealthy threshold < drain delay
     lifecycle hook        >= drain delay + drain window + 15 s
     health check path     == /readyz
     frame burst           >= 1 when the frame rate is limited
2. terraform/envs/prod/main.tf passes each of them on to the modules that
   use them (so a module default cannot silently win), and makes the VPC
   CIDR the gateway's trusted proxy (the ALB lives in the public subnets).
3. ansible/group_vars (gateway.yml, api.yml) carry the same values (the
   security limits too, and gateway_trusted_proxies == [vpc_cidr]), and the
   systemd stop timeout fits between the drain time and the lifecycle hook.
4. Durable messages: durable_destinations, durable_stream and
   durable_stream_max_len (literal defaults, passed to module compute, which
   writes them for both the gateways and the api) equal
   ansible/group_vars/all.yml stomp_durable_*, and gateway.yml / api.yml
   give both services those same values (a "{{ stomp_durable_* }}"
   reference or the literal). ElastiCache must not evict keys
   (maxmemory-policy noeviction), or the stream could be dropped; the api
   nodes must get the RDS CA bundle (api_database_ca_url/_file), since
   their DATABASE_URL requires TLS.
5. Resume: gateway_resume_window_ms (a literal default, passed to module
   compute, which writes GATEWAY_RESUME_WINDOW_MS) equals
   ansible/group_vars/gateway.yml gateway_resume_window_ms; the resume-token
   key reaches the gateways the way the JWT HMAC key does: module data's
   secret, passed to module compute, named in the gateway nodes' node.env
   (STOMP_RESUME_KEY_SECRET_ARN) for stomp-node-secrets, which writes
   GATEWAY_RESUME_KEY_FILE.
6. Rebalancing after scale-out: gateway_rebalance, gateway_rebalance_margin,
   gateway_rebalance_rate, gateway_rebalance_interval_ms and
   gateway_fleet_report_ms (literal defaults, passed to module compute,
   which writes GATEWAY_REBALANCE* / GATEWAY_FLEET_REPORT_MS) equal the same
   names in ansible/group_vars/gateway.yml, whose gateway.env template
   writes them; the defaults obey the rules
     0 <= margin <= 1, 0 < rate <= 0.1,
     rebalance interval >= 2 x fleet report interval
   (each shedding round sees the loads after the previous one).
7. Reconnect storms and history: gateway_max_connect_rate and
   gateway_connect_burst (literal defaults, passed to module compute, which
   writes GATEWAY_MAX_CONNECT_RATE, GATEWAY_CONNECT_BURST) equal the same
   names in ansible/group_vars/gateway.yml, whose gateway.env template
   writes them. gateway_history, gateway_history_len and
   gateway_history_ttl_ms (literal defaults, passed to module compute, which
   writes them for both services: GATEWAY_HISTORY / API_HISTORY (only when
   not empty), GATEWAY_HISTORY_LEN / API_HISTORY_LEN,
   GATEWAY_HISTORY_TTL_MS / API_HISTORY_TTL_MS, since the api publishes
   through the same publish script) equal ansible/group_vars/all.yml
   stomp_history_*, gateway.yml / api.yml give both services those same
   values (as for the durable ones, item 4), and the gateway.env and api.env
   templates write them; the defaults obey the gateway's rules
     history len >= 1, 1 <= history TTL <= 86400000 ms.

Prints nothing and exits 0 when everything agrees; otherwise one line per
problem and exit 1.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hcl2
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "terraform" / "envs" / "prod"
ANSIBLE = ROOT / "ansible"

CONTRACT = {
    "gateway_port": int,
    "gateway_heartbeat_ms": int,
    "gateway_drain_delay_seconds": int,
    "gateway_drain_window_seconds": int,
    "alb_idle_timeout_seconds": int,
    "gateway_deregistration_delay_seconds": int,
    "gateway_health_check_path": str,
    "gateway_affinity_cookie": str,
    "gateway_health_check_interval_seconds": int,
    "gateway_health_check_unhealthy_threshold": int,
    "gateway_lifecycle_hook_seconds": int,
    "gateway_max_connections": int,
    "gateway_max_connections_per_ip": int,
    "gateway_max_frame_rate": int,
    "gateway_frame_burst": int,
    "gateway_max_connect_rate": int,
    "gateway_connect_burst": int,
    "gateway_resume_window_ms": int,
    "gateway_history": list,
    "gateway_history_len": int,
    "gateway_history_ttl_ms": int,
    "gateway_rebalance": bool,
    "gateway_rebalance_margin": float,
    "gateway_rebalance_rate": float,
    "gateway_rebalance_interval_ms": int,
    "gateway_fleet_report_ms": int,
    "vpc_cidr": str,
    "api_port": int,
    "durable_destinations": list,
    "durable_stream": str,
    "durable_stream_max_len": int,
}

# module -> {module argument: root variable} that envs/prod/main.tf must pass.
WIRING = {
    "network": {
        "vpc_cidr": "vpc_cidr",
    },
    "edge": {
        "idle_timeout_seconds": "alb_idle_timeout_seconds",
        "gateway_heartbeat_ms": "gateway_heartbeat_ms",
        "gateway_port": "gateway_port",
        "api_port": "api_port",
        "gateway_health_check_path": "gateway_health_check_path",
        "health_check_interval_seconds": "gateway_health_check_interval_seconds",
        "health_check_unhealthy_threshold": "gateway_health_check_unhealthy_threshold",
        "gateway_drain_delay_seconds": "gateway_drain_delay_seconds",
        "gateway_drain_window_seconds": "gateway_drain_window_seconds",
        "gateway_deregistration_delay_seconds": "gateway_deregistration_delay_seconds",
        "gateway_affinity_cookie": "gateway_affinity_cookie",
    },
    "compute": {
        "gateway_port": "gateway_port",
        "gateway_heartbeat_ms": "gateway_heartbeat_ms",
        "gateway_drain_delay_seconds": "gateway_drain_delay_seconds",
        "gateway_drain_window_seconds": "gateway_drain_window_seconds",
        "gateway_affinity_cookie": "gateway_affinity_cookie",
        "gateway_lifecycle_hook_seconds": "gateway_lifecycle_hook_seconds",
        "gateway_max_connections": "gateway_max_connections",
        "gateway_max_connections_per_ip": "gateway_max_connections_per_ip",
        "gateway_max_frame_rate": "gateway_max_frame_rate",
        "gateway_frame_burst": "gateway_frame_burst",
        "gateway_max_connect_rate": "gateway_max_connect_rate",
        "gateway_connect_burst": "gateway_connect_burst",
        "gateway_resume_window_ms": "gateway_resume_window_ms",
        "gateway_history": "gateway_history",
        "gateway_history_len": "gateway_history_len",
        "gateway_history_ttl_ms": "gateway_history_ttl_ms",
        "gateway_rebalance": "gateway_rebalance",
        "gateway_rebalance_margin": "gateway_rebalance_margin",
        "gateway_rebalance_rate": "gateway_rebalance_rate",
        "gateway_rebalance_interval_ms": "gateway_rebalance_interval_ms",
        "gateway_fleet_report_ms": "gateway_fleet_report_ms",
        "api_port": "api_port",
        "durable_destinations": "durable_destinations",
        "durable_stream": "durable_stream",
        "durable_stream_max_len": "durable_stream_max_len",
    },
}

# terraform/envs/prod variable -> ansible/group_vars/all.yml key; and what the
# gateway and api group_vars must set to the same value.
DURABLE = {
    "durable_destinations": ("stomp_durable_destinations", "gateway_durable", "api_durable"),
    "durable_stream": ("stomp_durable_stream", "gateway_durable_stream", "api_stream"),
    "durable_stream_max_len": ("stomp_durable_max_len", "gateway_durable_max_len", "api_stream_max_len"),
}

# The same for the history destinations: the api publishes through the same
# publish script as the gateways, so it appends to the same history streams.
HISTORY = {
    "gateway_history": ("stomp_history_destinations", "gateway_history", "api_history"),
    "gateway_history_len": ("stomp_history_len", "gateway_history_len", "api_history_len"),
    "gateway_history_ttl_ms": ("stomp_history_ttl_ms", "gateway_history_ttl_ms", "api_history_ttl_ms"),
}

# module -> {module argument: the exact expression} for wiring that is not a
# plain root variable. python-hcl2 renders a one-element list as its element
# (see unwrap).
WIRING_EXPR = {
    "compute": {
        # The ALB is in the VPC's public subnets: trust X-Forwarded-For from the VPC.
        "gateway_trusted_proxies": "${module.network.vpc_cidr}",
        # The resume-token key: always created in module data.
        "gateway_resume_key_secret_arn": "${module.data.gateway_resume_key_secret_arn}",
    },
}

problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)


def unwrap(value):
    """python-hcl2 wraps attribute values in one-element lists."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def load_hcl(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return hcl2.load(f)


def terraform_defaults() -> dict:
    found: dict = {}
    for path in sorted(PROD.glob("*.tf")):
        for block in load_hcl(path).get("variable", []):
            for name, body in block.items():
                if name in CONTRACT:
                    found[name] = (path.name, body)
    values = {}
    for name, kind in CONTRACT.items():
        if name not in found:
            problem(f"terraform/envs/prod: variable {name} is missing")
            continue
        file, body = found[name]
        if "default" not in body:
            problem(f"terraform/envs/prod/{file}: variable {name} has no default")
            continue
        # python-hcl2 wraps the attribute in one list; a list default is a list inside it.
        value = body["default"][0] if kind is list else unwrap(body["default"])
        if isinstance(value, str) and "${" in value:
            problem(f"terraform/envs/prod/{file}: default of {name} must be a literal, not {value!r}")
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            problem(f"terraform/envs/prod/{file}: default of {name} must be a whole number, got {value!r}")
            continue
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problem(f"terraform/envs/prod/{file}: default of {name} must be a number, got {value!r}")
            continue
        if kind is bool and not isinstance(value, bool):
            problem(f"terraform/envs/prod/{file}: default of {name} must be true or false, got {value!r}")
            continue
        if kind is str and not isinstance(value, str):
            problem(f"terraform/envs/prod/{file}: default of {name} must be a string, got {value!r}")
            continue
        if kind is list and not (isinstance(value, list) and all(isinstance(v, str) and "${" not in v for v in value)):
            problem(f"terraform/envs/prod/{file}: default of {name} must be a literal list of strings, got {value!r}")
            continue
        values[name] = value
    return values


def check_rules(tf: dict) -> None:
    def have(*keys: str) -> bool:
        return all(k in tf for k in keys)

    delay, window = "gateway_drain_delay_seconds", "gateway_drain_window_seconds"
    if have(delay, window, "gateway_deregistration_delay_seconds"):
        drain = tf[delay] + tf[window]
        if tf["gateway_deregistration_delay_seconds"] < drain:
            problem(
                f"deregistration delay {tf['gateway_deregistration_delay_seconds']} s < "
                f"drain delay + drain window = {drain} s"
            )
    if have("alb_idle_timeout_seconds", "gateway_heartbeat_ms"):
        if tf["alb_idle_timeout_seconds"] * 1000 <= 2 * tf["gateway_heartbeat_ms"]:
            problem(
                f"ALB idle timeout {tf['alb_idle_timeout_seconds']} s is not > 2 x heart-beat "
                f"({tf['gateway_heartbeat_ms']} ms)"
            )
    if have("gateway_health_check_interval_seconds", "gateway_health_check_unhealthy_threshold", delay):
        detect = tf["gateway_health_check_interval_seconds"] * tf["gateway_health_check_unhealthy_threshold"]
        if detect >= tf[delay]:
            problem(f"the ALB needs {detect} s to see /readyz fail, not < drain delay {tf[delay]} s")
    if have("gateway_lifecycle_hook_seconds", delay, window):
        if tf["gateway_lifecycle_hook_seconds"] < tf[delay] + tf[window] + 15:
            problem(
                f"lifecycle hook {tf['gateway_lifecycle_hook_seconds']} s < "
                f"drain time {tf[delay] + tf[window]} s + 15 s"
            )
    if have("gateway_max_frame_rate", "gateway_frame_burst"):
        if tf["gateway_max_frame_rate"] > 0 and tf["gateway_frame_burst"] < 1:
            problem("gateway_frame_burst must be at least 1 when gateway_max_frame_rate is set")
    if have("gateway_history_len") and tf["gateway_history_len"] < 1:
        problem(f"gateway_history_len {tf['gateway_history_len']} must be at least 1")
    if have("gateway_history_ttl_ms") and not 1 <= tf["gateway_history_ttl_ms"] <= 86_400_000:
        problem(f"gateway_history_ttl_ms {tf['gateway_history_ttl_ms']} must be between 1 and 86400000 (one day)")
    if have("gateway_rebalance_margin") and not 0 <= tf["gateway_rebalance_margin"] <= 1:
        problem(f"gateway_rebalance_margin {tf['gateway_rebalance_margin']} must be between 0 and 1")
    if have("gateway_rebalance_rate") and not 0 < tf["gateway_rebalance_rate"] <= 0.1:
        problem(f"gateway_rebalance_rate {tf['gateway_rebalance_rate']} must be above 0 and at most 0.1")
    if have("gateway_rebalance_interval_ms", "gateway_fleet_report_ms"):
        if tf["gateway_rebalance_interval_ms"] < 2 * tf["gateway_fleet_report_ms"]:
            problem(
                f"rebalance interval {tf['gateway_rebalance_interval_ms']} ms < "
                f"2 x fleet report interval ({tf['gateway_fleet_report_ms']} ms)"
            )
    if have("gateway_health_check_path") and tf["gateway_health_check_path"] != "/readyz":
        problem(
            f"gateway health check path is {tf['gateway_health_check_path']!r}, "
            "the gateway's readiness path is /readyz"
        )


def check_wiring() -> None:
    modules: dict = {}
    for block in load_hcl(PROD / "main.tf").get("module", []):
        modules.update(block)
    for module, args in WIRING.items():
        body = modules.get(module)
        if body is None:
            problem(f"terraform/envs/prod/main.tf: module {module} is missing")
            continue
        for arg, var in args.items():
            got = unwrap(body.get(arg))
            if got != f"${{var.{var}}}":
                problem(f"terraform/envs/prod/main.tf: module {module} must get {arg} = var.{var} (got {got!r})")
    for module, args in WIRING_EXPR.items():
        body = modules.get(module) or {}
        for arg, want in args.items():
            got = unwrap(body.get(arg))
            if got != want:
                problem(f"terraform/envs/prod/main.tf: module {module} must get {arg} = [{want[2:-1]}] (got {got!r})")


def load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def check_ansible(tf: dict) -> None:
    gw = load_yaml(ANSIBLE / "group_vars" / "gateway.yml")
    api = load_yaml(ANSIBLE / "group_vars" / "api.yml")
    common = load_yaml(ANSIBLE / "roles" / "common" / "defaults" / "main.yml")
    expect = {
        ("gateway.yml", "gateway_port"): (gw, "gateway_port", 1),
        ("gateway.yml", "gateway_heartbeat_ms"): (gw, "gateway_heartbeat_ms", 1),
        ("gateway.yml", "gateway_drain_delay_ms"): (gw, "gateway_drain_delay_seconds", 1000),
        ("gateway.yml", "gateway_drain_window_ms"): (gw, "gateway_drain_window_seconds", 1000),
        ("gateway.yml", "gateway_affinity_cookie"): (gw, "gateway_affinity_cookie", None),
        ("gateway.yml", "gateway_max_connections"): (gw, "gateway_max_connections", 1),
        ("gateway.yml", "gateway_max_connections_per_ip"): (gw, "gateway_max_connections_per_ip", 1),
        ("gateway.yml", "gateway_max_frame_rate"): (gw, "gateway_max_frame_rate", 1),
        ("gateway.yml", "gateway_frame_burst"): (gw, "gateway_frame_burst", 1),
        ("gateway.yml", "gateway_max_connect_rate"): (gw, "gateway_max_connect_rate", 1),
        ("gateway.yml", "gateway_connect_burst"): (gw, "gateway_connect_burst", 1),
        ("gateway.yml", "gateway_resume_window_ms"): (gw, "gateway_resume_window_ms", 1),
        ("gateway.yml", "gateway_rebalance"): (gw, "gateway_rebalance", None),
        ("gateway.yml", "gateway_rebalance_margin"): (gw, "gateway_rebalance_margin", None),
        ("gateway.yml", "gateway_rebalance_rate"): (gw, "gateway_rebalance_rate", None),
        ("gateway.yml", "gateway_rebalance_interval_ms"): (gw, "gateway_rebalance_interval_ms", 1),
        ("gateway.yml", "gateway_fleet_report_ms"): (gw, "gateway_fleet_report_ms", 1),
        ("api.yml", "api_port"): (api, "api_port", 1),
    }
    for (file, key), (data, tf_name, scale) in expect.items():
        if tf_name not in tf:
            continue
        want = tf[tf_name] if scale is None else tf[tf_name] * scale
        got = data.get(key)
        # YAML true and 1 compare equal in Python; a bool must be a bool.
        if got != want or isinstance(want, bool) != isinstance(got, bool):
            problem(f"ansible/group_vars/{file}: {key} is {data.get(key)!r}, terraform says {want!r}")
    if "vpc_cidr" in tf and gw.get("gateway_trusted_proxies") != [tf["vpc_cidr"]]:
        problem(
            f"ansible/group_vars/gateway.yml: gateway_trusted_proxies is {gw.get('gateway_trusted_proxies')!r}, "
            f"terraform trusts the VPC: [{tf['vpc_cidr']!r}]"
        )
    needed = ("gateway_drain_delay_seconds", "gateway_drain_window_seconds", "gateway_lifecycle_hook_seconds")
    if not all(k in tf for k in needed):
        return
    stop = gw.get("gateway_timeout_stop_sec")
    drain = tf["gateway_drain_delay_seconds"] + tf["gateway_drain_window_seconds"]
    if not isinstance(stop, int) or not drain < stop <= tf["gateway_lifecycle_hook_seconds"]:
        problem(
            f"ansible/group_vars/gateway.yml: gateway_timeout_stop_sec {stop!r} must be > drain time {drain} s "
            f"and <= the lifecycle hook {tf['gateway_lifecycle_hook_seconds']} s"
        )
    nofile, nr_open = gw.get("gateway_limit_nofile"), common.get("common_fs_nr_open")
    if not (isinstance(nofile, int) and isinstance(nr_open, int) and 1_000_000 < nofile <= nr_open):
        problem(
            f"gateway_limit_nofile {nofile!r} must exceed 1,000,000 sockets and stay <= fs.nr_open {nr_open!r}"
        )
    cap = tf.get("gateway_max_connections")
    if isinstance(nofile, int) and isinstance(cap, int) and cap >= nofile:
        problem(f"gateway_max_connections {cap} must stay below the open-file limit gateway_limit_nofile {nofile}")


def resolve(value, shared: dict):
    """A group_vars value, with a plain "{{ name }}" reference to all.yml resolved."""
    if isinstance(value, str):
        inner = value.strip()
        if inner.startswith("{{") and inner.endswith("}}"):
            name = inner[2:-2].strip()
            if name in shared:
                return shared[name]
    return value


def check_durable(tf: dict) -> None:
    shared = load_yaml(ANSIBLE / "group_vars" / "all.yml")
    groups = {
        "gateway.yml": load_yaml(ANSIBLE / "group_vars" / "gateway.yml"),
        "api.yml": load_yaml(ANSIBLE / "group_vars" / "api.yml"),
    }
    for tf_name, (shared_key, gw_key, api_key) in {**DURABLE, **HISTORY}.items():
        if tf_name not in tf:
            continue
        want = tf[tf_name]
        if shared.get(shared_key) != want:
            problem(f"ansible/group_vars/all.yml: {shared_key} is {shared.get(shared_key)!r}, terraform {tf_name} says {want!r}")
        reference = f"{{{{ {shared_key} }}}}"
        for (file, data), key in zip(groups.items(), (gw_key, api_key)):
            raw = data.get(key)
            if isinstance(raw, str) and raw.replace(" ", "") == reference.replace(" ", ""):
                continue  # the all.yml value, checked above
            if resolve(raw, shared) != want:
                problem(
                    f'ansible/group_vars/{file}: {key} is {raw!r}; set it to "{reference}" '
                    f"(terraform {tf_name} = {want!r})"
                )

    # The stream must survive a full Redis: no eviction policy may drop it.
    policy = None
    for block in load_hcl(ROOT / "terraform" / "modules" / "data" / "main.tf").get("resource", []):
        for body in block.get("aws_elasticache_parameter_group", {}).values():
            for param in body.get("parameter", []):
                if unwrap(param.get("name")) == "maxmemory-policy":
                    policy = unwrap(param.get("value"))
    if tf.get("durable_destinations") and policy != "noeviction":
        problem(
            f"terraform/modules/data/main.tf: the Redis parameter group sets maxmemory-policy {policy!r} "
            "(unset = volatile-lru); durable messages need noeviction, or Redis may evict the stream"
        )

    # terraform's DATABASE_URL (stomp-node-secrets) has sslmode=require: the
    # api verifies RDS with the CA bundle the api role installs.
    api_defaults = load_yaml(ANSIBLE / "roles" / "api" / "defaults" / "main.yml")
    api = {**api_defaults, **groups["api.yml"]}
    for key in ("api_database_ca_url", "api_database_ca_file"):
        if not api.get(key):
            problem(f"ansible: {key} is empty; the api needs the RDS CA bundle (API_DATABASE_CA_FILE) for sslmode=require")


def check_resume_key() -> None:
    """The resume-token key travels like the JWT HMAC key: secret -> node.env -> file."""
    compute = ROOT / "terraform" / "modules" / "compute" / "main.tf"
    text = compute.read_text(encoding="utf-8")
    for pattern, what in (
        (r"STOMP_RESUME_KEY_SECRET_ARN\s*=\s*var\.gateway_resume_key_secret_arn\b", "the gateway nodes' node.env"),
        (r'"gateway"\s*\?\s*var\.gateway_resume_key_secret_arn\s*:\s*""', "the gateway role's ReadSecrets statement"),
        (r"GATEWAY_RESUME_WINDOW_MS\s*=\s*tostring\(var\.gateway_resume_window_ms\)", "the gateway settings (gateway_env)"),
    ):
        if not re.search(pattern, text):
            problem(f"terraform/modules/compute/main.tf: {what} must match {pattern!r}")
    script = ANSIBLE / "roles" / "common" / "files" / "stomp-node-secrets.sh"
    text = script.read_text(encoding="utf-8")
    for needle in ("STOMP_RESUME_KEY_SECRET_ARN", "GATEWAY_RESUME_KEY_FILE"):
        if needle not in text:
            problem(f"ansible/roles/common/files/stomp-node-secrets.sh: does not handle {needle}")
    template = ANSIBLE / "roles" / "gateway" / "templates" / "gateway.env.j2"
    if "GATEWAY_RESUME_WINDOW_MS={{ gateway_resume_window_ms }}" not in template.read_text(encoding="utf-8"):
        problem("ansible/roles/gateway/templates/gateway.env.j2: GATEWAY_RESUME_WINDOW_MS must come from gateway_resume_window_ms")


# terraform module compute's gateway_env entry and the ansible gateway.env
# template line for each rebalancing setting.
REBALANCE_ENV = {
    "GATEWAY_REBALANCE": ("gateway_rebalance", "{{ gateway_rebalance | bool | lower }}"),
    "GATEWAY_REBALANCE_MARGIN": ("gateway_rebalance_margin", "{{ gateway_rebalance_margin }}"),
    "GATEWAY_REBALANCE_RATE": ("gateway_rebalance_rate", "{{ gateway_rebalance_rate }}"),
    "GATEWAY_REBALANCE_INTERVAL_MS": ("gateway_rebalance_interval_ms", "{{ gateway_rebalance_interval_ms }}"),
    "GATEWAY_FLEET_REPORT_MS": ("gateway_fleet_report_ms", "{{ gateway_fleet_report_ms }}"),
}


def check_rebalance_env() -> None:
    """Both tiers write every rebalancing setting from its variable."""
    compute = (ROOT / "terraform" / "modules" / "compute" / "main.tf").read_text(encoding="utf-8")
    template = (ANSIBLE / "roles" / "gateway" / "templates" / "gateway.env.j2").read_text(encoding="utf-8")
    for env, (var, jinja) in REBALANCE_ENV.items():
        pattern = rf"\b{env}\s*=\s*tostring\(var\.{var}\)"
        if not re.search(pattern, compute):
            problem(f"terraform/modules/compute/main.tf: the gateway settings (gateway_env) must match {pattern!r}")
        if f"{env}={jinja}" not in template:
            problem(f"ansible/roles/gateway/templates/gateway.env.j2: needs the line {env}={jinja}")


# The same for the connect-rate and history settings (GATEWAY_HISTORY, a
# list, is written through local.history_env.gateway only when not empty).
STORM_HISTORY_ENV = {
    "GATEWAY_MAX_CONNECT_RATE": ("gateway_max_connect_rate", "{{ gateway_max_connect_rate }}"),
    "GATEWAY_CONNECT_BURST": ("gateway_connect_burst", "{{ gateway_connect_burst }}"),
    "GATEWAY_HISTORY_LEN": ("gateway_history_len", "{{ gateway_history_len }}"),
    "GATEWAY_HISTORY_TTL_MS": ("gateway_history_ttl_ms", "{{ gateway_history_ttl_ms }}"),
}

# The api's history settings: from the gateways' terraform variables (module
# compute's api_env, API_HISTORY through local.history_env.api only when not
# empty) and from api_history* in the api.env template.
API_HISTORY_ENV = {
    "API_HISTORY_LEN": ("gateway_history_len", "{{ api_history_len }}"),
    "API_HISTORY_TTL_MS": ("gateway_history_ttl_ms", "{{ api_history_ttl_ms }}"),
}


def check_storm_history_env() -> None:
    """Both tiers write the connect-rate and history settings from their variables."""
    compute = (ROOT / "terraform" / "modules" / "compute" / "main.tf").read_text(encoding="utf-8")
    template = (ANSIBLE / "roles" / "gateway" / "templates" / "gateway.env.j2").read_text(encoding="utf-8")
    for env, (var, jinja) in STORM_HISTORY_ENV.items():
        pattern = rf"\b{env}\s*=\s*tostring\(var\.{var}\)"
        if not re.search(pattern, compute):
            problem(f"terraform/modules/compute/main.tf: the gateway settings (gateway_env) must match {pattern!r}")
        if f"{env}={jinja}" not in template:
            problem(f"ansible/roles/gateway/templates/gateway.env.j2: needs the line {env}={jinja}")
    pattern = r'GATEWAY_HISTORY\s*=\s*join\(",",\s*var\.gateway_history\)'
    if not re.search(pattern, compute) or "local.history_env.gateway" not in compute:
        problem(f"terraform/modules/compute/main.tf: gateway_env must merge local.history_env.gateway, which matches {pattern!r}")
    if "GATEWAY_HISTORY={{ gateway_history | join(',') }}" not in template:
        problem("ansible/roles/gateway/templates/gateway.env.j2: needs the line GATEWAY_HISTORY={{ gateway_history | join(',') }}")

    # The api: the same terraform variables, its own ansible variables
    # (api.yml refers them to all.yml, checked in check_durable).
    api_template = (ANSIBLE / "roles" / "api" / "templates" / "api.env.j2").read_text(encoding="utf-8")
    for env, (var, jinja) in API_HISTORY_ENV.items():
        pattern = rf"\b{env}\s*=\s*tostring\(var\.{var}\)"
        if not re.search(pattern, compute):
            problem(f"terraform/modules/compute/main.tf: the api settings (api_env) must match {pattern!r}")
        if f"{env}={jinja}" not in api_template:
            problem(f"ansible/roles/api/templates/api.env.j2: needs the line {env}={jinja}")
    pattern = r'API_HISTORY\s*=\s*join\(",",\s*var\.gateway_history\)'
    if not re.search(pattern, compute) or "local.history_env.api" not in compute:
        problem(f"terraform/modules/compute/main.tf: api_env must merge local.history_env.api, which matches {pattern!r}")
    if "API_HISTORY={{ api_history | join(',') }}" not in api_template:
        problem("ansible/roles/api/templates/api.env.j2: needs the line API_HISTORY={{ api_history | join(',') }}")


def main() -> int:
    tf = terraform_defaults()
    check_rules(tf)
    check_wiring()
    check_ansible(tf)
    check_durable(tf)
    check_resume_key()
    check_rebalance_env()
    check_storm_history_env()
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
