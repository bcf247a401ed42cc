variable "name" {
  description = "Name prefix for every resource of this module (e.g. \"stomp-prod\"). The Auto Scaling groups are named <name>-gateway and <name>-api."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "The name must be 3-24 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the instances."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must look like \"vpc-0123abcd\"."
  }
}

variable "app_subnet_ids" {
  description = "Private application subnets (one per AZ) the Auto Scaling groups launch into."
  type        = list(string)

  validation {
    condition     = length(var.app_subnet_ids) >= 2
    error_message = "Spread the instances over at least 2 availability zones."
  }
}

# --- what the other modules made ---------------------------------------------------

variable "alb_security_group_id" {
  description = "Security group of the ALB: the only source admitted to the gateway and api ports."
  type        = string
}

variable "gateway_target_group_arn" {
  description = "Target group the gateway Auto Scaling group registers its instances in."
  type        = string
}

variable "api_target_group_arn" {
  description = "Target group the api Auto Scaling group registers its instances in."
  type        = string
}

variable "redis_security_group_id" {
  description = "Security group of ElastiCache; this module adds ingress from the gateway and api security groups."
  type        = string
}

variable "redis_port" {
  description = "Redis port."
  type        = number
  default     = 6379
}

variable "redis_auth_secret_arn" {
  description = "Secret with the Redis AUTH token and rediss:// URL (JSON key url); read by both services at start."
  type        = string
}

variable "db_security_group_id" {
  description = "Security group of RDS; this module adds ingress from the api security group only."
  type        = string
}

variable "db_address" {
  description = "Host name of the PostgreSQL primary."
  type        = string
}

variable "db_port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432
}

variable "db_name" {
  description = "Name of the api database."
  type        = string
}

variable "db_secret_arn" {
  description = "Secret (managed by RDS) with the database user name and password; read by the api at start."
  type        = string
}

variable "data_kms_key_arn" {
  description = "KMS key of the Redis and database secrets."
  type        = string
}

variable "artifacts_bucket" {
  description = "Bucket with the release binaries: releases/<release>/<binary> and <binary>.sha256."
  type        = string
}

variable "artifacts_bucket_arn" {
  description = "ARN of the artifacts bucket."
  type        = string
}

variable "media_bucket_arn" {
  description = "ARN of the media upload bucket (the api issues presigned URLs for it)."
  type        = string
}

variable "static_kms_key_arn" {
  description = "KMS key of the artifact and media buckets."
  type        = string
}

variable "log_group_names" {
  description = "Log groups the CloudWatch agent writes to, by purpose (gateway, api, gateway-metrics, system)."
  type        = map(string)

  validation {
    condition     = alltrue([for k in ["gateway", "api", "gateway-metrics", "system"] : contains(keys(var.log_group_names), k)])
    error_message = "The log_group_names map needs the keys gateway, api, gateway-metrics and system."
  }
}

variable "log_group_arns" {
  description = "ARNs of the log groups in log_group_names, same keys."
  type        = map(string)
}

# --- release -------------------------------------------------------------------------

variable "release" {
  description = "Release directory under releases/ in the artifacts bucket (the deploy workflow uses the git commit SHA). Changing it rolls both Auto Scaling groups through an instance refresh."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,64}$", var.release))
    error_message = "The release must be 1-64 characters of letters, digits, '.', '_' or '-'."
  }
}

variable "gateway_ami_id" {
  description = "AMI of the gateway nodes, baked with ansible/site.yml (gateway role)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.gateway_ami_id))
    error_message = "The gateway_ami_id must look like \"ami-0123456789abcdef0\"."
  }
}

variable "api_ami_id" {
  description = "AMI of the api nodes, baked with ansible/site.yml (api role)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.api_ami_id))
    error_message = "The api_ami_id must look like \"ami-0123456789abcdef0\"."
  }
}

variable "root_device_name" {
  description = "Root device name of the AMIs (/dev/xvda on Amazon Linux 2023 and Debian 12 AMIs)."
  type        = string
  default     = "/dev/xvda"
}

