#!/bin/bash
# stomp-node-configure
#
# Writes the CloudWatch agent configuration of this node from
# /etc/stomp/node.env (written by the instance's user data, see
# terraform/modules/compute) and (re)starts the agent:
#   - the service log (/var/log/stomp-ROLE/ROLE.log) and the boot logs go to
#     the log groups named in node.env;
#   - gateway nodes: the agent scrapes http://127.0.0.1:PORT/metrics every
#     30 s and publishes the gauge gateway_connections as
#     NAMESPACE/GatewayConnections with the dimension AutoScalingGroupName
#     (what the Auto Scaling target tracking policy averages) and
#     AutoScalingGroupName+InstanceId;
#   - memory and root-disk usage in CWAgent.
# Prints "unchanged" when the configuration was already in place and the
# agent is running.
set -euo pipefail

node_env=/etc/stomp/node.env
etc=/opt/aws/amazon-cloudwatch-agent/etc
ctl=/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl
config=$etc/stomp-agent.json
prometheus=$etc/stomp-prometheus.yaml

[[ -r $node_env ]] || {
    echo "stomp-node-configure: $node_env is missing (written by user data)" >&2
    exit 1
}
[[ -x $ctl ]] || {
    echo "stomp-node-configure: the CloudWatch agent is not installed" >&2
    exit 1
}

node_var() {
    local value
    value=$(sed -n "s/^$1=//p" "$node_env" | tail -n 1)
    if [[ -z $value && $# -lt 2 ]]; then
        echo "stomp-node-configure: $1 is not set in $node_env" >&2
        exit 1
    fi
    printf '%s' "${value:-${2:-}}"
}

role=$(node_var STOMP_NODE_ROLE)
asg=$(node_var STOMP_ASG_NAME)
instance_id=$(node_var STOMP_INSTANCE_ID)
service_log_group=$(node_var STOMP_LOG_GROUP_SERVICE)
system_log_group=$(node_var STOMP_LOG_GROUP_SYSTEM)

new_config=$(mktemp)
new_prometheus=$(mktemp)
trap 'rm -f -- "$new_config" "$new_prometheus"' EXIT

prometheus_section=""
if [[ $role == gateway ]]; then
    port=$(node_var STOMP_SERVICE_PORT)
    metrics_group=$(node_var STOMP_LOG_GROUP_METRICS)
    namespace=$(node_var STOMP_METRICS_NAMESPACE StompGateway)
    metric=$(node_var STOMP_CONNECTIONS_METRIC GatewayConnections)

    cat >"$new_prometheus" <<YAML
# Written by stomp-node-configure from $node_env.
global:
  scrape_interval: 30s
  scrape_timeout: 10s
scrape_configs:
  - job_name: stomp-gateway
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$port"]
        labels:
          AutoScalingGroupName: "$asg"
          InstanceId: "$instance_id"
    # Only the gauge the Auto Scaling group scales on is shipped (every
    # scraped series would otherwise become a CloudWatch Logs event).
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: gateway_connections
        target_label: __name__
        replacement: $metric
      - source_labels: [__name__]
        regex: $metric
        action: keep
YAML

    prometheus_section=$(
        cat <<JSON
,
    "metrics_collected": {
      "prometheus": {
        "log_group_name": "$metrics_group",
        "prometheus_config_path": "$prometheus",
        "emf_processor": {
          "metric_declaration_dedup": true,
          "metric_namespace": "$namespace",
          "metric_unit": { "$metric": "Count" },
          "metric_declaration": [
            {
              "source_labels": ["job"],
              "label_matcher": "^stomp-gateway\$",
              "dimensions": [["AutoScalingGroupName"], ["AutoScalingGroupName", "InstanceId"]],
              "metric_selectors": ["^$metric\$"]
            }
          ]
        }
      }
    }
JSON
    )
fi

cat >"$new_config" <<JSON
{
  "agent": { "metrics_collection_interval": 60, "run_as_user": "root" },
  "logs": {
    "force_flush_interval": 15,
    "logs_collected": {
      "files": {
        "collect_list": [
          { "file_path": "/var/log/stomp-$role/$role.log", "log_group_name": "$service_log_group", "log_stream_name": "{instance_id}" },
          { "file_path": "/var/log/stomp-user-data.log", "log_group_name": "$system_log_group", "log_stream_name": "{instance_id}/user-data" },
          { "file_path": "/var/log/cloud-init-output.log", "log_group_name": "$system_log_group", "log_stream_name": "{instance_id}/cloud-init" }
        ]
      }
    }$prometheus_section
  },
  "metrics": {
    "namespace": "CWAgent",
    "append_dimensions": { "AutoScalingGroupName": "\${aws:AutoScalingGroupName}", "InstanceId": "\${aws:InstanceId}" },
    "aggregation_dimensions": [["AutoScalingGroupName"]],
    "metrics_collected": {
      "mem": { "measurement": ["mem_used_percent"] },
      "disk": { "measurement": ["used_percent"], "resources": ["/"] }
    }
  }
}
JSON

python3 -m json.tool "$new_config" >/dev/null || {
    echo "stomp-node-configure: generated an invalid agent configuration" >&2
    exit 1
}

changed=0
if ! cmp -s "$new_config" "$config"; then
    install -m 0644 "$new_config" "$config"
    changed=1
fi
if [[ $role == gateway ]] && ! cmp -s "$new_prometheus" "$prometheus"; then
    install -m 0644 "$new_prometheus" "$prometheus"
    changed=1
fi

if ((changed == 0)) && systemctl is-active --quiet amazon-cloudwatch-agent.service; then
    echo unchanged
    exit 0
fi
"$ctl" -a fetch-config -m ec2 -s -c "file:$config" >/dev/null
echo configured
