variable "region" {
  description = "AWS region of the cluster and the backup bucket."
  type        = string
  default     = "eu-west-1"
}

variable "cluster_name" {
  description = "Name of the EKS cluster (also the prefix of every other resource)."
  type        = string
  default     = "pgplane"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.cluster_name))
    error_message = "cluster_name: 2 to 31 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (the manifests are validated against this minor)."
  type        = string
  default     = "1.33"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC. manifests/overlays/production's NetworkPolicy allows the API server in this range."
  type        = string
  default     = "10.0.0.0/16"
}

variable "service_ipv4_cidr" {
  description = "Kubernetes Service CIDR. manifests/overlays/production allows its first address (the API server's Service)."
  type        = string
  default     = "172.20.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread subnets and nodes over."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 and 4."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper, but egress depends on one zone)."
  type        = bool
  default     = false
}

variable "endpoint_public_access_cidrs" {
  description = "Addresses allowed to reach the public Kubernetes API endpoint. Narrow this to your office/VPN ranges."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "admin_principal_arns" {
  description = "IAM users or roles given cluster-admin through EKS access entries (besides the creator)."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["m6i.large", "m6a.large"]
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT. Databases want ON_DEMAND."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_min_size" {
  type    = number
  default = 3
}

variable "node_desired_size" {
  type    = number
  default = 3
}

variable "node_max_size" {
  type    = number
  default = 6
}

variable "node_disk_size_gib" {
  description = "Root volume of each node (images and logs; databases get their own EBS volumes)."
  type        = number
  default     = 50
}

variable "databases_namespace" {
  description = "Namespace of the CNPG Clusters (PGPLANE_NAMESPACE). Their service accounts may assume the backup role."
  type        = string
  default     = "databases"
}

variable "backup_bucket_name" {
  description = "Name of the S3 bucket for CNPG backups (WAL archive and base backups). Empty: <cluster_name>-cnpg-backups-<account id>."
  type        = string
  default     = ""
}

variable "backup_noncurrent_days" {
  description = "Days to keep overwritten or deleted backup objects (versioning)."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Days to keep the EKS control-plane logs in CloudWatch."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