variable "root_volume_gb" {
  description = "Size of the encrypted gp3 root volume of every node, in GiB."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_gb >= 8 && var.root_volume_gb <= 1024
    error_message = "The root volume must be 8-1024 GiB."
  }
}

# --- gateway -----------------------------------------------------------------------------

variable "gateway_instance_type" {
  description = "Instance type of the gateway nodes."
  type        = string
  default     = "c7i.xlarge"
}

variable "gateway_port" {
  description = "Port the gateway listens on (GATEWAY_LISTEN=0.0.0.0:<port>)."
  type        = number
  default     = 8080

  validation {
    condition     = var.gateway_port >= 1024 && var.gateway_port <= 65535
    error_message = "The gateway port must be an unprivileged port (1024-65535)."
  }
}

variable "gateway_heartbeat_ms" {
  description = "STOMP heart-beat interval in ms, both directions (GATEWAY_HEARTBEAT_SEND_MS / GATEWAY_HEARTBEAT_RECV_MS)."
  type        = number
  default     = 10000

  validation {
    condition     = var.gateway_heartbeat_ms > 0
    error_message = "The heart-beat interval must be positive."
  }
}

variable "gateway_drain_delay_seconds" {
  description = "GATEWAY_DRAIN_DELAY_MS / 1000: how long the gateway keeps serving with /readyz failing after SIGTERM."
  type        = number
  default     = 15

  validation {
    condition     = var.gateway_drain_delay_seconds >= 0
    error_message = "The drain delay cannot be negative."
  }
}

variable "gateway_drain_window_seconds" {
  description = "GATEWAY_DRAIN_WINDOW_MS / 1000: the window over which the gateway closes its connections after the drain delay."
  type        = number
  default     = 30

  validation {
    condition     = var.gateway_drain_window_seconds >= 0
    error_message = "The drain window cannot be negative."
  }
}

variable "gateway_affinity_cookie" {
  description = "Name of the stickiness cookie the gateway sets on the upgrade response (GATEWAY_AFFINITY_COOKIE); the ALB target group uses the same name."
  type        = string
  default     = "GW_AFFINITY"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.gateway_affinity_cookie))
    error_message = "The cookie name must be 1-64 letters, digits, '_' or '-'."
  }
}

variable "gateway_resume_window_ms" {
  description = "GATEWAY_RESUME_WINDOW_MS: how long after a connection ends without DISCONNECT its session can still be resumed (subscriptions and missed messages restored; docs/resume.md). 0 turns resume off."
  type        = number
  default     = 120000

  validation {
    condition     = var.gateway_resume_window_ms >= 0 && floor(var.gateway_resume_window_ms) == var.gateway_resume_window_ms
    error_message = "The resume window must be a whole, non-negative number of milliseconds (0 = off)."
  }
}

variable "gateway_rebalance" {
  description = "GATEWAY_REBALANCE: shed connections while the node holds more than its fair share of the fleet's connections (docs/operations.md, Rebalancing after scale-out). false: never shed; the fleet view and its metrics stay."
  type        = bool
  default     = true
}

variable "gateway_rebalance_margin" {
  description = "GATEWAY_REBALANCE_MARGIN: start shedding above the fair share by more than this fraction of it (at least --rebalance-min-margin connections)."
  type        = number
  default     = 0.1

  validation {
    condition     = var.gateway_rebalance_margin >= 0
    error_message = "The rebalance margin cannot be negative."
  }
}

variable "gateway_rebalance_rate" {
  description = "GATEWAY_REBALANCE_RATE: fraction of a shedding node's connections closed per interval (at least one)."
  type        = number
  default     = 0.01

  validation {
    condition     = var.gateway_rebalance_rate > 0 && var.gateway_rebalance_rate <= 1
    error_message = "The rebalance rate must be above 0 and at most 1."
  }
}

variable "gateway_rebalance_interval_ms" {
  description = "GATEWAY_REBALANCE_INTERVAL_MS: time between two shedding rounds."
  type        = number
  default     = 10000

  validation {
    condition     = var.gateway_rebalance_interval_ms > 0 && floor(var.gateway_rebalance_interval_ms) == var.gateway_rebalance_interval_ms
    error_message = "The rebalance interval must be a whole, positive number of milliseconds."
  }
}

