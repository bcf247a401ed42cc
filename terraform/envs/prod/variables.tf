# Production settings. The gateway-facing numbers below are plain literal
# defaults on purpose: a test in the Rust workspace parses this file and
# checks them against the gateway's own defaults, and scripts/check-infra
# checks them against the ansible group_vars. The validation blocks encode
# the rules that tie the ALB to the gateway's timing.

# --- the gateway's contract with the load balancer ---------------------------------

variable "gateway_port" {
  description = "Port the gateway listens on (GATEWAY_LISTEN=0.0.0.0:<port>) and the ALB forwards /ws to."
  type        = number
  default     = 8080

  validation {
    condition     = var.gateway_port >= 1024 && var.gateway_port <= 65535 && floor(var.gateway_port) == var.gateway_port
    error_message = "The gateway port must be an unprivileged port (1024-65535)."
  }
}

variable "gateway_heartbeat_ms" {
  description = "STOMP heart-beat interval of the gateway in ms, both directions (--heartbeat-send-ms / --heartbeat-recv-ms)."
  type        = number
  default     = 10000

  validation {
    condition     = var.gateway_heartbeat_ms >= 1000
    error_message = "Heart-beats must be on (>= 1000 ms): they are what keeps an idle WebSocket open through the ALB."
  }
}

variable "gateway_drain_delay_seconds" {
  description = "Gateway --drain-delay-ms / 1000: after SIGTERM the gateway keeps serving while /readyz answers 503, so the ALB stops sending it new connections."
  type        = number
  default     = 15

  validation {
    condition     = var.gateway_drain_delay_seconds >= 0 && floor(var.gateway_drain_delay_seconds) == var.gateway_drain_delay_seconds
    error_message = "The drain delay must be a whole, non-negative number of seconds."
  }
}

variable "gateway_drain_window_seconds" {
  description = "Gateway --drain-window-ms / 1000: after the drain delay the gateway closes its connections spread evenly over this window, then exits 0."
  type        = number
  default     = 30

  validation {
    condition     = var.gateway_drain_window_seconds >= 0 && floor(var.gateway_drain_window_seconds) == var.gateway_drain_window_seconds
    error_message = "The drain window must be a whole, non-negative number of seconds."
  }
}

variable "alb_idle_timeout_seconds" {
  description = "ALB idle timeout. Must exceed 2 x the heart-beat interval, or the ALB closes quiet but healthy WebSockets."
  type        = number
  default     = 60

  validation {
    condition     = var.alb_idle_timeout_seconds * 1000 > 2 * var.gateway_heartbeat_ms
    error_message = "alb_idle_timeout_seconds must be greater than 2 x gateway_heartbeat_ms / 1000."
  }

  validation {
    condition     = var.alb_idle_timeout_seconds >= 1 && var.alb_idle_timeout_seconds <= 4000
    error_message = "The ALB accepts idle timeouts of 1-4000 seconds."
  }
}

variable "gateway_deregistration_delay_seconds" {
  description = "Deregistration delay of the gateway target group: how long the ALB keeps a draining node's WebSockets open. Must be at least the drain delay + drain window."
  type        = number
  default     = 60

  validation {
    condition     = var.gateway_deregistration_delay_seconds >= var.gateway_drain_delay_seconds + var.gateway_drain_window_seconds
    error_message = "gateway_deregistration_delay_seconds must be >= gateway_drain_delay_seconds + gateway_drain_window_seconds."
  }

  validation {
    condition     = var.gateway_deregistration_delay_seconds <= 3600
    error_message = "The ALB accepts deregistration delays of at most 3600 seconds."
  }
}

variable "gateway_health_check_path" {
  description = "ALB health check path of the gateway: its readiness endpoint, which fails while draining."
  type        = string
  default     = "/readyz"

  validation {
    condition     = var.gateway_health_check_path == "/readyz"
    error_message = "The gateway's readiness endpoint is /readyz (/healthz is liveness and stays 200 while draining)."
  }
}

variable "gateway_affinity_cookie" {
  description = "Name of the stickiness cookie the gateway sets on its WebSocket upgrade response; the ALB target group uses it for application-cookie stickiness."
  type        = string
  default     = "GW_AFFINITY"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.gateway_affinity_cookie)) && !startswith(upper(var.gateway_affinity_cookie), "AWSALB")
    error_message = "The cookie name must be 1-64 letters, digits, '_' or '-', and must not start with AWSALB."
  }
}

variable "gateway_health_check_interval_seconds" {
  description = "Seconds between ALB health checks of a gateway."
  type        = number
  default     = 5

  validation {
    condition     = var.gateway_health_check_interval_seconds >= 5 && var.gateway_health_check_interval_seconds <= 300
    error_message = "The ALB accepts health check intervals of 5-300 seconds."
  }
}

variable "gateway_health_check_unhealthy_threshold" {
  description = "Failed health checks before the ALB marks a gateway unhealthy. interval x threshold must be shorter than the drain delay, so the ALB has stopped routing to a draining gateway before it starts closing connections."
  type        = number
  default     = 2

  validation {
    condition     = var.gateway_health_check_unhealthy_threshold * var.gateway_health_check_interval_seconds < var.gateway_drain_delay_seconds
    error_message = "gateway_health_check_interval_seconds x gateway_health_check_unhealthy_threshold must be < gateway_drain_delay_seconds."
  }

  validation {
    condition     = var.gateway_health_check_unhealthy_threshold >= 2 && var.gateway_health_check_unhealthy_threshold <= 10
    error_message = "The ALB accepts unhealthy thresholds of 2-10."
  }
}

