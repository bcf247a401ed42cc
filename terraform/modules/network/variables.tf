variable "name" {
  description = "Name prefix for every resource of this module (e.g. \"stomp-prod\")."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "The name must be 3-24 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC. A /16 is carved into /24 public and data subnets and /20 application subnets."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 16
    error_message = "The vpc_cidr must be a valid IPv4 CIDR block of size /16 or larger."
  }
}

variable "availability_zone_ids" {
  description = "Zone IDs (account-independent, e.g. use1-az1) of the 2 or 3 availability zones to spread the subnets over. Pinned by ID so the VPC does not silently change shape when AWS adds a zone."
  type        = list(string)
  default     = ["use1-az1", "use1-az2", "use1-az4"]

  validation {
    condition     = length(var.availability_zone_ids) >= 2 && length(var.availability_zone_ids) <= 3 && length(distinct(var.availability_zone_ids)) == length(var.availability_zone_ids)
    error_message = "Give 2 or 3 distinct availability zone IDs."
  }

  validation {
    condition     = alltrue([for z in var.availability_zone_ids : can(regex("^[a-z]{2,4}[0-9]-az[0-9]+$", z))])
    error_message = "Availability zone IDs look like \"use1-az1\" (zone IDs, not zone names)."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all AZs (cheaper, but an AZ outage cuts egress for the others). False = one NAT gateway per AZ."
  type        = bool
  default     = false
}

variable "interface_endpoints" {
  description = "AWS services that get an interface VPC endpoint in the application subnets so their traffic bypasses the NAT gateways (each costs about 7.30 USD per AZ per month). S3 always gets a free gateway endpoint."
  type        = list(string)
  default     = ["logs", "monitoring", "ssm", "ssmmessages", "ec2messages"]

  validation {
    condition = alltrue([
      for s in var.interface_endpoints : contains(
        ["logs", "monitoring", "ssm", "ssmmessages", "ec2messages", "secretsmanager", "kms", "sts", "autoscaling", "ec2"],
        s
      )
    ])
    error_message = "Each interface endpoint must be one of: logs, monitoring, ssm, ssmmessages, ec2messages, secretsmanager, kms, sts, autoscaling, ec2."
  }
}

variable "flow_log_traffic_type" {
  description = "Which flows the VPC flow log records. REJECT keeps the security signal (blocked connection attempts) at a fraction of the cost: with ~1M long-lived WebSockets, ALL produces several records per connection every aggregation interval (terabytes of CloudWatch Logs a month)."
  type        = string
  default     = "REJECT"

  validation {
    condition     = contains(["ACCEPT", "REJECT", "ALL"], var.flow_log_traffic_type)
    error_message = "The flow_log_traffic_type must be ACCEPT, REJECT or ALL."
  }
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow log group, in days (CloudWatch Logs allowed values)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "The flow_log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