variable "gateway_fleet_report_ms" {
  description = "GATEWAY_FLEET_REPORT_MS: how often the node reports its load to the fleet view in Redis; a report expires after 3 x this."
  type        = number
  default     = 5000

  validation {
    condition     = var.gateway_fleet_report_ms > 0 && floor(var.gateway_fleet_report_ms) == var.gateway_fleet_report_ms
    error_message = "The fleet report interval must be a whole, positive number of milliseconds."
  }
}

variable "gateway_extra_env" {
  description = "More GATEWAY_* settings for the nodes (written to /etc/stomp-gateway/instance.env), e.g. { GATEWAY_MAX_FRAME_BYTES = \"131072\" }. GATEWAY_MAX_FRAME_BYTES, GATEWAY_DESTINATION_PREFIX and GATEWAY_REDIS_CHANNEL_PREFIX are passed on to the api too (API_MAX_BODY_BYTES, API_DESTINATION_PREFIX, API_CHANNEL_PREFIX). Durable and history destinations need Redis without GATEWAY_REDIS_SHARDED."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.gateway_extra_env : can(regex("^GATEWAY_[A-Z0-9_]+$", k)) && can(regex("^[A-Za-z0-9_./:,@+=-]*$", v))])
    error_message = "Keys must be GATEWAY_* names; values may contain only letters, digits and _ . / : , @ + = - (no quotes, spaces or $)."
  }

  validation {
    condition     = length(setintersection(keys(var.gateway_extra_env), ["GATEWAY_DURABLE", "GATEWAY_DURABLE_STREAM", "GATEWAY_DURABLE_MAX_LEN"])) == 0
    error_message = "Set durable destinations with durable_destinations, durable_stream and durable_stream_max_len (they configure the api too), not gateway_extra_env."
  }

  validation {
    condition     = length(setintersection(keys(var.gateway_extra_env), ["GATEWAY_HISTORY", "GATEWAY_HISTORY_LEN", "GATEWAY_HISTORY_TTL_MS"])) == 0
    error_message = "Set history destinations with gateway_history, gateway_history_len and gateway_history_ttl_ms (they configure the api too), not gateway_extra_env."
  }

  validation {
    condition     = length(setintersection(keys(var.gateway_extra_env), ["GATEWAY_RESUME_WINDOW_MS", "GATEWAY_RESUME_KEY", "GATEWAY_RESUME_KEY_FILE"])) == 0
    error_message = "Set the resume window with gateway_resume_window_ms; the resume key comes from Secrets Manager (gateway_resume_key_secret_arn), never from gateway_extra_env."
  }

  validation {
    condition     = length(setintersection(keys(var.gateway_extra_env), ["GATEWAY_REBALANCE", "GATEWAY_REBALANCE_MARGIN", "GATEWAY_REBALANCE_RATE", "GATEWAY_REBALANCE_INTERVAL_MS", "GATEWAY_FLEET_REPORT_MS"])) == 0
    error_message = "Set rebalancing with gateway_rebalance, gateway_rebalance_margin, gateway_rebalance_rate, gateway_rebalance_interval_ms and gateway_fleet_report_ms, not gateway_extra_env."
  }
}

variable "gateway_min_size" {
  description = "Minimum number of gateway nodes."
  type        = number
  default     = 2

  validation {
    condition     = var.gateway_min_size >= 1
    error_message = "Run at least one gateway node."
  }
}

variable "gateway_max_size" {
  description = "Maximum number of gateway nodes the scaling policies may reach."
  type        = number
  default     = 30

  validation {
    condition     = var.gateway_max_size >= var.gateway_min_size
    error_message = "The gateway_max_size must be at least gateway_min_size."
  }
}

variable "gateway_target_connections" {
  description = "Target tracking: average WebSocket connections per gateway node (StompGateway/GatewayConnections)."
  type        = number
  default     = 50000

  validation {
    condition     = var.gateway_target_connections >= 100
    error_message = "The connection target must be at least 100 per node."
  }
}

