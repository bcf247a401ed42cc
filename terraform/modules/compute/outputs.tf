output "gateway_asg_name" {
  description = "Name of the gateway Auto Scaling group."
  value       = aws_autoscaling_group.node["gateway"].name
}

output "api_asg_name" {
  description = "Name of the api Auto Scaling group."
  value       = aws_autoscaling_group.node["api"].name
}

output "gateway_security_group_id" {
  description = "Security group of the gateway nodes."
  value       = aws_security_group.gateway.id
}

output "api_security_group_id" {
  description = "Security group of the api nodes."
  value       = aws_security_group.api.id
}

output "gateway_role_arn" {
  description = "IAM role of the gateway nodes."
  value       = aws_iam_role.node["gateway"].arn
}

output "api_role_arn" {
  description = "IAM role of the api nodes."
  value       = aws_iam_role.node["api"].arn
}

output "gateway_launch_template_version" {
  description = "Launch template version the gateway group runs (changes roll the group)."
  value       = aws_launch_template.node["gateway"].latest_version
}

output "api_launch_template_version" {
  description = "Launch template version the api group runs (changes roll the group)."
  value       = aws_launch_template.node["api"].latest_version
}

output "gateway_settings" {
  description = "GATEWAY_* settings every gateway node gets from terraform (/etc/stomp-gateway/instance.env)."
  value       = local.gateway_env
}

output "api_settings" {
  description = "API_* settings every api node gets from terraform (/etc/stomp-api/instance.env; API_CONSUMER, the instance ID, is added at boot)."
  value       = local.api_env
}
