variable "name" {
  description = "Name prefix for every resource of this module (e.g. \"stomp-prod\")."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "The name must be 3-24 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "alarm_emails" {
  description = "E-mail addresses subscribed to the alarm topic (each must confirm the subscription)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "Every alarm_emails entry must be an e-mail address."
  }
}

variable "log_retention_days" {
  description = "Retention of the application log groups, in days (CloudWatch Logs allowed values)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the ALB (LoadBalancer dimension)."
  type        = string
}

variable "gateway_target_group_arn_suffix" {
  description = "ARN suffix of the gateway target group (TargetGroup dimension)."
  type        = string
}

variable "api_target_group_arn_suffix" {
  description = "ARN suffix of the api target group (TargetGroup dimension)."
  type        = string
}

variable "redis_member_clusters" {
  description = "Cache cluster IDs of the Redis nodes (CacheClusterId dimension); one CPU and one memory alarm each."
  type        = list(string)
}

variable "db_instance_id" {
  description = "Identifier of the RDS instance (DBInstanceIdentifier dimension)."
  type        = string
}

variable "db_allocated_storage_gb" {
  description = "Allocated storage of the database in GiB; the free-storage alarm fires below db_free_storage_percent of it."
  type        = number
}

variable "alb_5xx_rate_percent" {
  description = "Alarm when 5xx responses (ALB- and target-generated) exceed this percentage of requests for 3 of 5 minutes."
  type        = number
  default     = 1

  validation {
    condition     = var.alb_5xx_rate_percent > 0 && var.alb_5xx_rate_percent <= 100
    error_message = "The 5xx rate threshold must be a percentage above 0."
  }
}

variable "api_p99_response_seconds" {
  description = "Alarm when the api target group's p99 TargetResponseTime exceeds this many seconds for 3 of 5 minutes. (WebSocket upgrades are not timed: a WebSocket's response time is its lifetime.)"
  type        = number
  default     = 1

  validation {
    condition     = var.api_p99_response_seconds > 0
    error_message = "The response time threshold must be positive."
  }
}

variable "redis_cpu_percent" {
  description = "Alarm when a Redis node's EngineCPUUtilization (the single Redis thread) exceeds this percentage."
  type        = number
  default     = 70

  validation {
    condition     = var.redis_cpu_percent > 0 && var.redis_cpu_percent <= 100
    error_message = "The Redis CPU threshold must be a percentage."
  }
}

variable "redis_memory_percent" {
  description = "Alarm when a Redis node's DatabaseMemoryUsagePercentage exceeds this percentage."
  type        = number
  default     = 80

  validation {
    condition     = var.redis_memory_percent > 0 && var.redis_memory_percent <= 100
    error_message = "The Redis memory threshold must be a percentage."
  }
}

variable "db_cpu_percent" {
  description = "Alarm when the database's CPUUtilization exceeds this percentage."
  type        = number
  default     = 80

  validation {
    condition     = var.db_cpu_percent > 0 && var.db_cpu_percent <= 100
    error_message = "The database CPU threshold must be a percentage."
  }
}

variable "db_free_storage_percent" {
  description = "Alarm when the database's free storage drops below this percentage of its allocated storage."
  type        = number
  default     = 15

  validation {
    condition     = var.db_free_storage_percent > 0 && var.db_free_storage_percent < 100
    error_message = "The free storage threshold must be a percentage between 0 and 100."
  }
}

variable "db_max_connections" {
  description = "Alarm when the database has more connections than this (db.m7g.large allows about 900 by default)."
  type        = number
  default     = 600

  validation {
    condition     = var.db_max_connections > 0
    error_message = "The connection threshold must be positive."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