variable "gateway_target_cpu_percent" {
  description = "Target tracking: average CPU of the gateway nodes."
  type        = number
  default     = 60

  validation {
    condition     = var.gateway_target_cpu_percent >= 10 && var.gateway_target_cpu_percent <= 90
    error_message = "The CPU target must be between 10 and 90 percent."
  }
}

variable "gateway_max_connections" {
  description = "GATEWAY_MAX_CONNECTIONS: per-node connection cap (0 = none). Must be above gateway_target_connections so the group scales out before nodes refuse upgrades."
  type        = number
  default     = 200000

  validation {
    condition     = var.gateway_max_connections == 0 || var.gateway_max_connections > var.gateway_target_connections
    error_message = "gateway_max_connections must be 0 (no cap) or above gateway_target_connections."
  }
}

variable "gateway_lifecycle_hook_seconds" {
  description = "Heartbeat timeout of the termination lifecycle hook: how long a terminating gateway node may take to drain (SIGTERM, drain delay, drain window) before it is shut down."
  type        = number
  default     = 90

  validation {
    condition     = var.gateway_lifecycle_hook_seconds >= 30 && var.gateway_lifecycle_hook_seconds <= 7200
    error_message = "The lifecycle hook timeout must be between 30 and 7200 seconds."
  }

  validation {
    condition     = var.gateway_lifecycle_hook_seconds >= var.gateway_drain_delay_seconds + var.gateway_drain_window_seconds + 15
    error_message = "The lifecycle hook timeout must cover the gateway's drain delay + drain window with at least 15 s to spare."
  }
}

# --- gateway security ------------------------------------------------------------------
# Each setting is written to instance.env only when set (an empty list or
# string leaves the gateway's own default). TLS is not among them: it
# terminates at the ALB, so the nodes get no GATEWAY_TLS_CERT / _KEY (set them
# through gateway_extra_env for a deployment without a TLS-terminating load
# balancer).

variable "gateway_trusted_proxies" {
  description = "GATEWAY_TRUSTED_PROXY: IPs or CIDRs whose X-Forwarded-For the gateway believes when finding the client IP (for the per-IP limit and logs). The ALB's addresses: the VPC CIDR (the ALB lives in the VPC's public subnets)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.gateway_trusted_proxies : can(cidrhost(strcontains(c, "/") ? c : "${c}/32", 0)) && !endswith(c, "/0")])
    error_message = "Every trusted proxy must be an IPv4 address or CIDR block, and not a /0."
  }
}

variable "gateway_allowed_origins" {
  description = "GATEWAY_ALLOWED_ORIGIN: browser origins allowed to open WebSockets, e.g. [\"https://chat.example.com\"]. Empty = only pages served from the gateway's own host."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.gateway_allowed_origins : can(regex("^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", o))])
    error_message = "Allowed origins must be scheme://host[:port] without a path or trailing slash (and not \"*\")."
  }
}

variable "gateway_max_connections_per_ip" {
  description = "GATEWAY_MAX_CONNECTIONS_PER_IP: WebSockets one client IP may hold on one node (upgrades beyond get 429); 0 = no limit. Needs gateway_trusted_proxies, or every client behind the ALB shares the ALB's addresses."
  type        = number
  default     = 0

  validation {
    condition     = var.gateway_max_connections_per_ip >= 0 && floor(var.gateway_max_connections_per_ip) == var.gateway_max_connections_per_ip
    error_message = "The per-IP connection limit must be a whole, non-negative number (0 = off)."
  }

  validation {
    condition     = var.gateway_max_connections_per_ip == 0 || length(var.gateway_trusted_proxies) > 0
    error_message = "A per-IP limit behind the ALB needs gateway_trusted_proxies; without it all clients count as the ALB's few addresses."
  }
}

variable "gateway_max_frame_rate" {
  description = "GATEWAY_MAX_FRAME_RATE: frames per second one connection may send (token bucket); over it the client gets ERROR and is closed (reason rate_limited). 0 = no limit."
  type        = number
  default     = 1000

  validation {
    condition     = var.gateway_max_frame_rate >= 0 && floor(var.gateway_max_frame_rate) == var.gateway_max_frame_rate
    error_message = "The frame rate must be a whole, non-negative number (0 = off)."
  }
}

