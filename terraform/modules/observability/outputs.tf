output "sns_topic_arn" {
  description = "ARN of the alarm topic (subscribe pagers/chat integrations here)."
  value       = aws_sns_topic.alarms.arn
}

output "log_group_names" {
  description = "Log group names by purpose: gateway, api, gateway-metrics, system."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.name }
}

output "log_group_arns" {
  description = "Log group ARNs by purpose: gateway, api, gateway-metrics, system."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.arn }
}

output "alarm_names" {
  description = "Names of all alarms of this module."
  value = concat(
    [aws_cloudwatch_metric_alarm.alb_5xx_rate.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.metric : a.alarm_name],
  )
}
