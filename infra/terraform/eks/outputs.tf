output "region" {
  value = var.region
}

output "cluster_name" {
  value = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  value = aws_eks_cluster.this.endpoint
}

output "kubeconfig_command" {
  description = "Writes a kubeconfig context for the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${aws_eks_cluster.this.name}"
}

output "vpc_cidr" {
  description = "Allowed as the API server's address in manifests/overlays/production (NetworkPolicy)."
  value       = aws_vpc.this.cidr_block
}

output "service_ipv4_cidr" {
  value = var.service_ipv4_cidr
}

output "oidc_provider_arn" {
  value = aws_iam_openid_connect_provider.eks.arn
}

output "backup_bucket" {
  description = "S3 bucket for CNPG backups: destinationPath s3://<bucket>/<database>."
  value       = aws_s3_bucket.backups.bucket
}

output "cnpg_backup_role_arn" {
  description = "IAM role for CNPG backups: annotate each Cluster's serviceAccountTemplate with eks.amazonaws.com/role-arn=<this>."
  value       = aws_iam_role.cnpg_backup.arn
}