variable "gateway_lifecycle_hook_seconds" {
  description = "Heartbeat timeout of the Auto Scaling termination hook that holds a terminating gateway while it drains."
  type        = number
  default     = 90

  validation {
    condition     = var.gateway_lifecycle_hook_seconds >= var.gateway_drain_delay_seconds + var.gateway_drain_window_seconds + 15
    error_message = "gateway_lifecycle_hook_seconds must cover drain delay + drain window + 15 s."
  }
}

variable "gateway_max_connections" {
  description = "Gateway --max-connections: beyond this many WebSockets a node answers upgrades with 503 and fails /readyz (at_capacity). A safety cap above the scaling target, below the open-file limit."
  type        = number
  default     = 200000

  validation {
    condition     = var.gateway_max_connections > var.gateway_target_connections
    error_message = "gateway_max_connections must be above gateway_target_connections, or nodes hit the cap before the group scales out."
  }
}

variable "api_port" {
  description = "Port the api service listens on and the ALB forwards /v1/* to."
  type        = number
  default     = 8081

  validation {
    condition     = var.api_port >= 1024 && var.api_port <= 65535 && var.api_port != var.gateway_port
    error_message = "The api port must be an unprivileged port other than the gateway's."
  }
}

# --- environment ----------------------------------------------------------------------

variable "region" {
  description = "AWS region of the environment."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "The region must look like \"us-east-1\"."
  }
}

variable "name" {
  description = "Name prefix of every resource (ASGs are <name>-gateway and <name>-api)."
  type        = string
  default     = "stomp-prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "The name must be 3-24 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Tags on every resource (provider default_tags)."
  type        = map(string)
  default = {
    Project     = "stomp-gateway"
    Environment = "prod"
    ManagedBy   = "terraform"
  }
}

variable "domain_name" {
  description = "Host name of the ALB: wss://<domain_name>/ws and https://<domain_name>/v1/."
  type        = string
}

variable "frontend_domain_name" {
  description = "Host name of the demo/chat front end (CloudFront)."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 zone of both host names; null = validate the certificates and create the DNS records by hand."
  type        = string
  default     = null
}

variable "alarm_emails" {
  description = "E-mail addresses subscribed to the alarm topic."
  type        = list(string)
  default     = []
}

variable "release" {
  description = "Release to run: directory releases/<release>/ in the artifact bucket holding gateway, api and their .sha256 files. The deploy workflow sets it to the commit SHA."
  type        = string
}

variable "gateway_ami_id" {
  description = "AMI baked with ansible/site.yml for the gateway role."
  type        = string
}

variable "api_ami_id" {
  description = "AMI baked with ansible/site.yml for the api role."
  type        = string
}

# --- capacity ---------------------------------------------------------------------------

variable "availability_zone_ids" {
  description = "Zone IDs of the 2-3 AZs of the VPC."
  type        = list(string)
  default     = ["use1-az1", "use1-az2", "use1-az4"]
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per AZ (cheaper, less available)."
  type        = bool
  default     = false
}

variable "gateway_instance_type" {
  description = "Instance type of the gateway nodes."
  type        = string
  default     = "c7i.xlarge"
}

variable "gateway_min_size" {
  description = "Minimum gateway nodes."
  type        = number
  default     = 2
}

variable "gateway_max_size" {
  description = "Maximum gateway nodes."
  type        = number
  default     = 30
}

variable "gateway_target_connections" {
  description = "Target tracking goal: WebSocket connections per gateway node."
  type        = number
  default     = 50000
}

variable "api_instance_type" {
  description = "Instance type of the api nodes."
  type        = string
  default     = "m7i.large"
}

variable "api_min_size" {
  description = "Minimum api nodes. Set api_min_size = api_max_size = 0 until the workspace builds an api binary."
  type        = number
  default     = 2
}

variable "api_max_size" {
  description = "Maximum api nodes."
  type        = number
  default     = 8
}

variable "redis_node_type" {
  description = "ElastiCache node type (primary and replica)."
  type        = string
  default     = "cache.r7g.large"
}

variable "db_instance_class" {
  description = "RDS instance class (Multi-AZ)."
  type        = string
  default     = "db.m7g.large"
}

variable "waf_rate_limit" {
  description = "Requests per client IP per 5 minutes before the WAF blocks it."
  type        = number
  default     = 2000
}

# --- CI/CD (GitHub OIDC) -------------------------------------------------------------------

variable "github_repository" {
  description = "GitHub repository (owner/name) whose workflows may assume the plan and deploy roles."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "The github_repository must look like \"owner/name\"."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC identity provider (false when the account already has one)."
  type        = bool
  default     = true
}

variable "state_bucket" {
  description = "S3 bucket of the terraform state (the plan role may read it)."
  type        = string
}

variable "state_lock_table" {
  description = "DynamoDB table of the terraform state locks."
  type        = string
}