variable "gateway_frame_burst" {
  description = "GATEWAY_FRAME_BURST: frames a connection may send at once above the rate (bucket size)."
  type        = number
  default     = 2000

  validation {
    condition     = var.gateway_frame_burst >= 1 && floor(var.gateway_frame_burst) == var.gateway_frame_burst
    error_message = "The frame burst must be a whole number of at least 1."
  }
}

variable "gateway_max_connect_rate" {
  description = "GATEWAY_MAX_CONNECT_RATE: new WebSocket connections one node accepts per second; upgrades beyond it get 503 with Retry-After: 1, so a reconnect storm (a node of the fleet died and its clients reconnect to the others) cannot starve the connections a node already holds. 0 = no limit."
  type        = number
  default     = 0

  validation {
    condition     = var.gateway_max_connect_rate >= 0 && floor(var.gateway_max_connect_rate) == var.gateway_max_connect_rate
    error_message = "The connect rate must be a whole, non-negative number (0 = off)."
  }
}

variable "gateway_connect_burst" {
  description = "GATEWAY_CONNECT_BURST: new connections a node accepts at once above the connect rate (bucket size); 0 = one second's worth."
  type        = number
  default     = 0

  validation {
    condition     = var.gateway_connect_burst >= 0 && floor(var.gateway_connect_burst) == var.gateway_connect_burst
    error_message = "The connect burst must be a whole, non-negative number (0 = one second's worth)."
  }
}

variable "gateway_jwt_public_keys" {
  description = "Public key(s) of the token issuer, for RS*/PS*/ES*/EdDSA JWTs: a JWKS document (JSON) or one PEM public key. User data writes it to /etc/stomp-gateway/jwt-public-keys (GATEWAY_JWT_PUBLIC_KEY) and, on the api, /etc/stomp-api/jwt-public-keys (API_JWT_PUBLIC_KEY). Public, not a secret. Empty = none."
  type        = string
  default     = ""

  validation {
    condition     = var.gateway_jwt_public_keys == "" || can(jsondecode(var.gateway_jwt_public_keys).keys) || startswith(trimspace(var.gateway_jwt_public_keys), "-----BEGIN PUBLIC KEY-----")
    error_message = "gateway_jwt_public_keys must be a JWKS document ({\"keys\": [...]}) or a PEM public key (-----BEGIN PUBLIC KEY-----)."
  }
}

variable "gateway_jwt_secret_arn" {
  description = "Secrets Manager secret holding the HMAC key of HS256/384/512 JWTs (SecretString = the key, as is), encrypted with data_kms_key_arn. The gateway and api nodes may read it; stomp-node-secrets writes it at every start to /run/stomp-<role>/jwt-secret (root:stomp-<role> 0640, tmpfs) and sets GATEWAY_JWT_SECRET_FILE / API_JWT_SECRET_FILE. Empty = no HMAC tokens."
  type        = string
  default     = ""

  validation {
    condition     = var.gateway_jwt_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.gateway_jwt_secret_arn))
    error_message = "gateway_jwt_secret_arn must be empty or a Secrets Manager secret ARN."
  }
}

variable "gateway_resume_key_secret_arn" {
  description = "Secrets Manager secret holding the HMAC key that signs the gateways' resume tokens (SecretString = the key, as is), encrypted with data_kms_key_arn. Only gateway nodes may read it; stomp-node-secrets writes it at every start to /run/stomp-gateway/resume-key (root:stomp-gateway 0640, tmpfs) and sets GATEWAY_RESUME_KEY_FILE. Every gateway gets the same key, so any node honours a token another node issued."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:", var.gateway_resume_key_secret_arn))
    error_message = "gateway_resume_key_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "gateway_jwt_issuers" {
  description = "GATEWAY_JWT_ISSUER and API_JWT_ISSUER: accepted iss claims, e.g. [\"https://auth.example.com/\"]. Empty = not checked."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for v in var.gateway_jwt_issuers : can(regex("^[A-Za-z0-9_./:@+=-]+$", v))])
    error_message = "Issuers may contain only letters, digits and _ . / : @ + = - (no commas, quotes, spaces or $)."
  }
}

