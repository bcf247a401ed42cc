variable "name" {
  description = "Name prefix for every resource of this module (e.g. \"stomp-prod\")."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "The name must be 3-24 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the data stores."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must look like \"vpc-0123abcd\"."
  }
}

variable "data_subnet_ids" {
  description = "Private data subnets (one per AZ, at least 2) for ElastiCache and RDS."
  type        = list(string)

  validation {
    condition     = length(var.data_subnet_ids) >= 2
    error_message = "Multi-AZ ElastiCache and RDS need subnets in at least 2 availability zones."
  }
}

# --- ElastiCache Redis ---------------------------------------------------------

variable "redis_node_type" {
  description = "ElastiCache node type. Pub/sub fan-out between gateways is mostly network and single-thread CPU bound; r7g/m7g large nodes are a good start."
  type        = string
  default     = "cache.r7g.large"

  validation {
    condition     = startswith(var.redis_node_type, "cache.")
    error_message = "The redis_node_type must be an ElastiCache node type (cache.*)."
  }
}

variable "redis_replicas" {
  description = "Read replicas of the primary (cluster mode disabled). At least 1 for Multi-AZ automatic failover."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 1 && var.redis_replicas <= 5
    error_message = "Multi-AZ needs 1 to 5 replicas."
  }
}

variable "redis_engine_version" {
  description = "Redis OSS engine version."
  type        = string
  default     = "7.1"

  validation {
    condition     = can(regex("^7\\.[0-9]+$", var.redis_engine_version))
    error_message = "Use a Redis 7.x version (the parameter group family is redis7)."
  }
}

variable "redis_snapshot_retention_days" {
  description = "Days automatic Redis snapshots are kept (0 disables them)."
  type        = number
  default     = 7

  validation {
    condition     = var.redis_snapshot_retention_days >= 1 && var.redis_snapshot_retention_days <= 35
    error_message = "Keep Redis snapshots 1 to 35 days."
  }
}

variable "redis_pubsub_buffer_hard_limit_mb" {
  description = "client-output-buffer-limit for pub/sub clients (hard limit, MiB). Gateways are pub/sub subscribers; a burst to a slow gateway beyond this disconnects it."
  type        = number
  default     = 256

  validation {
    condition     = var.redis_pubsub_buffer_hard_limit_mb >= 32 && var.redis_pubsub_buffer_hard_limit_mb <= 4096
    error_message = "The pub/sub buffer hard limit must be between 32 and 4096 MiB."
  }
}

# --- RDS PostgreSQL --------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class of the api database."
  type        = string
  default     = "db.m7g.large"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "The db_instance_class must be an RDS instance class (db.*)."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version (minor versions are upgraded automatically in the maintenance window)."
  type        = string
  default     = "16"

  validation {
    condition     = contains(["15", "16", "17"], var.db_engine_version)
    error_message = "The db_engine_version must be 15, 16 or 17."
  }
}

variable "db_allocated_storage_gb" {
  description = "Initial gp3 storage of the database, in GiB."
  type        = number
  default     = 100

  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 65536
    error_message = "The allocated storage must be between 20 and 65536 GiB."
  }
}

variable "db_max_allocated_storage_gb" {
  description = "Upper bound of storage autoscaling, in GiB (must be above db_allocated_storage_gb)."
  type        = number
  default     = 500

  validation {
    condition     = var.db_max_allocated_storage_gb > var.db_allocated_storage_gb
    error_message = "The db_max_allocated_storage_gb must be greater than db_allocated_storage_gb."
  }
}

variable "db_backup_retention_days" {
  description = "Days automated RDS backups (point-in-time recovery) are kept."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 7 && var.db_backup_retention_days <= 35
    error_message = "Keep RDS backups 7 to 35 days."
  }
}

variable "db_name" {
  description = "Name of the api database."
  type        = string
  default     = "stomp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name))
    error_message = "The db_name must start with a letter and contain only lower-case letters, digits and underscores."
  }
}

variable "db_username" {
  description = "Master user name of the database; its password is generated and kept in Secrets Manager by RDS."
  type        = string
  default     = "stomp_admin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,15}$", var.db_username)) && !contains(["admin", "postgres", "rdsadmin"], var.db_username)
    error_message = "The db_username must be 1-16 lower-case letters, digits or underscores, start with a letter, and not be a reserved name."
  }
}

variable "deletion_protection" {
  description = "Protect the database against deletion and take a final snapshot on destroy."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the RDS and ElastiCache log groups, in days (CloudWatch Logs allowed values)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be a value CloudWatch Logs accepts."
  }
}

# --- gateway JWT key ------------------------------------------------------------

variable "gateway_jwt_secret_enabled" {
  description = "Create the Secrets Manager secret for the HMAC key of the gateway's HS256/384/512 JWTs (encrypted with this module's key). Terraform creates it empty and never holds the value, so the key stays out of the state: put it with `aws secretsmanager put-secret-value`."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
