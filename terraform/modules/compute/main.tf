# Gateway and api nodes: security groups (ALB -> gateway/api, gateway/api ->
# Redis, api -> RDS and nothing else inbound), least-privilege instance roles,
# launch templates and Auto Scaling groups with rolling instance refresh,
# drain-aware termination and target tracking scaling.

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  gateway_asg_name = "${var.name}-gateway"
  api_asg_name     = "${var.name}-api"
  drain_hook_name  = "drain"

  log_groups_of = {
    gateway = ["gateway", "gateway-metrics", "system"]
    api     = ["api", "system"]
  }

  # Settings the gateway gets from terraform (they override the baked
  # defaults in /etc/stomp-gateway/gateway.env). The same numbers feed the
  # ALB (idle timeout, deregistration delay) through the environment module,
  # which validates them against each other.
  gateway_env = merge({
    GATEWAY_LISTEN                 = "0.0.0.0:${var.gateway_port}"
    GATEWAY_HEARTBEAT_SEND_MS      = tostring(var.gateway_heartbeat_ms)
    GATEWAY_HEARTBEAT_RECV_MS      = tostring(var.gateway_heartbeat_ms)
    GATEWAY_DRAIN_DELAY_MS         = tostring(var.gateway_drain_delay_seconds * 1000)
    GATEWAY_DRAIN_WINDOW_MS        = tostring(var.gateway_drain_window_seconds * 1000)
    GATEWAY_AFFINITY_COOKIE        = var.gateway_affinity_cookie
    GATEWAY_RESUME_WINDOW_MS       = tostring(var.gateway_resume_window_ms)
    GATEWAY_REBALANCE              = tostring(var.gateway_rebalance)
    GATEWAY_REBALANCE_MARGIN       = tostring(var.gateway_rebalance_margin)
    GATEWAY_REBALANCE_RATE         = tostring(var.gateway_rebalance_rate)
    GATEWAY_REBALANCE_INTERVAL_MS  = tostring(var.gateway_rebalance_interval_ms)
    GATEWAY_FLEET_REPORT_MS        = tostring(var.gateway_fleet_report_ms)
    GATEWAY_MAX_CONNECTIONS        = tostring(var.gateway_max_connections)
    GATEWAY_MAX_CONNECTIONS_PER_IP = tostring(var.gateway_max_connections_per_ip)
    GATEWAY_MAX_FRAME_RATE         = tostring(var.gateway_max_frame_rate)
    GATEWAY_FRAME_BURST            = tostring(var.gateway_frame_burst)
    GATEWAY_MAX_CONNECT_RATE       = tostring(var.gateway_max_connect_rate)
    GATEWAY_CONNECT_BURST          = tostring(var.gateway_connect_burst)
    GATEWAY_LOG_FORMAT             = "json"
    GATEWAY_DURABLE_STREAM         = var.durable_stream
    GATEWAY_DURABLE_MAX_LEN        = tostring(var.durable_stream_max_len)
    GATEWAY_HISTORY_LEN            = tostring(var.gateway_history_len)
    GATEWAY_HISTORY_TTL_MS         = tostring(var.gateway_history_ttl_ms)
  }, local.durable_env.gateway, local.history_env.gateway, local.gateway_security_env, var.gateway_extra_env)

  # Durable destinations: the same patterns for the gateways (which append
  # their messages to the stream) and the api (which persists them and serves
  # their history). Written only when set: an empty list leaves both defaults
  # (nothing durable).
  durable_env = {
    gateway = { for k, v in { GATEWAY_DURABLE = join(",", var.durable_destinations) } : k => v if v != "" }
    api     = { for k, v in { API_DURABLE = join(",", var.durable_destinations) } : k => v if v != "" }
  }

  # History destinations: the same patterns for the gateways (a SUBSCRIBE
  # with resume-from is served from their streams in Redis on any node, after
  # a node crash too) and the api (its own publishes to them go into the same
  # streams, through the same publish script). Written only when set: an
  # empty list leaves both defaults (no history). Their length and TTL are
  # in gateway_env and api_env, from the same variables.
  history_env = {
    gateway = { for k, v in { GATEWAY_HISTORY = join(",", var.gateway_history) } : k => v if v != "" }
    api     = { for k, v in { API_HISTORY = join(",", var.gateway_history) } : k => v if v != "" }
  }

  # Security settings that are lists or files: written only when set, so an
  # empty one leaves the gateway's default. No secret is among them: the JWT
  # HMAC key and the resume-token key are read from Secrets Manager at every
  # start by stomp-node-secrets (GATEWAY_JWT_SECRET_FILE and
  # GATEWAY_RESUME_KEY_FILE, in /run/stomp-gateway/secrets.env). No
  # GATEWAY_TLS_*: TLS terminates at the ALB.
  jwt_public_keys_path = {
    gateway = "/etc/stomp-gateway/jwt-public-keys"
    api     = "/etc/stomp-api/jwt-public-keys"
  }
  gateway_security_env = {
    for k, v in {
      GATEWAY_TRUSTED_PROXY     = join(",", var.gateway_trusted_proxies)
      GATEWAY_ALLOWED_ORIGIN    = join(",", var.gateway_allowed_origins)
      GATEWAY_JWT_PUBLIC_KEY    = var.gateway_jwt_public_keys == "" ? "" : local.jwt_public_keys_path["gateway"]
      GATEWAY_JWT_ISSUER        = join(",", var.gateway_jwt_issuers)
      GATEWAY_JWT_AUDIENCE      = join(",", var.gateway_jwt_audiences)
      GATEWAY_DEFAULT_SUBSCRIBE = join(",", var.gateway_default_subscribe)
      GATEWAY_DEFAULT_SEND      = join(",", var.gateway_default_send)
    } : k => v if v != ""
  }

  # The api reads --listen from API_LISTEN (its unit runs `api --listen ${API_LISTEN}`).
  # What it shares with the gateways comes from the same values: the durable
  # stream and its cap, the history destinations, length and TTL
  # (variables), and the channel prefix, destination prefixes and largest
  # body from the gateways' settings (the gateway's defaults where
  # gateway_extra_env does not set them), so the two cannot disagree.
  # API_CONSUMER (the instance ID) is added by user data; API_DATABASE_CA_FILE
  # (the RDS CA bundle) is baked into the AMI's api.env.
  api_env = merge({
    API_LISTEN             = "0.0.0.0:${var.api_port}"
    API_STREAM             = var.durable_stream
    API_STREAM_MAX_LEN     = tostring(var.durable_stream_max_len)
    API_HISTORY_LEN        = tostring(var.gateway_history_len)
    API_HISTORY_TTL_MS     = tostring(var.gateway_history_ttl_ms)
    API_CHANNEL_PREFIX     = lookup(local.gateway_env, "GATEWAY_REDIS_CHANNEL_PREFIX", "stomp:")
    API_DESTINATION_PREFIX = lookup(local.gateway_env, "GATEWAY_DESTINATION_PREFIX", "/topic/")
    API_MAX_BODY_BYTES     = lookup(local.gateway_env, "GATEWAY_MAX_FRAME_BYTES", "65536")
    API_LOG_FORMAT         = "json"
    # Attachments: presigned PUT/GET into the media bucket, under the
    # prefix the role below may write (docs/api.md, "Attachments").
    API_UPLOAD_BUCKET = local.media_bucket_name
    API_UPLOAD_REGION = local.region
    API_UPLOAD_PREFIX = local.upload_prefix
  }, local.durable_env.api, local.history_env.api, local.api_security_env)

  media_bucket_name = element(split(":::", var.media_bucket_arn), 1)
  upload_prefix     = "uploads/"

  # The api checks the same tokens as the gateways: same issuer's keys,
  # issuers, audiences and default grants (the HMAC key comes from the same
  # secret, see STOMP_JWT_SECRET_ARN below).
  api_security_env = {
    for k, v in {
      API_JWT_PUBLIC_KEY    = var.gateway_jwt_public_keys == "" ? "" : local.jwt_public_keys_path["api"]
      API_JWT_ISSUER        = join(",", var.gateway_jwt_issuers)
      API_JWT_AUDIENCE      = join(",", var.gateway_jwt_audiences)
      API_DEFAULT_SUBSCRIBE = join(",", var.gateway_default_subscribe)
      API_DEFAULT_SEND      = join(",", var.gateway_default_send)
    } : k => v if v != ""
  }

  common_node_env = {
    AWS_REGION             = local.region
    STOMP_ENVIRONMENT      = var.name
    STOMP_RELEASE          = var.release
    STOMP_LOG_GROUP_SYSTEM = var.log_group_names["system"]
    STOMP_REDIS_SECRET_ARN = var.redis_auth_secret_arn
  }

  node_env = {
    gateway = merge(local.common_node_env, {
      STOMP_NODE_ROLE          = "gateway"
      STOMP_ASG_NAME           = local.gateway_asg_name
      STOMP_LIFECYCLE_HOOK     = local.drain_hook_name
      STOMP_LOG_GROUP_SERVICE  = var.log_group_names["gateway"]
      STOMP_LOG_GROUP_METRICS  = var.log_group_names["gateway-metrics"]
      STOMP_METRICS_NAMESPACE  = var.metrics_namespace
      STOMP_CONNECTIONS_METRIC = var.connections_metric_name
      STOMP_SERVICE_PORT       = tostring(var.gateway_port)
      # Read by stomp-node-secrets; empty = no HMAC key to fetch.
      STOMP_JWT_SECRET_ARN = var.gateway_jwt_secret_arn
      # The resume-token key, the same on every gateway (stomp-node-secrets).
      STOMP_RESUME_KEY_SECRET_ARN = var.gateway_resume_key_secret_arn
    })
    api = merge(local.common_node_env, {
      STOMP_NODE_ROLE         = "api"
      STOMP_ASG_NAME          = local.api_asg_name
      STOMP_LOG_GROUP_SERVICE = var.log_group_names["api"]
      STOMP_SERVICE_PORT      = tostring(var.api_port)
      STOMP_DB_SECRET_ARN     = var.db_secret_arn
      STOMP_DB_HOST           = var.db_address
      STOMP_DB_PORT           = tostring(var.db_port)
      STOMP_DB_NAME           = var.db_name
      # The gateways' JWT HMAC key: the api checks the same tokens.
      STOMP_JWT_SECRET_ARN = var.gateway_jwt_secret_arn
    })
  }

  user_data = {
    for role, env in {
      gateway = local.gateway_env
      api     = local.api_env
      } : role => base64encode(templatefile("${path.module}/templates/node-user-data.sh.tftpl", {
        role             = role
        binary           = role
        release          = var.release
        artifacts_bucket = var.artifacts_bucket
        region           = local.region
        node_env         = join("\n", [for k in sort(keys(local.node_env[role])) : "${k}=${local.node_env[role][k]}"])
        service_env      = join("\n", [for k in sort(keys(env)) : "${k}=${env[k]}"])
        # Public keys only (never a secret), for both services; base64 so
        # that any JSON or PEM survives the shell quoting of the template.
        jwt_public_keys_b64  = base64encode(var.gateway_jwt_public_keys)
        jwt_public_keys_path = local.jwt_public_keys_path[role]
    }))
  }
}

