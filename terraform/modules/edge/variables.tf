variable "name" {
  description = "Name prefix for every resource of this module (e.g. \"stomp-prod\"). Target group names get \"-gw\"/\"-api\" appended and must stay within 32 characters."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "The name must be 3-24 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC the load balancer and target groups live in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must look like \"vpc-0123abcd\"."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets (one per AZ, at least 2) the ALB is placed in."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "An ALB needs subnets in at least 2 availability zones."
  }
}

variable "domain_name" {
  description = "Host name clients use for the gateway (wss://<domain_name>/ws) and the REST api (https://<domain_name>/v1/...)."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "The domain_name must be a lower-case DNS host name."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone for domain_name. When set, the ACM certificate is validated by DNS and an alias record to the ALB is created; when null both are left to you (see the certificate_validation_records output)."
  type        = string
  default     = null

  validation {
    condition     = var.route53_zone_id == null || can(regex("^Z[A-Z0-9]{1,31}$", var.route53_zone_id))
    error_message = "The route53_zone_id must look like \"Z0123456789ABCDEFGHIJ\"."
  }
}

variable "ssl_policy" {
  description = "TLS security policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = can(regex("^ELBSecurityPolicy-(TLS13-1-2|TLS13-1-3|FS-1-2|TLS-1-2)", var.ssl_policy))
    error_message = "Use a policy that requires TLS 1.2 or newer (ELBSecurityPolicy-TLS13-1-2-*, -TLS13-1-3-*, -FS-1-2-* or -TLS-1-2-*)."
  }
}

variable "idle_timeout_seconds" {
  description = "ALB idle timeout. A WebSocket that carries no frame for this long is closed by the ALB, so it must exceed twice the gateway's STOMP heart-beat interval."
  type        = number
  default     = 60

  validation {
    condition     = var.idle_timeout_seconds >= 1 && var.idle_timeout_seconds <= 4000
    error_message = "The ALB idle timeout must be between 1 and 4000 seconds."
  }

  validation {
    condition     = var.idle_timeout_seconds * 1000 > 2 * var.gateway_heartbeat_ms
    error_message = "The ALB idle timeout must be greater than 2 x the gateway heart-beat interval, or idle-but-healthy WebSockets are cut."
  }
}

variable "gateway_heartbeat_ms" {
  description = "The gateway's STOMP heart-beat interval in milliseconds (its --heartbeat-send-ms/--heartbeat-recv-ms), used to check idle_timeout_seconds."
  type        = number

  validation {
    condition     = var.gateway_heartbeat_ms > 0
    error_message = "The heart-beat interval must be positive (heart-beats keep WebSockets alive through the ALB)."
  }
}

variable "gateway_port" {
  description = "Port the gateway serves HTTP/WebSocket on (its --listen port)."
  type        = number
  default     = 8080

  validation {
    condition     = var.gateway_port >= 1024 && var.gateway_port <= 65535
    error_message = "The gateway port must be an unprivileged port (1024-65535)."
  }
}

variable "api_port" {
  description = "Port the api service listens on."
  type        = number
  default     = 8081

  validation {
    condition     = var.api_port >= 1024 && var.api_port <= 65535
    error_message = "The api port must be an unprivileged port (1024-65535)."
  }
}

variable "gateway_health_check_path" {
  description = "Readiness path of the gateway; it answers 503 while draining so the ALB stops routing new connections to it."
  type        = string
  default     = "/readyz"

  validation {
    condition     = startswith(var.gateway_health_check_path, "/")
    error_message = "The health check path must start with \"/\"."
  }
}

variable "api_health_check_path" {
  description = "Readiness path of the api service."
  type        = string
  default     = "/readyz"

  validation {
    condition     = startswith(var.api_health_check_path, "/")
    error_message = "The health check path must start with \"/\"."
  }
}

variable "health_check_interval_seconds" {
  description = "Seconds between ALB health checks of one target."
  type        = number
  default     = 5

  validation {
    condition     = var.health_check_interval_seconds >= 5 && var.health_check_interval_seconds <= 300
    error_message = "The health check interval must be between 5 and 300 seconds."
  }
}

variable "health_check_unhealthy_threshold" {
  description = "Failed health checks before a target is unhealthy. interval x threshold must be shorter than the gateway's drain delay, so the ALB notices /readyz failing before the gateway starts closing connections."
  type        = number
  default     = 2

  validation {
    condition     = var.health_check_unhealthy_threshold >= 2 && var.health_check_unhealthy_threshold <= 10
    error_message = "The unhealthy threshold must be between 2 and 10."
  }

  validation {
    condition     = var.health_check_unhealthy_threshold * var.health_check_interval_seconds < var.gateway_drain_delay_seconds
    error_message = "health_check_interval_seconds x health_check_unhealthy_threshold must be shorter than gateway_drain_delay_seconds."
  }
}

