# Log groups the instances' CloudWatch agent writes to, an SNS topic for
# alarms, and the alarms themselves (ALB, target groups, Redis, RDS).

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  log_prefix = "/stomp/${var.name}"

  # gateway, api:       application logs (the services' stdout/stderr)
  # gateway-metrics:    embedded-metric-format records the CloudWatch agent
  #                     makes of the gateway's Prometheus metrics (these become
  #                     the StompGateway/GatewayConnections metric)
  # system:             syslog / cloud-init of the instances
  log_groups = toset(["gateway", "api", "gateway-metrics", "system"])

  alarm_actions = [aws_sns_topic.alarms.arn]
}

module "key" {
  source = "../kms_key"

  name        = "${var.name}-observability"
  description = "${var.name} application log groups and alarm topic"
  service_grants = [
    {
      sid      = "CloudWatchLogsUse"
      services = ["logs.${local.region}.amazonaws.com"]
      condition = {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values   = ["arn:aws:logs:${local.region}:${local.account_id}:log-group:${local.log_prefix}/*"]
      }
    },
    {
      sid      = "CloudWatchAlarmsPublishToEncryptedTopic"
      services = ["cloudwatch.amazonaws.com"]
      actions  = ["kms:Decrypt", "kms:GenerateDataKey*"]
      condition = {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    },
  ]

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "this" {
  for_each = local.log_groups

  name              = "${local.log_prefix}/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn

  tags = var.tags
}

# --- alarm topic -------------------------------------------------------------------

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = module.key.arn

  tags = var.tags
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

# --- ALB -----------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "alb_5xx_rate" {
  alarm_name          = "${var.name}-alb-5xx-rate"
  alarm_description   = "More than ${var.alb_5xx_rate_percent}% of ALB responses are 5xx (ALB- or target-generated)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alb_5xx_rate_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, 100 * (FILL(elb5xx, 0) + FILL(target5xx, 0)) / requests, 0)"
    label       = "5xx rate (%)"
    return_data = true
  }

  metric_query {
    id = "requests"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "elb5xx"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "target5xx"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  tags = var.tags
}

locals {
  target_groups = {
    gateway = var.gateway_target_group_arn_suffix
    api     = var.api_target_group_arn_suffix
  }

  # Every single-metric alarm, by key: what differs between them. One
  # resource below creates them all with the same actions and tags.
  metric_alarms = merge(
    {
      "api-p99-response-time" = {
        description = "p99 response time of the api target group is above ${var.api_p99_response_seconds}s."
        namespace   = "AWS/ApplicationELB", metric = "TargetResponseTime", statistic = null, extended_statistic = "p99"
        period      = 60, evaluation_periods = 5, datapoints = 3
        comparison  = "GreaterThanThreshold", threshold = var.api_p99_response_seconds, missing = "notBreaching"
        dimensions  = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.api_target_group_arn_suffix }
      }
      "db-cpu" = {
        description = "Database CPU is above ${var.db_cpu_percent}%."
        namespace   = "AWS/RDS", metric = "CPUUtilization", statistic = "Average", extended_statistic = null
        period      = 60, evaluation_periods = 10, datapoints = 8
        comparison  = "GreaterThanThreshold", threshold = var.db_cpu_percent, missing = "missing"
        dimensions  = { DBInstanceIdentifier = var.db_instance_id }
      }
      "db-free-storage" = {
        description = "Database free storage is below ${var.db_free_storage_percent}% of the allocated ${var.db_allocated_storage_gb} GiB (storage autoscaling may be at its limit)."
        namespace   = "AWS/RDS", metric = "FreeStorageSpace", statistic = "Minimum", extended_statistic = null
        period      = 300, evaluation_periods = 2, datapoints = null
        comparison  = "LessThanThreshold", threshold = floor(var.db_allocated_storage_gb * 1073741824 * var.db_free_storage_percent / 100), missing = "missing"
        dimensions  = { DBInstanceIdentifier = var.db_instance_id }
      }
      "db-connections" = {
        description = "More than ${var.db_max_connections} database connections."
        namespace   = "AWS/RDS", metric = "DatabaseConnections", statistic = "Maximum", extended_statistic = null
        period      = 60, evaluation_periods = 5, datapoints = 3
        comparison  = "GreaterThanThreshold", threshold = var.db_max_connections, missing = "missing"
        dimensions  = { DBInstanceIdentifier = var.db_instance_id }
      }
    },
    { for tg, suffix in local.target_groups : "${tg}-unhealthy-hosts" => {
      description = "At least one ${tg} target has failed its ALB health check for 3 minutes (draining nodes are deregistered first and do not count)."
      namespace   = "AWS/ApplicationELB", metric = "UnHealthyHostCount", statistic = "Maximum", extended_statistic = null
      period      = 60, evaluation_periods = 3, datapoints = null
      comparison  = "GreaterThanThreshold", threshold = 0, missing = "notBreaching"
      dimensions  = { LoadBalancer = var.alb_arn_suffix, TargetGroup = suffix }
    } },
    { for tg, suffix in local.target_groups : "${tg}-no-healthy-hosts" => {
      description = "No ${tg} target is healthy: the service is down."
      namespace   = "AWS/ApplicationELB", metric = "HealthyHostCount", statistic = "Minimum", extended_statistic = null
      period      = 60, evaluation_periods = 2, datapoints = null
      comparison  = "LessThanThreshold", threshold = 1, missing = "breaching"
      dimensions  = { LoadBalancer = var.alb_arn_suffix, TargetGroup = suffix }
    } },
    { for id in var.redis_member_clusters : "redis-cpu-${id}" => {
      description = "Redis engine thread of ${id} is above ${var.redis_cpu_percent}% CPU."
      namespace   = "AWS/ElastiCache", metric = "EngineCPUUtilization", statistic = "Average", extended_statistic = null
      period      = 60, evaluation_periods = 5, datapoints = 3
      comparison  = "GreaterThanThreshold", threshold = var.redis_cpu_percent, missing = "missing"
      dimensions  = { CacheClusterId = id }
    } },
    { for id in var.redis_member_clusters : "redis-memory-${id}" => {
      description = "Redis node ${id} uses more than ${var.redis_memory_percent}% of its memory."
      namespace   = "AWS/ElastiCache", metric = "DatabaseMemoryUsagePercentage", statistic = "Maximum", extended_statistic = null
      period      = 60, evaluation_periods = 5, datapoints = 3
      comparison  = "GreaterThanThreshold", threshold = var.redis_memory_percent, missing = "missing"
      dimensions  = { CacheClusterId = id }
    } },
  )
}

resource "aws_cloudwatch_metric_alarm" "metric" {
  for_each = local.metric_alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  extended_statistic  = each.value.extended_statistic
  period              = each.value.period
  evaluation_periods  = each.value.evaluation_periods
  datapoints_to_alarm = each.value.datapoints
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  treat_missing_data  = each.value.missing
  actions_enabled     = true
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  dimensions          = each.value.dimensions

  tags = var.tags
}
