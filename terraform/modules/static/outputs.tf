output "logs_bucket" {
  description = "Name of the access-log bucket (ALB logs go under alb/)."
  # Taken from the bucket policy so that users (the ALB's access_logs) wait
  # until the log-delivery grants exist.
  value = aws_s3_bucket_policy.logs.bucket
}

output "frontend_bucket" {
  description = "Name of the front-end bucket (upload the built demo/chat app here)."
  value       = aws_s3_bucket.this["frontend"].id
}

output "media_bucket" {
  description = "Name of the media upload bucket."
  value       = aws_s3_bucket.this["media"].id
}

output "media_bucket_arn" {
  description = "ARN of the media upload bucket."
  value       = aws_s3_bucket.this["media"].arn
}

output "artifacts_bucket" {
  description = "Name of the release artifact bucket (binaries under releases/<version>/)."
  value       = aws_s3_bucket.this["artifacts"].id
}

output "artifacts_bucket_arn" {
  description = "ARN of the release artifact bucket."
  value       = aws_s3_bucket.this["artifacts"].arn
}

output "kms_key_arn" {
  description = "KMS key that encrypts the front-end, media and artifact buckets (instances need kms:Decrypt/GenerateDataKey on it)."
  value       = module.key.arn
}

output "cloudfront_distribution_id" {
  description = "ID of the front-end CloudFront distribution (for cache invalidations)."
  value       = aws_cloudfront_distribution.frontend.id
}

output "cloudfront_domain_name" {
  description = "CloudFront domain of the front end (CNAME target when Route 53 is not managed here)."
  value       = aws_cloudfront_distribution.frontend.domain_name
}

output "frontend_url" {
  description = "URL of the demo/chat front end."
  value       = "https://${var.frontend_domain_name}"
}

output "certificate_validation_records" {
  description = "DNS records that validate the front-end certificate (create them by hand when route53_zone_id is null)."
  value = [
    for o in aws_acm_certificate.frontend.domain_validation_options : {
      name  = o.resource_record_name
      type  = o.resource_record_type
      value = o.resource_record_value
    }
  ]
}
