# Production: one VPC, one ALB, gateway and api Auto Scaling groups,
# ElastiCache Redis, RDS PostgreSQL, the static front end, the container
# image repositories and the alarms.
#
#   network -> static -> edge -> data -> observability -> compute
#              static -> registry
#
# The gateway's timing (heart-beat, drain delay/window) is given once, in
# variables.tf, and flows both to the ALB (edge: idle timeout, deregistration
# delay, health check) and to the nodes (compute: GATEWAY_* in user data).
# Likewise the durable destinations and their Redis Stream flow to both the
# gateways (GATEWAY_DURABLE*) and the api (API_DURABLE, API_STREAM*), and the
# history destinations to both (GATEWAY_HISTORY*, API_HISTORY*).

module "network" {
  source = "../../modules/network"

  name                  = var.name
  vpc_cidr              = var.vpc_cidr
  availability_zone_ids = var.availability_zone_ids
  single_nat_gateway    = var.single_nat_gateway
}

module "static" {
  source = "../../modules/static"

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                 = var.name
  frontend_domain_name = var.frontend_domain_name
  route53_zone_id      = var.route53_zone_id
}

# ECR repositories of the container images (the Dockerfile's targets), which
# the deploy workflow pushes after each apply. Encrypted with the release
# artifacts' key, like the binaries the nodes run.
module "registry" {
  source = "../../modules/registry"

  name        = var.name
  kms_key_arn = module.static.kms_key_arn
}

module "edge" {
  source = "../../modules/edge"

  name              = var.name
  vpc_id            = module.network.vpc_id
  public_subnet_ids = module.network.public_subnet_ids
  domain_name       = var.domain_name
  route53_zone_id   = var.route53_zone_id
  logs_bucket       = module.static.logs_bucket

  idle_timeout_seconds                 = var.alb_idle_timeout_seconds
  gateway_heartbeat_ms                 = var.gateway_heartbeat_ms
  gateway_port                         = var.gateway_port
  api_port                             = var.api_port
  gateway_health_check_path            = var.gateway_health_check_path
  health_check_interval_seconds        = var.gateway_health_check_interval_seconds
  health_check_unhealthy_threshold     = var.gateway_health_check_unhealthy_threshold
  gateway_drain_delay_seconds          = var.gateway_drain_delay_seconds
  gateway_drain_window_seconds         = var.gateway_drain_window_seconds
  gateway_deregistration_delay_seconds = var.gateway_deregistration_delay_seconds
  gateway_affinity_cookie              = var.gateway_affinity_cookie
  waf_rate_limit                       = var.waf_rate_limit
}

module "data" {
  source = "../../modules/data"

  name              = var.name
  vpc_id            = module.network.vpc_id
  data_subnet_ids   = module.network.data_subnet_ids
  redis_node_type   = var.redis_node_type
  db_instance_class = var.db_instance_class

  gateway_jwt_secret_enabled = var.gateway_jwt_secret_enabled
}

module "observability" {
  source = "../../modules/observability"

  name                            = var.name
  alarm_emails                    = var.alarm_emails
  alb_arn_suffix                  = module.edge.alb_arn_suffix
  gateway_target_group_arn_suffix = module.edge.gateway_target_group_arn_suffix
  api_target_group_arn_suffix     = module.edge.api_target_group_arn_suffix
  redis_member_clusters           = module.data.redis_member_clusters
  db_instance_id                  = module.data.db_instance_id
  db_allocated_storage_gb         = module.data.db_allocated_storage_gb
}

module "compute" {
  source = "../../modules/compute"

  name           = var.name
  vpc_id         = module.network.vpc_id
  app_subnet_ids = module.network.app_subnet_ids

  alb_security_group_id    = module.edge.alb_security_group_id
  gateway_target_group_arn = module.edge.gateway_target_group_arn
  api_target_group_arn     = module.edge.api_target_group_arn

