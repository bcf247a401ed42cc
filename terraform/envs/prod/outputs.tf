output "release" {
  description = "Release the nodes run (releases/<release>/ in the artifact bucket)."
  value       = var.release
}

output "gateway_url" {
  description = "WebSocket URL of the STOMP gateway."
  value       = module.edge.gateway_url
}

output "api_url" {
  description = "Base URL of the REST api."
  value       = module.edge.api_url
}

output "frontend_url" {
  description = "URL of the demo/chat front end."
  value       = module.static.frontend_url
}

output "alb_dns_name" {
  description = "DNS name of the ALB (point domain_name here when Route 53 is not managed by terraform)."
  value       = module.edge.alb_dns_name
}

output "cloudfront_domain_name" {
  description = "CloudFront domain of the front end (point frontend_domain_name here when Route 53 is not managed by terraform)."
  value       = module.static.cloudfront_domain_name
}

output "certificate_validation_records" {
  description = "DNS records that validate the ALB and CloudFront certificates (only needed without route53_zone_id)."
  value = {
    alb        = module.edge.certificate_validation_records
    cloudfront = module.static.certificate_validation_records
  }
}

output "redis_primary_endpoint" {
  description = "Primary endpoint of ElastiCache Redis (TLS + AUTH; the URL with the token is in the redis secret)."
  value       = module.data.redis_primary_endpoint
}

output "redis_auth_secret_arn" {
  description = "Secret with the Redis AUTH token and rediss:// URL."
  value       = module.data.redis_auth_secret_arn
}

output "db_endpoint" {
  description = "PostgreSQL primary, host:port."
  value       = "${module.data.db_address}:${module.data.db_port}"
}

output "db_master_secret_arn" {
  description = "Secret (managed by RDS) with the database master credentials."
  value       = module.data.db_master_secret_arn
}

output "artifacts_bucket" {
  description = "Bucket the deploy workflow uploads releases/<sha>/ to."
  value       = module.static.artifacts_bucket
}

output "image_repository_urls" {
  description = "ECR repository URL of each container image (gateway, api); the deploy workflow pushes <url>:<commit SHA>."
  value       = module.registry.repository_urls
}

output "frontend_bucket" {
  description = "Bucket the front end is uploaded to."
  value       = module.static.frontend_bucket
}

output "cloudfront_distribution_id" {
  description = "Front-end distribution (invalidate /* after an upload)."
  value       = module.static.cloudfront_distribution_id
}

output "media_bucket" {
  description = "Media upload bucket."
  value       = module.static.media_bucket
}

output "gateway_asg_name" {
  description = "Gateway Auto Scaling group (instance refresh target)."
  value       = module.compute.gateway_asg_name
}

output "api_asg_name" {
  description = "Api Auto Scaling group (instance refresh target)."
  value       = module.compute.api_asg_name
}

output "gateway_target_group_arn" {
  description = "Gateway target group (the deploy workflow waits for its targets to be healthy)."
  value       = module.edge.gateway_target_group_arn
}

output "api_target_group_arn" {
  description = "Api target group (the deploy workflow waits for its targets to be healthy)."
  value       = module.edge.api_target_group_arn
}

output "gateway_settings" {
  description = "GATEWAY_* settings the gateway nodes run with."
  value       = module.compute.gateway_settings
}

output "api_settings" {
  description = "API_* settings the api nodes run with (besides API_CONSUMER, the instance ID, and the baked API_DATABASE_CA_FILE)."
  value       = module.compute.api_settings
}

output "sns_topic_arn" {
  description = "Alarm topic."
  value       = module.observability.sns_topic_arn
}

output "log_group_names" {
  description = "CloudWatch log groups of the services."
  value       = module.observability.log_group_names
}

output "github_plan_role_arn" {
  description = "Role the CI plan job assumes (repository secret AWS_PLAN_ROLE_ARN)."
  value       = aws_iam_role.github_plan.arn
}

output "github_deploy_role_arn" {
  description = "Role the deploy job assumes (secret AWS_DEPLOY_ROLE_ARN of the production environment)."
  value       = aws_iam_role.github_deploy.arn
}

output "gateway_jwt_secret_arn" {
  description = "Secrets Manager secret to put the gateway's JWT HMAC key into (aws secretsmanager put-secret-value); empty unless gateway_jwt_secret_enabled."
  value       = module.data.gateway_jwt_secret_arn
}
