output "repository_urls" {
  description = "Repository URL of each image (<account>.dkr.ecr.<region>.amazonaws.com/<name>/<image>), by image name."
  value       = { for image, repo in aws_ecr_repository.this : image => repo.repository_url }
}

output "repository_arns" {
  description = "Repository ARN of each image, by image name."
  value       = { for image, repo in aws_ecr_repository.this : image => repo.arn }
}