  redis_security_group_id = module.data.redis_security_group_id
  redis_port              = module.data.redis_port
  redis_auth_secret_arn   = module.data.redis_auth_secret_arn
  db_security_group_id    = module.data.db_security_group_id
  db_address              = module.data.db_address
  db_port                 = module.data.db_port
  db_name                 = module.data.db_name
  db_secret_arn           = module.data.db_master_secret_arn
  data_kms_key_arn        = module.data.kms_key_arn

  artifacts_bucket     = module.static.artifacts_bucket
  artifacts_bucket_arn = module.static.artifacts_bucket_arn
  media_bucket_arn     = module.static.media_bucket_arn
  static_kms_key_arn   = module.static.kms_key_arn

  log_group_names = module.observability.log_group_names
  log_group_arns  = module.observability.log_group_arns

  release        = var.release
  gateway_ami_id = var.gateway_ami_id
  api_ami_id     = var.api_ami_id

  gateway_instance_type          = var.gateway_instance_type
  gateway_port                   = var.gateway_port
  gateway_heartbeat_ms           = var.gateway_heartbeat_ms
  gateway_drain_delay_seconds    = var.gateway_drain_delay_seconds
  gateway_drain_window_seconds   = var.gateway_drain_window_seconds
  gateway_affinity_cookie        = var.gateway_affinity_cookie
  gateway_resume_window_ms       = var.gateway_resume_window_ms
  gateway_resume_key_secret_arn  = module.data.gateway_resume_key_secret_arn
  gateway_rebalance              = var.gateway_rebalance
  gateway_rebalance_margin       = var.gateway_rebalance_margin
  gateway_rebalance_rate         = var.gateway_rebalance_rate
  gateway_rebalance_interval_ms  = var.gateway_rebalance_interval_ms
  gateway_fleet_report_ms        = var.gateway_fleet_report_ms
  gateway_lifecycle_hook_seconds = var.gateway_lifecycle_hook_seconds
  gateway_min_size               = var.gateway_min_size
  gateway_max_size               = var.gateway_max_size
  gateway_target_connections     = var.gateway_target_connections
  gateway_max_connections        = var.gateway_max_connections

  # Security. The ALB, in the VPC's public subnets, is the only proxy whose
  # X-Forwarded-For is believed; browsers may connect from the chat front end
  # (and any extra origins). TLS terminates at the ALB: no GATEWAY_TLS_*.
  gateway_trusted_proxies        = [module.network.vpc_cidr]
  gateway_allowed_origins        = concat(["https://${var.frontend_domain_name}"], var.gateway_extra_allowed_origins)
  gateway_max_connections_per_ip = var.gateway_max_connections_per_ip
  gateway_max_frame_rate         = var.gateway_max_frame_rate
  gateway_frame_burst            = var.gateway_frame_burst
  gateway_max_connect_rate       = var.gateway_max_connect_rate
  gateway_connect_burst          = var.gateway_connect_burst
  gateway_jwt_public_keys        = var.gateway_jwt_public_keys
  gateway_jwt_secret_arn         = module.data.gateway_jwt_secret_arn
  gateway_jwt_issuers            = var.gateway_jwt_issuers
  gateway_jwt_audiences          = var.gateway_jwt_audiences
  gateway_default_subscribe      = var.gateway_default_subscribe
  gateway_default_send           = var.gateway_default_send

  api_instance_type = var.api_instance_type
  api_port          = var.api_port
  api_min_size      = var.api_min_size
  api_max_size      = var.api_max_size

  # Durable messages: the same patterns and stream go to the gateways
  # (GATEWAY_DURABLE*) and the api (API_DURABLE, API_STREAM*).
  durable_destinations   = var.durable_destinations
  durable_stream         = var.durable_stream
  durable_stream_max_len = var.durable_stream_max_len

  # History destinations: the same patterns, length and TTL go to the
  # gateways (GATEWAY_HISTORY*) and the api (API_HISTORY*), whose own
  # publishes go into the same streams.
  gateway_history        = var.gateway_history
  gateway_history_len    = var.gateway_history_len
  gateway_history_ttl_ms = var.gateway_history_ttl_ms
}