# --- security groups -------------------------------------------------------------------

resource "aws_security_group" "gateway" {
  name_prefix = "${var.name}-gateway-"
  description = "Gateway nodes: WebSocket/HTTP from the ALB only; out to Redis and HTTPS"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-gateway" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "api" {
  name_prefix = "${var.name}-api-"
  description = "Api nodes: HTTP from the ALB only; out to Redis, PostgreSQL and HTTPS"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-api" })

  lifecycle {
    create_before_destroy = true
  }
}

# ALB -> gateway / api
resource "aws_vpc_security_group_egress_rule" "alb_to_gateway" {
  security_group_id            = var.alb_security_group_id
  description                  = "ALB to gateway nodes (WebSocket, health checks)"
  referenced_security_group_id = aws_security_group.gateway.id
  ip_protocol                  = "tcp"
  from_port                    = var.gateway_port
  to_port                      = var.gateway_port
}

resource "aws_vpc_security_group_ingress_rule" "gateway_from_alb" {
  security_group_id            = aws_security_group.gateway.id
  description                  = "WebSocket and health checks from the ALB"
  referenced_security_group_id = var.alb_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.gateway_port
  to_port                      = var.gateway_port
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = var.alb_security_group_id
  description                  = "ALB to api nodes (REST, health checks)"
  referenced_security_group_id = aws_security_group.api.id
  ip_protocol                  = "tcp"
  from_port                    = var.api_port
  to_port                      = var.api_port
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.api.id
  description                  = "REST and health checks from the ALB"
  referenced_security_group_id = var.alb_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.api_port
  to_port                      = var.api_port
}

