# A customer-managed KMS key with rotation, administered by the account (IAM
# policies decide who may use it) plus narrowly conditioned grants to the AWS
# services that encrypt with it. One copy of the key policy for every module.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "this" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" means this key only, and kms:* is granted to the account root, which delegates to IAM policies (the AWS default key policy).
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only, and kms:* is granted to the account root, which delegates to IAM policies (the AWS default key policy).
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" means this key only; a key policy cannot name any other resource.
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = var.service_grants

    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = statement.value.services
      }

      dynamic "condition" {
        for_each = statement.value.condition == null ? [] : [statement.value.condition]

        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.this.json

  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