variable "gateway_drain_delay_seconds" {
  description = "The gateway's --drain-delay-ms in seconds: how long it keeps serving with /readyz failing after SIGTERM."
  type        = number

  validation {
    condition     = var.gateway_drain_delay_seconds >= 0
    error_message = "The drain delay cannot be negative."
  }
}

variable "gateway_drain_window_seconds" {
  description = "The gateway's --drain-window-ms in seconds: the window over which it closes its connections after the drain delay."
  type        = number

  validation {
    condition     = var.gateway_drain_window_seconds >= 0
    error_message = "The drain window cannot be negative."
  }
}

variable "gateway_deregistration_delay_seconds" {
  description = "Deregistration delay of the gateway target group: how long the ALB keeps a deregistering target's WebSockets open. Must cover the gateway's drain delay + drain window."
  type        = number
  default     = 60

  validation {
    condition     = var.gateway_deregistration_delay_seconds >= 0 && var.gateway_deregistration_delay_seconds <= 3600
    error_message = "The deregistration delay must be between 0 and 3600 seconds."
  }

  validation {
    condition     = var.gateway_deregistration_delay_seconds >= var.gateway_drain_delay_seconds + var.gateway_drain_window_seconds
    error_message = "The gateway deregistration delay must be at least the gateway's drain delay + drain window, or the ALB cuts connections the gateway is still draining."
  }
}

variable "api_deregistration_delay_seconds" {
  description = "Deregistration delay of the api target group (in-flight REST requests)."
  type        = number
  default     = 30

  validation {
    condition     = var.api_deregistration_delay_seconds >= 0 && var.api_deregistration_delay_seconds <= 3600
    error_message = "The deregistration delay must be between 0 and 3600 seconds."
  }
}

variable "gateway_affinity_cookie" {
  description = "Name of the cookie the gateway sets on the WebSocket upgrade response; the ALB uses it for application-cookie stickiness so a reconnecting client returns to the same node."
  type        = string
  default     = "GW_AFFINITY"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.gateway_affinity_cookie)) && !startswith(upper(var.gateway_affinity_cookie), "AWSALB")
    error_message = "The cookie name must be 1-64 letters, digits, '_' or '-', and must not start with AWSALB (reserved by the ALB)."
  }
}

variable "gateway_affinity_duration_seconds" {
  description = "How long the ALB honours the affinity cookie."
  type        = number
  default     = 86400

  validation {
    condition     = var.gateway_affinity_duration_seconds >= 1 && var.gateway_affinity_duration_seconds <= 604800
    error_message = "The stickiness duration must be between 1 second and 7 days."
  }
}

variable "logs_bucket" {
  description = "S3 bucket that receives the ALB access logs (prefix alb/)."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the ALB against deletion (turn off only to tear the environment down)."
  type        = bool
  default     = true
}

variable "waf_rate_limit" {
  description = "Requests (WebSocket upgrades and REST calls) one client IP may make in any 5-minute window before the WAF blocks it."
  type        = number
  default     = 2000

  validation {
    condition     = var.waf_rate_limit >= 100 && var.waf_rate_limit <= 2000000000
    error_message = "The WAF rate limit must be between 100 and 2,000,000,000 requests per 5 minutes."
  }
}

variable "waf_common_rules_to_count" {
  description = "Rules of AWSManagedRulesCommonRuleSet switched from block to count (STOMP clients without a User-Agent, large REST bodies)."
  type        = list(string)
  default     = ["NoUserAgent_HEADER", "SizeRestrictions_BODY"]
}

variable "waf_anonymous_ip_rules_to_count" {
  description = "Rules of AWSManagedRulesAnonymousIpList switched from block to count. HostingProviderIPList is counted by default because server-side STOMP publishers run in clouds; AnonymousIPList (Tor, anonymising proxies) keeps blocking."
  type        = list(string)
  default     = ["HostingProviderIPList"]

  validation {
    condition     = alltrue([for r in var.waf_anonymous_ip_rules_to_count : contains(["AnonymousIPList", "HostingProviderIPList"], r)])
    error_message = "The AnonymousIpList rule group has only the rules AnonymousIPList and HostingProviderIPList."
  }
}

variable "waf_log_retention_days" {
  description = "Retention of the WAF log group, in days (CloudWatch Logs allowed values)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.waf_log_retention_days)
    error_message = "The waf_log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