# gateway / api -> Redis
resource "aws_vpc_security_group_egress_rule" "to_redis" {
  for_each = {
    gateway = aws_security_group.gateway.id
    api     = aws_security_group.api.id
  }

  security_group_id            = each.value
  description                  = "${each.key} to ElastiCache Redis (TLS)"
  referenced_security_group_id = var.redis_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.redis_port
  to_port                      = var.redis_port
}

resource "aws_vpc_security_group_ingress_rule" "redis_from" {
  for_each = {
    gateway = aws_security_group.gateway.id
    api     = aws_security_group.api.id
  }

  security_group_id            = var.redis_security_group_id
  description                  = "Redis (TLS) from the ${each.key} nodes"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = var.redis_port
  to_port                      = var.redis_port
}

# api -> RDS
resource "aws_vpc_security_group_egress_rule" "api_to_db" {
  security_group_id            = aws_security_group.api.id
  description                  = "api to RDS PostgreSQL (TLS)"
  referenced_security_group_id = var.db_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.db_port
  to_port                      = var.db_port
}

resource "aws_vpc_security_group_ingress_rule" "db_from_api" {
  security_group_id            = var.db_security_group_id
  description                  = "PostgreSQL (TLS) from the api nodes"
  referenced_security_group_id = aws_security_group.api.id
  ip_protocol                  = "tcp"
  from_port                    = var.db_port
  to_port                      = var.db_port
}

