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

# --- durable messages: gateway -> Redis Stream -> api -> PostgreSQL ---------------------
# Given once here and written to BOTH services' instance.env (module compute),
# so the gateways append exactly what the api consumes and serves history for:
#   durable_destinations   GATEWAY_DURABLE        == API_DURABLE
#   durable_stream         GATEWAY_DURABLE_STREAM == API_STREAM
#   durable_stream_max_len GATEWAY_DURABLE_MAX_LEN == API_STREAM_MAX_LEN
# Literal defaults: scripts/check-infra compares them with ansible/group_vars/all.yml.

variable "durable_destinations" {
  description = "Durable destination patterns (GATEWAY_DURABLE on the gateways, API_DURABLE on the api; SUBSCRIBE syntax, e.g. \"/topic/chat.#\"). Their messages are also appended to the durable stream, which the api persists to PostgreSQL; the api serves history for these only. Empty: nothing is durable."
  type        = list(string)
  default     = ["/topic/chat.#"]

  validation {
    condition     = alltrue([for d in var.durable_destinations : can(regex("^/topic/[A-Za-z0-9_./*#-]+$", d))])
    error_message = "Durable destinations are /topic/... destinations or patterns of letters, digits and _ . / - * # (no commas or spaces)."
  }
}

variable "durable_stream" {
  description = "Redis Stream the gateways append durable messages to and the api reads (GATEWAY_DURABLE_STREAM == API_STREAM)."
  type        = string
  default     = "stomp:durable"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.:-]{1,128}$", var.durable_stream))
    error_message = "The stream key must be 1-128 letters, digits or _ . : -."
  }
}

variable "durable_stream_max_len" {
  description = "Approximate MAXLEN cap of the durable stream, in entries (GATEWAY_DURABLE_MAX_LEN == API_STREAM_MAX_LEN). Entries beyond it are trimmed even when the api has not read them yet: size it for the longest api outage to survive (1,000,000 entries of ~1 KiB is ~1 GiB of Redis memory)."
  type        = number
  default     = 1000000

  validation {
    condition     = var.durable_stream_max_len >= 1000 && floor(var.durable_stream_max_len) == var.durable_stream_max_len
    error_message = "The stream cap must be a whole number of at least 1000 entries."
  }
}

# --- resume: reconnect without losing messages -----------------------------------------
# A literal default: scripts/check-infra compares it with
# ansible/group_vars/gateway.yml gateway_resume_window_ms.

variable "gateway_resume_window_ms" {
  description = "Gateway --resume-window-ms (GATEWAY_RESUME_WINDOW_MS): how long after a connection ends without DISCONNECT (network loss, drain) its client can reconnect and get its subscriptions and missed messages back (docs/resume.md). Every node gets the same value and the same signing key (module data's generated secret). 0 turns resume off."
  type        = number
  default     = 120000

  validation {
    condition     = var.gateway_resume_window_ms >= 0 && floor(var.gateway_resume_window_ms) == var.gateway_resume_window_ms
    error_message = "The resume window must be a whole, non-negative number of milliseconds (0 = off)."
  }
}

# --- history destinations: resume-from after a node crash -------------------------------
# Given once here and written to BOTH services' instance.env (module compute),
# so that the api's own publishes to a history destination land in its
# stream too (the same publish script as the gateways'):
#   gateway_history        GATEWAY_HISTORY        == API_HISTORY
#   gateway_history_len    GATEWAY_HISTORY_LEN    == API_HISTORY_LEN
#   gateway_history_ttl_ms GATEWAY_HISTORY_TTL_MS == API_HISTORY_TTL_MS
# Literal defaults (the gateway's own): scripts/check-infra compares them
# with ansible/group_vars/all.yml stomp_history_*. Each history destination
# costs ElastiCache memory of about gateway_history_len x message size.

