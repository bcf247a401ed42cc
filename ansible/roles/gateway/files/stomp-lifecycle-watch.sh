#!/bin/bash
# stomp-lifecycle-watch [UNIT]
#
# Polls the instance's Auto Scaling target lifecycle state (IMDSv2). When it
# turns "Terminated" (scale-in, instance refresh, rebalancing), stops UNIT
# (default stomp-gateway.service): SIGTERM makes the gateway fail /readyz for
# its drain delay and then close its connections over the drain window, while
# the ALB keeps them open for the deregistration delay. Then it completes the
# termination lifecycle hook so the instance does not wait for the hook's
# timeout. Settings come from /etc/stomp/node.env (user data).
set -euo pipefail

unit=${1:-stomp-gateway.service}
node_env=/etc/stomp/node.env
imds=http://169.254.169.254
poll_seconds=5

node_var() {
    sed -n "s/^$1=//p" "$node_env" | tail -n 1
}

imds_get() {
    local token
    token=$(curl -fsS -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$imds/latest/api/token") || return 1
    curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/$1"
}

while :; do
    state=$(imds_get autoscaling/target-lifecycle-state || true)
    if [[ $state == Terminated ]]; then
        break
    fi
    sleep "$poll_seconds"
done

echo "stomp-lifecycle-watch: target lifecycle state is Terminated; stopping $unit to drain it"
systemctl stop "$unit"
echo "stomp-lifecycle-watch: $unit stopped"

region=$(node_var AWS_REGION)
asg=$(node_var STOMP_ASG_NAME)
hook=$(node_var STOMP_LIFECYCLE_HOOK)
instance_id=$(node_var STOMP_INSTANCE_ID)
if [[ -z $asg || -z $hook || -z $instance_id ]]; then
    echo "stomp-lifecycle-watch: no lifecycle hook in $node_env; the hook will time out and continue"
    exit 0
fi

# The hook only accepts completion once the instance is in Terminating:Wait,
# which may come after the target state changed; retry for a while.
for _ in $(seq 1 24); do
    if aws --region "$region" autoscaling complete-lifecycle-action \
        --auto-scaling-group-name "$asg" --lifecycle-hook-name "$hook" \
        --instance-id "$instance_id" --lifecycle-action-result CONTINUE >/dev/null 2>&1; then
        echo "stomp-lifecycle-watch: completed lifecycle hook $hook"
        exit 0
    fi
    sleep 5
done
echo "stomp-lifecycle-watch: could not complete lifecycle hook $hook; it will time out and continue"