# Both -> HTTPS: AWS APIs (through the VPC endpoints or NAT), S3 for the
# release binary (through the S3 gateway endpoint).
resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = {
    gateway = aws_security_group.gateway.id
    api     = aws_security_group.api.id
  }

  security_group_id = each.value
  description       = "${each.key} to AWS APIs and S3 over HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# Optional in-VPC Prometheus: node_exporter and the services' /metrics.
resource "aws_vpc_security_group_ingress_rule" "metrics" {
  for_each = {
    for pair in setproduct(["gateway", "api"], var.monitoring_cidr_blocks, ["9100", "service"]) :
    "${pair[0]}-${pair[1]}-${pair[2]}" => {
      sg   = pair[0] == "gateway" ? aws_security_group.gateway.id : aws_security_group.api.id
      cidr = pair[1]
      port = pair[2] == "9100" ? 9100 : (pair[0] == "gateway" ? var.gateway_port : var.api_port)
    }
  }

  security_group_id = each.value.sg
  description       = "Prometheus scrape from ${each.value.cidr}"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

# --- IAM -------------------------------------------------------------------------------------

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  for_each = toset(["gateway", "api"])

  name_prefix        = "${var.name}-${each.key}-"
  description        = "${var.name} ${each.key} nodes"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = var.tags
}

