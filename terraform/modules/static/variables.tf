variable "name" {
  description = "Name prefix for every resource of this module (e.g. \"stomp-prod\"). Bucket names get the account ID appended to be globally unique."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "The name must be 3-24 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "frontend_domain_name" {
  description = "Host name the demo/chat front end is served under through CloudFront (e.g. \"chat.example.com\")."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.frontend_domain_name))
    error_message = "The frontend_domain_name must be a lower-case DNS host name."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone that holds frontend_domain_name. When set, the certificate is validated by DNS and an alias record is created; when null, validate the certificate by hand (see the certificate_validation_records output) and create the CNAME yourself."
  type        = string
  default     = null

  validation {
    condition     = var.route53_zone_id == null || can(regex("^Z[A-Z0-9]{1,31}$", var.route53_zone_id))
    error_message = "The route53_zone_id must look like \"Z0123456789ABCDEFGHIJ\"."
  }
}

variable "cloudfront_price_class" {
  description = "CloudFront price class of the front-end distribution."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.cloudfront_price_class)
    error_message = "The cloudfront_price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "media_allowed_origins" {
  description = "Origins allowed by the media bucket's CORS rules for browser uploads with presigned URLs. Empty = https://<frontend_domain_name> only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.media_allowed_origins : can(regex("^https://", o))])
    error_message = "Every media origin must start with https://."
  }
}

variable "media_noncurrent_days" {
  description = "Days a replaced or deleted media object version is kept before it expires."
  type        = number
  default     = 30

  validation {
    condition     = var.media_noncurrent_days >= 1 && var.media_noncurrent_days <= 3650
    error_message = "The media_noncurrent_days must be between 1 and 3650."
  }
}

variable "log_retention_days" {
  description = "Days access logs (ALB, CloudFront, S3) are kept in the log bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 3650
    error_message = "The log_retention_days must be between 30 and 3650."
  }
}

variable "artifact_retention_days" {
  description = "Days a release artifact (gateway/api binaries under releases/) is kept."
  type        = number
  default     = 180

  validation {
    condition     = var.artifact_retention_days >= 7
    error_message = "Keep artifacts at least 7 days so that an instance refresh can still roll back."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
