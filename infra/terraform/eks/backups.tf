# S3 bucket for CloudNativePG backups (WAL archive and base backups, written
# by barman-cloud) and the IAM role the database pods assume through IRSA.
#
# CNPG runs each Cluster's pods under a ServiceAccount named after the
# Cluster, in var.databases_namespace. The role trusts every ServiceAccount
# of that namespace (pgplane alone creates Clusters there); each Cluster
# carries the annotation eks.amazonaws.com/role-arn = cnpg_backup_role_arn
# on its serviceAccountTemplate (docs/deploy.md).

locals {
  backup_bucket = var.backup_bucket_name != "" ? var.backup_bucket_name : "${var.cluster_name}-cnpg-backups-${local.account_id}"
}

resource "aws_kms_key" "backups" {
  description             = "${var.cluster_name}: CNPG backups in S3"
  deletion_window_in_days = 30
  enable_key_rotation     = true
}

resource "aws_kms_alias" "backups" {
  name          = "alias/${var.cluster_name}-cnpg-backups"
  target_key_id = aws_kms_key.backups.key_id
}

resource "aws_s3_bucket" "backups" {
  bucket = local.backup_bucket

  # Backups are the last copy of a deleted database: never destroyed with
  # the rest of the stack by accident.
  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_ownership_controls" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "backups" {
  bucket = aws_s3_bucket.backups.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "backups" {
  bucket = aws_s3_bucket.backups.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.backups.arn
    }
    bucket_key_enabled = true
  }
}

# CNPG's own retention policy (e.g. 30d) removes old backups; versioning
# keeps what it removed or overwrote for var.backup_noncurrent_days more.
resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    id     = "noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.backup_noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.backups]
}

data "aws_iam_policy_document" "backups_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.backups.arn,
      "${aws_s3_bucket.backups.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "backups" {
  bucket = aws_s3_bucket.backups.id
  policy = data.aws_iam_policy_document.backups_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.backups]
}

data "aws_iam_policy_document" "cnpg_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.databases_namespace}:*"]
    }
  }
}

resource "aws_iam_role" "cnpg_backup" {
  name               = "${var.cluster_name}-cnpg-backup"
  description        = "CloudNativePG clusters in ${var.databases_namespace}: write and read their backups"
  assume_role_policy = data.aws_iam_policy_document.cnpg_assume.json
}

data "aws_iam_policy_document" "cnpg_backup" {
  statement {
    sid       = "ListBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.backups.arn]
  }

  statement {
    sid       = "ReadWriteBackups"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.backups.arn}/*"]
  }

  statement {
    sid       = "UseBackupKey"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = [aws_kms_key.backups.arn]
  }
}

resource "aws_iam_role_policy" "cnpg_backup" {
  name   = "cnpg-backups"
  role   = aws_iam_role.cnpg_backup.id
  policy = data.aws_iam_policy_document.cnpg_backup.json
}