resource "aws_iam_instance_profile" "node" {
  for_each = aws_iam_role.node

  name_prefix = "${var.name}-${each.key}-"
  role        = each.value.name

  tags = var.tags
}

# Session Manager instead of SSH (no key pairs, no port 22).
resource "aws_iam_role_policy_attachment" "ssm" {
  for_each = aws_iam_role.node

  role       = each.value.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "node" {
  for_each = toset(["gateway", "api"])

  statement {
    sid       = "ReadRelease"
    actions   = ["s3:GetObject"]
    resources = ["${var.artifacts_bucket_arn}/releases/*"]
  }

  statement {
    sid       = "DecryptRelease"
    actions   = ["kms:Decrypt"]
    resources = [var.static_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid     = "ReadSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = compact([
      var.redis_auth_secret_arn,
      each.key == "api" ? var.db_secret_arn : "",
      # The JWT HMAC key: both services check the same tokens.
      var.gateway_jwt_secret_arn,
      # The resume-token key: gateways only.
      each.key == "gateway" ? var.gateway_resume_key_secret_arn : "",
    ])
  }

  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.data_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid     = "ShipLogs"
    actions = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [
      for k in local.log_groups_of[each.key] : "${var.log_group_arns[k]}:*"
    ]
  }

  # PutMetricData has no resource-level permissions; the namespace condition
  # is the only narrowing available.
  statement {
    sid       = "PublishMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace, "CWAgent"]
    }
  }

  # The CloudWatch agent resolves the AutoScalingGroupName dimension from tags.
  statement {
    sid       = "DescribeOwnTags"
    actions   = ["ec2:DescribeTags"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = each.key == "api" ? [1] : []

    # What the api signs: uploads (PUT) and downloads (GET) of attachments,
    # under the upload prefix only. A presigned URL carries the signer's
    # rights, so these are exactly the rights any URL it hands out can use.
    content {
      sid       = "MediaObjects"
      actions   = ["s3:GetObject", "s3:PutObject"]
      resources = ["${var.media_bucket_arn}/${local.upload_prefix}*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "api" ? [1] : []

    content {
      sid       = "MediaEncryption"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.static_kms_key_arn]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }

  # A terminating gateway ends its own drain lifecycle hook early once the
  # service has stopped (stomp-lifecycle-watch).
  dynamic "statement" {
    for_each = each.key == "gateway" ? [1] : []

    content {
      sid       = "CompleteOwnLifecycleHook"
      actions   = ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
      resources = ["arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.gateway_asg_name}"]
    }
  }
}

resource "aws_iam_role_policy" "node" {
  for_each = aws_iam_role.node

  name   = "${each.key}-node"
  role   = each.value.id
  policy = data.aws_iam_policy_document.node[each.key].json
}

# --- launch templates --------------------------------------------------------------------

locals {
  roles = {
    gateway = {
      ami                = var.gateway_ami_id
      instance_type      = var.gateway_instance_type
      asg_name           = local.gateway_asg_name
      min_size           = var.gateway_min_size
      max_size           = var.gateway_max_size
      target_group_arn   = var.gateway_target_group_arn
      target_cpu_percent = var.gateway_target_cpu_percent
      # Only gateways hold long-lived connections that need a drain hook.
      drain_hook_seconds = var.gateway_lifecycle_hook_seconds
    }
    api = {
      ami                = var.api_ami_id
      instance_type      = var.api_instance_type
      asg_name           = local.api_asg_name
      min_size           = var.api_min_size
      max_size           = var.api_max_size
      target_group_arn   = var.api_target_group_arn
      target_cpu_percent = var.api_target_cpu_percent
      drain_hook_seconds = null
    }
  }
}

resource "aws_launch_template" "node" {
  for_each = local.roles

  name_prefix            = "${var.name}-${each.key}-"
  description            = "${var.name} ${each.key} node, release ${var.release}"
  image_id               = each.value.ami
  instance_type          = each.value.instance_type
  ebs_optimized          = true
  update_default_version = true
  vpc_security_group_ids = [each.key == "gateway" ? aws_security_group.gateway.id : aws_security_group.api.id]
  user_data              = local.user_data[each.key]

  iam_instance_profile {
    arn = aws_iam_instance_profile.node[each.key].arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = var.root_device_name

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_gb
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.name}-${each.key}", Role = each.key, Release = var.release })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = "${var.name}-${each.key}", Role = each.key })
  }

  tags = var.tags
}

# --- Auto Scaling groups ------------------------------------------------------------------

resource "aws_autoscaling_group" "node" {
  for_each = local.roles

  name                      = each.value.asg_name
  vpc_zone_identifier       = var.app_subnet_ids
  min_size                  = each.value.min_size
  max_size                  = each.value.max_size
  desired_capacity          = each.value.min_size
  target_group_arns         = [each.value.target_group_arn]
  health_check_type         = "ELB"
  health_check_grace_period = var.instance_warmup_seconds
  default_instance_warmup   = var.instance_warmup_seconds
  termination_policies      = ["OldestLaunchTemplate", "OldestInstance", "Default"]
  capacity_rebalance        = false
  metrics_granularity       = "1Minute"
  enabled_metrics           = ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupPendingInstances", "GroupTerminatingInstances", "GroupTotalInstances"]
  wait_for_capacity_timeout = "15m"

  launch_template {
    id      = aws_launch_template.node[each.key].id
    version = aws_launch_template.node[each.key].latest_version
  }

  # A terminating gateway waits here (Terminating:Wait) while it drains: the
  # ALB deregisters it (deregistration delay), stomp-lifecycle-watch sees the
  # target lifecycle state "Terminated" and stops the service (SIGTERM ->
  # /readyz 503 for the drain delay -> connections closed over the drain
  # window), then completes the hook. CONTINUE on timeout.
  dynamic "initial_lifecycle_hook" {
    for_each = each.value.drain_hook_seconds == null ? [] : [each.value.drain_hook_seconds]

    content {
      name                 = local.drain_hook_name
      lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
      heartbeat_timeout    = initial_lifecycle_hook.value
      default_result       = "CONTINUE"
    }
  }

  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = var.refresh_max_healthy_percentage
      instance_warmup        = var.instance_warmup_seconds
      skip_matching          = true
      # No auto_rollback: terraform sets the new launch template version on
      # the group before it starts the refresh, so a "rollback" would return
      # to the same version (terraform-provider-aws issue 34189). Roll back
      # by deploying the previous release.
    }
  }

  dynamic "tag" {
    for_each = merge(var.tags, { Name = each.value.asg_name, Role = each.key })

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # The scaling policies own the desired capacity.
    ignore_changes = [desired_capacity]
  }
}

# --- scaling policies ----------------------------------------------------------------------------

# Connections per node: the CloudWatch agent on every gateway publishes the
# gateway's gateway_connections gauge as StompGateway/GatewayConnections with
# the AutoScalingGroupName dimension; Average over that dimension is the
# per-node mean.
resource "aws_autoscaling_policy" "gateway_connections" {
  name                   = "connections-per-node"
  autoscaling_group_name = aws_autoscaling_group.node["gateway"].name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value = var.gateway_target_connections

    customized_metric_specification {
      namespace   = var.metrics_namespace
      metric_name = var.connections_metric_name
      statistic   = "Average"

      metric_dimension {
        name  = "AutoScalingGroupName"
        value = aws_autoscaling_group.node["gateway"].name
      }
    }
  }
}

resource "aws_autoscaling_policy" "cpu" {
  for_each = aws_autoscaling_group.node

  name                   = "cpu"
  autoscaling_group_name = each.value.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value = local.roles[each.key].target_cpu_percent

    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
  }
}