variable "gateway_jwt_audiences" {
  description = "GATEWAY_JWT_AUDIENCE and API_JWT_AUDIENCE: accepted aud claims, e.g. [\"stomp-gateway\"]. Empty = not checked."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for v in var.gateway_jwt_audiences : can(regex("^[A-Za-z0-9_./:@+=-]+$", v))])
    error_message = "Audiences may contain only letters, digits and _ . / : @ + = - (no commas, quotes, spaces or $)."
  }
}

variable "gateway_default_subscribe" {
  description = "GATEWAY_DEFAULT_SUBSCRIBE and API_DEFAULT_SUBSCRIBE (history reads): destination patterns a JWT without a stomp claim may SUBSCRIBE to ({sub} = the token's subject), e.g. [\"/topic/user.{sub}.#\"]. Empty = none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for v in var.gateway_default_subscribe : can(regex("^/[A-Za-z0-9_./*#{}-]+$", v))])
    error_message = "Destination patterns start with / and contain only letters, digits, _ . / - * # and {sub}."
  }
}

variable "gateway_default_send" {
  description = "GATEWAY_DEFAULT_SEND and API_DEFAULT_SEND (publishing through the api): destination patterns a JWT without a stomp claim may SEND to ({sub} = the token's subject). Empty = none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for v in var.gateway_default_send : can(regex("^/[A-Za-z0-9_./*#{}-]+$", v))])
    error_message = "Destination patterns start with / and contain only letters, digits, _ . / - * # and {sub}."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace the CloudWatch agent publishes the gateway's Prometheus metrics in."
  type        = string
  default     = "StompGateway"
}

variable "connections_metric_name" {
  description = "CloudWatch metric (from the gateway's Prometheus gauge gateway_connections) the gateway group scales on."
  type        = string
  default     = "GatewayConnections"
}

# --- api ---------------------------------------------------------------------------------------

variable "api_instance_type" {
  description = "Instance type of the api nodes."
  type        = string
  default     = "m7i.large"
}

variable "api_port" {
  description = "Port the api listens on."
  type        = number
  default     = 8081

  validation {
    condition     = var.api_port >= 1024 && var.api_port <= 65535
    error_message = "The api port must be an unprivileged port (1024-65535)."
  }
}

variable "api_min_size" {
  description = "Minimum number of api nodes (0 together with api_max_size = 0 while there is no api binary yet)."
  type        = number
  default     = 2

  validation {
    condition     = var.api_min_size >= 0
    error_message = "The api_min_size cannot be negative."
  }
}

variable "api_max_size" {
  description = "Maximum number of api nodes."
  type        = number
  default     = 8

  validation {
    condition     = var.api_max_size >= var.api_min_size
    error_message = "The api_max_size must be at least api_min_size."
  }
}

variable "api_target_cpu_percent" {
  description = "Target tracking: average CPU of the api nodes."
  type        = number
  default     = 50

  validation {
    condition     = var.api_target_cpu_percent >= 10 && var.api_target_cpu_percent <= 90
    error_message = "The CPU target must be between 10 and 90 percent."
  }
}

# --- durable messages ---------------------------------------------------------------------------
# One set of values for both services: the gateways append what the api reads.

variable "durable_destinations" {
  description = "Durable destination patterns: GATEWAY_DURABLE on the gateways (their messages are also appended to durable_stream) and API_DURABLE on the api (which persists them and serves their history). Empty = none (neither variable is written)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.durable_destinations : can(regex("^/[A-Za-z0-9_./*#-]+$", d))])
    error_message = "Durable destinations start with / and contain only letters, digits and _ . / - * # (no commas or spaces)."
  }

  validation {
    condition     = length(var.durable_destinations) == 0 || !contains(["true", "1", "yes", "on"], lower(lookup(var.gateway_extra_env, "GATEWAY_REDIS_SHARDED", "false")))
    error_message = "Durable destinations need Redis pub/sub without GATEWAY_REDIS_SHARDED (the gateway refuses --durable with --redis-sharded)."
  }
}

variable "durable_stream" {
  description = "Redis Stream of the durable messages: GATEWAY_DURABLE_STREAM on the gateways, API_STREAM on the api."
  type        = string
  default     = "stomp:durable"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.:-]{1,128}$", var.durable_stream))
    error_message = "The stream key must be 1-128 letters, digits or _ . : -."
  }
}

variable "durable_stream_max_len" {
  description = "Approximate MAXLEN cap of the durable stream in entries: GATEWAY_DURABLE_MAX_LEN on the gateways, API_STREAM_MAX_LEN on the api. Older entries are trimmed even when the api has not read them."
  type        = number
  default     = 1000000

  validation {
    condition     = var.durable_stream_max_len >= 1 && floor(var.durable_stream_max_len) == var.durable_stream_max_len
    error_message = "The stream cap must be a whole number of at least 1."
  }
}

# --- history destinations -----------------------------------------------------------------------
# Recent messages kept in Redis so that any node serves a SUBSCRIBE with
# resume-from, after a crash of the client's node too. The gateways and the
# api get the same values: the api's own publishes to a history destination
# go into its stream too.

variable "gateway_history" {
  description = "GATEWAY_HISTORY on the gateways and API_HISTORY on the api (whose own publishes go into the same streams): destination patterns whose recent messages Redis keeps (one stream per destination), e.g. [\"/topic/chat.*\"], so any node can replay what a client missed (SUBSCRIBE resume-from), after a node crash too. Every node gets the same list. Empty = none (neither variable is written)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.gateway_history : can(regex("^/[A-Za-z0-9_./*#-]+$", d))])
    error_message = "History destinations start with / and contain only letters, digits and _ . / - * # (no commas or spaces)."
  }

  validation {
    condition     = length(var.gateway_history) == 0 || !contains(["true", "1", "yes", "on"], lower(lookup(var.gateway_extra_env, "GATEWAY_REDIS_SHARDED", "false")))
    error_message = "History destinations need Redis pub/sub without GATEWAY_REDIS_SHARDED (the gateway refuses --history with --redis-sharded)."
  }
}

variable "gateway_history_len" {
  description = "GATEWAY_HISTORY_LEN and API_HISTORY_LEN: approximate cap of each history destination's stream, in entries."
  type        = number
  default     = 1000

  validation {
    condition     = var.gateway_history_len >= 1 && floor(var.gateway_history_len) == var.gateway_history_len
    error_message = "The history length must be a whole number of at least 1."
  }
}

variable "gateway_history_ttl_ms" {
  description = "GATEWAY_HISTORY_TTL_MS and API_HISTORY_TTL_MS: age past which history messages are trimmed, and silence after which a destination's history disappears; at most one day."
  type        = number
  default     = 3600000

  validation {
    condition     = var.gateway_history_ttl_ms >= 1 && var.gateway_history_ttl_ms <= 86400000 && floor(var.gateway_history_ttl_ms) == var.gateway_history_ttl_ms
    error_message = "The history TTL must be a whole number of milliseconds between 1 and 86400000 (one day)."
  }
}

# --- rollout ---------------------------------------------------------------------------------

variable "instance_warmup_seconds" {
  description = "Seconds a new node needs (boot, fetch the release, pass /readyz) before it counts for scaling and instance refresh."
  type        = number
  default     = 120

  validation {
    condition     = var.instance_warmup_seconds >= 30
    error_message = "The warm-up must be at least 30 seconds."
  }
}

variable "refresh_max_healthy_percentage" {
  description = "Instance refresh launches replacements before terminating (min healthy 100%); this caps the temporary extra capacity and so how many nodes (and their connections) are replaced at once."
  type        = number
  default     = 110

  validation {
    condition     = var.refresh_max_healthy_percentage > 100 && var.refresh_max_healthy_percentage <= 200
    error_message = "The refresh_max_healthy_percentage must be between 101 and 200."
  }
}

variable "monitoring_cidr_blocks" {
  description = "CIDR blocks of an in-VPC Prometheus that may scrape node_exporter (9100) and the services' /metrics. Empty = no scraping from outside the node (the CloudWatch agent scrapes locally)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.monitoring_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "Every monitoring CIDR must be a valid, non-world CIDR block."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module (and propagated to the instances)."
  type        = map(string)
  default     = {}
}
