output "alb_arn" {
  description = "ARN of the ALB."
  value       = aws_lb.this.arn
}

output "alb_arn_suffix" {
  description = "ARN suffix of the ALB (the LoadBalancer dimension of its CloudWatch metrics)."
  value       = aws_lb.this.arn_suffix
}

output "alb_dns_name" {
  description = "DNS name of the ALB (CNAME/alias target for domain_name)."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the ALB, for alias records."
  value       = aws_lb.this.zone_id
}

output "alb_security_group_id" {
  description = "Security group of the ALB (the only source the gateway/api security groups admit)."
  value       = aws_security_group.alb.id
}

output "gateway_target_group_arn" {
  description = "ARN of the gateway target group."
  value       = aws_lb_target_group.gateway.arn
}

output "gateway_target_group_arn_suffix" {
  description = "ARN suffix of the gateway target group (TargetGroup dimension of CloudWatch metrics)."
  value       = aws_lb_target_group.gateway.arn_suffix
}

output "api_target_group_arn" {
  description = "ARN of the api target group."
  value       = aws_lb_target_group.api.arn
}

output "api_target_group_arn_suffix" {
  description = "ARN suffix of the api target group (TargetGroup dimension of CloudWatch metrics)."
  value       = aws_lb_target_group.api.arn_suffix
}

output "gateway_url" {
  description = "WebSocket URL of the STOMP gateway."
  value       = "wss://${var.domain_name}/ws"
}

output "api_url" {
  description = "Base URL of the REST api."
  value       = "https://${var.domain_name}/v1/"
}

output "web_acl_arn" {
  description = "ARN of the WAF web ACL attached to the ALB."
  value       = aws_wafv2_web_acl.this.arn
}

output "certificate_validation_records" {
  description = "DNS records that validate the ALB certificate (create them by hand when route53_zone_id is null)."
  value = [
    for o in aws_acm_certificate.this.domain_validation_options : {
      name  = o.resource_record_name
      type  = o.resource_record_type
      value = o.resource_record_value
    }
  ]
}