variable "gateway_history" {
  description = "Gateway --history (GATEWAY_HISTORY on the gateways, API_HISTORY on the api): destination patterns (SUBSCRIBE syntax, e.g. \"/topic/chat.*\") whose recent messages Redis keeps, one stream per destination, so any node can replay what a client missed (SUBSCRIBE resume-from, docs/resume.md), after a crash of its node too. The api's own publishes go into the same streams; it does not persist them. Needs Redis without GATEWAY_REDIS_SHARDED. Every node gets the same list. Empty: no history (neither variable is written)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.gateway_history : can(regex("^/topic/[A-Za-z0-9_./*#-]+$", d))])
    error_message = "History destinations are /topic/... destinations or patterns of letters, digits and _ . / - * # (no commas or spaces)."
  }
}

variable "gateway_history_len" {
  description = "Gateway --history-len (GATEWAY_HISTORY_LEN == API_HISTORY_LEN): approximate cap of each history destination's stream, in entries. ElastiCache memory: about this x message size per history destination (1000 entries of ~1 KiB is ~1 MiB per destination)."
  type        = number
  default     = 1000

  validation {
    condition     = var.gateway_history_len >= 1 && floor(var.gateway_history_len) == var.gateway_history_len
    error_message = "The history length must be a whole number of at least 1."
  }
}

variable "gateway_history_ttl_ms" {
  description = "Gateway --history-ttl-ms (GATEWAY_HISTORY_TTL_MS == API_HISTORY_TTL_MS): age past which history messages are trimmed, and silence after which a destination's history is deleted. At most one day."
  type        = number
  default     = 3600000

  validation {
    condition     = var.gateway_history_ttl_ms >= 1 && var.gateway_history_ttl_ms <= 86400000 && floor(var.gateway_history_ttl_ms) == var.gateway_history_ttl_ms
    error_message = "The history TTL must be a whole number of milliseconds between 1 and 86400000 (one day)."
  }
}

# --- rebalancing after scale-out -------------------------------------------------------
# Literal defaults (the gateway's own): scripts/check-infra compares them
# with ansible/group_vars/gateway.yml. docs/operations.md, "Rebalancing after
# scale-out", explains how to choose them.

variable "gateway_rebalance" {
  description = "Gateway --rebalance (GATEWAY_REBALANCE): a node holding more than its fair share of the fleet's connections plus the margin (after a scale-out: stickiness keeps clients on the old nodes) sheds a few resumable connections per interval, with a resume token, and answers each shed client's next upgrade 503 with its GW_AFFINITY cookie cleared, so that the ALB places the retry on any node. false: never shed (the fleet view, /fleet and the gateway_fleet_* metrics stay)."
  type        = bool
  default     = true
}

variable "gateway_rebalance_margin" {
  description = "Gateway --rebalance-margin (GATEWAY_REBALANCE_MARGIN): a node starts shedding when it holds more than its fair share by more than this fraction of it (at least 100 connections, --rebalance-min-margin). Adding k nodes to N triggers shedding when k/N exceeds it: with 0.1, one node added to up to 9."
  type        = number
  default     = 0.1

  validation {
    condition     = var.gateway_rebalance_margin >= 0 && var.gateway_rebalance_margin <= 1
    error_message = "The rebalance margin is a fraction of the fair share between 0 and 1."
  }
}

variable "gateway_rebalance_rate" {
  description = "Gateway --rebalance-rate (GATEWAY_REBALANCE_RATE): fraction of a shedding node's connections closed per interval (at least one). 0.01 every 10 s is about 6 % a minute; each shed client reconnects and resumes on some node, so the rate is the reconnect load rebalancing adds."
  type        = number
  default     = 0.01

  validation {
    condition     = var.gateway_rebalance_rate > 0 && var.gateway_rebalance_rate <= 0.1
    error_message = "The rebalance rate must be above 0 and at most 0.1 (10 % of a node's connections per interval is a reconnect storm)."
  }
}

variable "gateway_rebalance_interval_ms" {
  description = "Gateway --rebalance-interval-ms (GATEWAY_REBALANCE_INTERVAL_MS): time between two shedding rounds of a node above its share. At least 2 x gateway_fleet_report_ms, so that each round sees the loads after the previous one."
  type        = number
  default     = 10000

  validation {
    condition     = var.gateway_rebalance_interval_ms >= 1000 && floor(var.gateway_rebalance_interval_ms) == var.gateway_rebalance_interval_ms
    error_message = "The rebalance interval must be a whole number of milliseconds, at least 1000."
  }

  validation {
    condition     = var.gateway_rebalance_interval_ms >= 2 * var.gateway_fleet_report_ms
    error_message = "gateway_rebalance_interval_ms must be at least 2 x gateway_fleet_report_ms."
  }
}

variable "gateway_fleet_report_ms" {
  description = "Gateway --fleet-report-ms (GATEWAY_FLEET_REPORT_MS): how often each node reports its load to the fleet view in Redis (one small script per node). A report expires after 3 x this; a node whose own last successful report is older than that holds shedding (held_stale)."
  type        = number
  default     = 5000

  validation {
    condition     = var.gateway_fleet_report_ms >= 1000 && floor(var.gateway_fleet_report_ms) == var.gateway_fleet_report_ms
    error_message = "The fleet report interval must be a whole number of milliseconds, at least 1000."
  }
}

# --- the gateway's security settings ----------------------------------------------------
# Literal defaults too: scripts/check-infra compares the limits and vpc_cidr
# with ansible/group_vars/gateway.yml. TLS terminates at the ALB (module edge),
# so the nodes get no GATEWAY_TLS_CERT / GATEWAY_TLS_KEY.

variable "gateway_max_connections_per_ip" {
  description = "Gateway --max-connections-per-ip: WebSockets one client address may hold on one node; upgrades beyond it get 429. Generous on purpose: behind carrier-grade NAT (mobile networks) or an office proxy thousands of legitimate users share one address, and the ALB spreads them over the nodes. It stops reconnect loops and bots, not crowds. Counts the real client address only because the ALB is a trusted proxy (vpc_cidr). 0 = off."
  type        = number
  default     = 200

  validation {
    condition     = var.gateway_max_connections_per_ip >= 0 && floor(var.gateway_max_connections_per_ip) == var.gateway_max_connections_per_ip
    error_message = "The per-IP connection limit must be a whole, non-negative number (0 = off)."
  }
}

variable "gateway_max_frame_rate" {
  description = "Gateway --max-frame-rate: frames per second one connection may send; beyond the burst the client gets ERROR and is closed (reason rate_limited). A chat client sends a few frames a second (messages, typing indicators, ACKs), so 100/s is ample and caps a runaway client at a tenth of the gateway's default."
  type        = number
  default     = 100

  validation {
    condition     = var.gateway_max_frame_rate >= 0 && floor(var.gateway_max_frame_rate) == var.gateway_max_frame_rate
    error_message = "The frame rate must be a whole, non-negative number (0 = off)."
  }
}

variable "gateway_frame_burst" {
  description = "Gateway --frame-burst: frames a connection may send at once above the rate. 200 covers a reconnect that sends CONNECT and resubscribes to all 128 subscriptions a connection may hold (--max-subscriptions) in one go."
  type        = number
  default     = 200

  validation {
    condition     = var.gateway_frame_burst >= 1 && floor(var.gateway_frame_burst) == var.gateway_frame_burst
    error_message = "The frame burst must be a whole number of at least 1."
  }
}

variable "gateway_max_connect_rate" {
  description = "Gateway --max-connect-rate (GATEWAY_MAX_CONNECT_RATE): new WebSocket connections one node accepts per second; upgrades beyond it get 503 with Retry-After: 1 (the client backs off and retries, the ALB may place it elsewhere), so a reconnect storm (a node died and all its clients reconnect to the others) cannot starve the connections a node already holds. One node on 2 vCPUs measured about 9,000 (RS256 JWT) to 12,000 (HS256 or no auth) connects/s including the SUBSCRIBE: 2,000/s keeps most of the CPU for the connections already held, and 50,000 clients spread over 5 surviving nodes are back in about 5 s. 0 = off."
  type        = number
  default     = 2000

  validation {
    condition     = var.gateway_max_connect_rate >= 0 && floor(var.gateway_max_connect_rate) == var.gateway_max_connect_rate
    error_message = "The connect rate must be a whole, non-negative number (0 = off)."
  }
}

variable "gateway_connect_burst" {
  description = "Gateway --connect-burst (GATEWAY_CONNECT_BURST): new connections a node accepts at once above the connect rate (bucket size). 0 = one second's worth of gateway_max_connect_rate."
  type        = number
  default     = 0

  validation {
    condition     = var.gateway_connect_burst >= 0 && floor(var.gateway_connect_burst) == var.gateway_connect_burst
    error_message = "The connect burst must be a whole, non-negative number (0 = one second's worth)."
  }
}

variable "gateway_extra_allowed_origins" {
  description = "Browser origins allowed to open WebSockets besides the chat front end, which always is (https://<frontend_domain_name>); together they are GATEWAY_ALLOWED_ORIGIN. Each is https://host[:port], no path."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.gateway_extra_allowed_origins : can(regex("^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", o))])
    error_message = "Extra origins must be https://host[:port] without a path or trailing slash (\"*\" is not allowed in production)."
  }
}

variable "gateway_jwt_public_keys" {
  description = "The token issuer's public key(s) for RS*/PS*/ES*/EdDSA JWTs: its JWKS document (JSON; keys are picked by kid, so the issuer's next key can be published before it signs with it) or one PEM public key. Public, not a secret; written to /etc/stomp-gateway/jwt-public-keys (GATEWAY_JWT_PUBLIC_KEY) on the gateways and /etc/stomp-api/jwt-public-keys (API_JWT_PUBLIC_KEY) on the api, which checks the same tokens. With this empty and gateway_jwt_secret_enabled false, authentication is off."
  type        = string
  default     = ""
}

variable "gateway_jwt_secret_enabled" {
  description = "Also accept HS256/384/512 JWTs signed with a shared HMAC key. Creates an empty Secrets Manager secret (module data) whose value you put yourself; the gateway and api nodes read it at every start into /run/stomp-gateway/jwt-secret (GATEWAY_JWT_SECRET_FILE) and /run/stomp-api/jwt-secret (API_JWT_SECRET_FILE). Terraform never sees the key. Prefer public keys: then no node holds anything that can mint tokens."
  type        = bool
  default     = false
}

variable "gateway_jwt_issuers" {
  description = "Accepted iss claims (GATEWAY_JWT_ISSUER and API_JWT_ISSUER), e.g. [\"https://auth.example.com/\"]. Required when JWTs are configured."
  type        = list(string)
  default     = []

  validation {
    condition     = (var.gateway_jwt_public_keys == "" && !var.gateway_jwt_secret_enabled) || length(var.gateway_jwt_issuers) > 0
    error_message = "With JWTs configured (gateway_jwt_public_keys or gateway_jwt_secret_enabled), set gateway_jwt_issuers."
  }
}

variable "gateway_jwt_audiences" {
  description = "Accepted aud claims (GATEWAY_JWT_AUDIENCE and API_JWT_AUDIENCE), e.g. [\"stomp-gateway\"]. Required when JWTs are configured: otherwise a token the issuer minted for another of its applications would be accepted."
  type        = list(string)
  default     = []

  validation {
    condition     = (var.gateway_jwt_public_keys == "" && !var.gateway_jwt_secret_enabled) || length(var.gateway_jwt_audiences) > 0
    error_message = "With JWTs configured (gateway_jwt_public_keys or gateway_jwt_secret_enabled), set gateway_jwt_audiences."
  }
}

variable "gateway_default_subscribe" {
  description = "Destination patterns a JWT without a stomp claim may SUBSCRIBE to (GATEWAY_DEFAULT_SUBSCRIBE; the api's API_DEFAULT_SUBSCRIBE: may read the history of; {sub} = the token's subject), e.g. [\"/topic/user.{sub}.#\"]. Empty: such tokens may connect but subscribe to nothing."
  type        = list(string)
  default     = []
}

variable "gateway_default_send" {
  description = "Destination patterns a JWT without a stomp claim may SEND to (GATEWAY_DEFAULT_SEND; the api's API_DEFAULT_SEND: may publish to through the api; {sub} = the token's subject). Empty: such tokens may send nothing."
  type        = list(string)
  default     = []
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

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC. The ALB lives in its public subnets, so it is also the gateway's trusted proxy (GATEWAY_TRUSTED_PROXY): X-Forwarded-For is believed from these addresses only. ansible/group_vars/gateway.yml gateway_trusted_proxies lists the same block."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 16
    error_message = "The vpc_cidr must be a valid IPv4 CIDR block of size /16 or larger."
  }
}

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
