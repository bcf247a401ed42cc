# Data stores in the private data subnets:
#   ElastiCache Redis (cluster mode disabled, primary + replicas across AZs,
#   automatic failover, TLS in transit, AUTH token kept in Secrets Manager)
#   RDS PostgreSQL (Multi-AZ, encrypted, PITR backups, TLS enforced, master
#   password generated and rotated by RDS in Secrets Manager)
# The security groups start empty; the compute module adds the only ingress
# rules (gateway/api -> Redis, api -> RDS).

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  region        = data.aws_region.current.name
  account_id    = data.aws_caller_identity.current.account_id
  redis_id      = "${var.name}-redis"
  db_identifier = "${var.name}-db"
  pg_family     = "postgres${var.db_engine_version}"
}

module "key" {
  source = "../kms_key"

  name        = "${var.name}-data"
  description = "${var.name} ElastiCache, RDS, their secrets and log groups"
  service_grants = [{
    sid      = "CloudWatchLogsUse"
    services = ["logs.${local.region}.amazonaws.com"]
    condition = {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:aws:logs:${local.region}:${local.account_id}:log-group:/aws/rds/instance/${local.db_identifier}/*",
        "arn:aws:logs:${local.region}:${local.account_id}:log-group:/aws/elasticache/${local.redis_id}/*",
      ]
    }
  }]

  tags = var.tags
}

# --- Redis -----------------------------------------------------------------------

resource "aws_security_group" "redis" {
  name_prefix = "${var.name}-redis-"
  description = "ElastiCache Redis: ingress only from the gateway and api security groups (rules in the compute module)"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-redis" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_elasticache_subnet_group" "this" {
  name        = "${var.name}-redis"
  description = "Data subnets of ${var.name}"
  subnet_ids  = var.data_subnet_ids

  tags = var.tags
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-redis7"
  family      = "redis7"
  description = "${var.name} Redis: larger pub/sub output buffers for the gateway fan-out, no eviction"

  # Never evict keys. Every other policy (the redis7 default is
  # volatile-lru) lets Redis drop keys when memory runs out; the durable
  # stream (GATEWAY_DURABLE_STREAM / API_STREAM) holds messages the api may
  # not have written to PostgreSQL yet, and evicting it would lose them
  # silently. The stream is bounded by its MAXLEN cap instead. Pub/sub
  # stores no keys, so the live fan-out has nothing to evict anyway; with
  # noeviction a full Redis refuses writes such as XADD with an error
  # (counted by the gateways as publish errors) instead of dropping data,
  # and the Redis memory alarm fires well before that.
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  parameter {
    name  = "client-output-buffer-limit-pubsub-hard-limit"
    value = tostring(var.redis_pubsub_buffer_hard_limit_mb * 1048576)
  }

  parameter {
    name  = "client-output-buffer-limit-pubsub-soft-limit"
    value = tostring(floor(var.redis_pubsub_buffer_hard_limit_mb / 4) * 1048576)
  }

  parameter {
    name  = "client-output-buffer-limit-pubsub-soft-seconds"
    value = "60"
  }

  tags = var.tags
}

resource "random_password" "redis_auth" {
  length  = 64
  special = false
}

resource "aws_cloudwatch_log_group" "redis_slow" {
  name              = "/aws/elasticache/${local.redis_id}/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn

  tags = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = local.redis_id
  description          = "${var.name} pub/sub bus and shared state"
  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = 6379
  num_cache_clusters   = 1 + var.redis_replicas
  parameter_group_name = aws_elasticache_parameter_group.this.name
  subnet_group_name    = aws_elasticache_subnet_group.this.name
  security_group_ids   = [aws_security_group.redis.id]

  automatic_failover_enabled = true
  multi_az_enabled           = true

  at_rest_encryption_enabled = true
  kms_key_id                 = module.key.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth.result
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.redis_snapshot_retention_days
  snapshot_window            = "03:00-04:00"
  maintenance_window         = "sun:05:00-sun:06:00"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.redis_slow.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = var.tags
}

resource "aws_secretsmanager_secret" "redis_auth" {
  #checkov:skip=CKV2_AWS_57:Rotating the ElastiCache AUTH token needs a custom rotation Lambda that runs ModifyReplicationGroup with the ROTATE strategy; rotate by tainting random_password.redis_auth and applying (documented in terraform/README.md).
  name_prefix             = "${var.name}/redis-auth-"
  description             = "AUTH token and rediss:// URL of ${local.redis_id}"
  kms_key_id              = module.key.arn
  recovery_window_in_days = 7

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "redis_auth" {
  secret_id = aws_secretsmanager_secret.redis_auth.id
  secret_string = jsonencode({
    auth_token = random_password.redis_auth.result
    host       = aws_elasticache_replication_group.this.primary_endpoint_address
    port       = aws_elasticache_replication_group.this.port
    url        = "rediss://:${random_password.redis_auth.result}@${aws_elasticache_replication_group.this.primary_endpoint_address}:${aws_elasticache_replication_group.this.port}"
  })
}

# --- gateway JWT key --------------------------------------------------------------

# HMAC key of the gateway's HS* tokens, shared with the token issuer. Only the
# container is terraform's: its value is put by hand (see terraform/README.md),
# so the key never appears in a plan or in the state. Gateway and api nodes
# (the api checks the same tokens) read it at every start
# (stomp-node-secrets); until it has a value they fail to start.
resource "aws_secretsmanager_secret" "gateway_jwt" {
  #checkov:skip=CKV2_AWS_57:The HMAC key is shared with the token issuer, which must switch at the same moment; rotate by hand (put-secret-value, then roll the gateway group), as documented in terraform/README.md.
  count = var.gateway_jwt_secret_enabled ? 1 : 0

  name_prefix             = "${var.name}/gateway-jwt-secret-"
  description             = "HMAC key (SecretString, as is) of the JWTs the ${var.name} gateways and api accept"
  kms_key_id              = module.key.arn
  recovery_window_in_days = 7

  tags = var.tags
}

# --- gateway resume key ----------------------------------------------------------

# HMAC key that signs the gateways' resume tokens (docs/resume.md). Every
# gateway node needs the same key, or a token resumes only on the node that
# issued it. Unlike the JWT key it is shared with nobody outside the fleet,
# so terraform generates it (like the Redis AUTH token; the value is in the
# state). Gateway nodes read it at every start (stomp-node-secrets ->
# /run/stomp-gateway/resume-key, GATEWAY_RESUME_KEY_FILE).
resource "random_password" "gateway_resume_key" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "gateway_resume_key" {
  #checkov:skip=CKV2_AWS_57:Rotating the key invalidates every outstanding resume token, so it is rotated on purpose, not on a schedule: replace random_password.gateway_resume_key and roll the gateway group (documented in terraform/README.md).
  name_prefix             = "${var.name}/gateway-resume-key-"
  description             = "HMAC key (SecretString, as is) that signs the ${var.name} gateways' resume tokens"
  kms_key_id              = module.key.arn
  recovery_window_in_days = 7

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "gateway_resume_key" {
  secret_id     = aws_secretsmanager_secret.gateway_resume_key.id
  secret_string = random_password.gateway_resume_key.result
}

# --- PostgreSQL ----------------------------------------------------------------

resource "aws_security_group" "db" {
  name_prefix = "${var.name}-db-"
  description = "RDS PostgreSQL: ingress only from the api security group (rule in the compute module)"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-db" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_subnet_group" "this" {
  name        = "${var.name}-db"
  description = "Data subnets of ${var.name}"
  subnet_ids  = var.data_subnet_ids

  tags = var.tags
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-${local.pg_family}-"
  family      = local.pg_family
  description = "${var.name} PostgreSQL: TLS only, statement logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  parameter {
    name         = "shared_preload_libraries"
    value        = "pg_stat_statements"
    apply_method = "pending-reboot"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "db" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${local.db_identifier}/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn

  tags = var.tags
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name_prefix        = "${var.name}-rds-mon-"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  identifier     = local.db_identifier
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class
  db_name        = var.db_name
  username       = var.db_username
  port           = 5432

  manage_master_user_password   = true
  master_user_secret_kms_key_id = module.key.arn

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = module.key.arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  allow_major_version_upgrade         = false
  apply_immediately                   = false

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "03:00-03:30"
  maintenance_window        = "sun:04:00-sun:05:00"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = !var.deletion_protection
  final_snapshot_identifier = "${local.db_identifier}-final"

  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = module.key.arn
  performance_insights_retention_period = 7

  tags = var.tags

  depends_on = [aws_cloudwatch_log_group.db, aws_iam_role_policy_attachment.rds_monitoring]
}
