output "redis_replication_group_id" {
  description = "ID of the Redis replication group."
  value       = aws_elasticache_replication_group.this.id
}

output "redis_member_clusters" {
  description = "Cache cluster IDs of the replication group's nodes (CacheClusterId dimension of their metrics). ElastiCache names them <group>-001, -002, ...; computed here so that they are known at plan time (alarms use them in for_each)."
  value       = [for i in range(1 + var.redis_replicas) : format("%s-%03d", local.redis_id, i + 1)]
}

output "redis_primary_endpoint" {
  description = "Primary endpoint of Redis (TLS, AUTH)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "redis_reader_endpoint" {
  description = "Reader endpoint of Redis (spreads reads over the replicas)."
  value       = aws_elasticache_replication_group.this.reader_endpoint_address
}

output "redis_port" {
  description = "Redis port."
  value       = aws_elasticache_replication_group.this.port
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret with the Redis AUTH token and rediss:// URL (JSON keys auth_token, host, port, url)."
  value       = aws_secretsmanager_secret.redis_auth.arn
}

output "gateway_jwt_secret_arn" {
  description = "Secrets Manager secret for the gateway's JWT HMAC key (value put by hand); empty when gateway_jwt_secret_enabled is false."
  value       = try(aws_secretsmanager_secret.gateway_jwt[0].arn, "")
}

output "gateway_resume_key_secret_arn" {
  description = "Secrets Manager secret with the HMAC key of the gateways' resume tokens (generated; SecretString = the key)."
  value       = aws_secretsmanager_secret.gateway_resume_key.arn
}

output "redis_security_group_id" {
  description = "Security group of Redis."
  value       = aws_security_group.redis.id
}

output "db_instance_id" {
  description = "Identifier of the RDS instance (DBInstanceIdentifier dimension of its metrics)."
  value       = aws_db_instance.this.identifier
}

output "db_address" {
  description = "Host name of the PostgreSQL primary."
  value       = aws_db_instance.this.address
}

output "db_port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.this.port
}

output "db_name" {
  description = "Name of the api database."
  value       = aws_db_instance.this.db_name
}

output "db_master_secret_arn" {
  description = "Secrets Manager secret (managed and rotated by RDS) with the master user name and password."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "db_allocated_storage_gb" {
  description = "Allocated storage of the database, in GiB (for the free-storage alarm)."
  value       = var.db_allocated_storage_gb
}

output "db_security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}

output "kms_key_arn" {
  description = "KMS key of the data stores and their secrets (readers of the secrets need kms:Decrypt on it)."
  value       = module.key.arn
}
