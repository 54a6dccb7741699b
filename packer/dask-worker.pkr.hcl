# Dask worker AMI: a Debian 12 base, provisioned by playbooks/bake_worker_ami.yml in
# install-only mode (nothing started, nothing enrolled or mounted).
#
#   make collection                      # .cache/collections -> this checkout
#   packer init packer/
#   packer build -var region=eu-west-1 -var cluster_name=prod \
#     -var 'ansible_extra_arguments=["-e", "@site-vars.yml"]' packer/
#
# Then roll the workers onto it:
#   ansible-playbook playbooks/rolling_update.yml -e dask_rolling_image_id=<ami id from packer-manifest.json>

packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "~> 1.3"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = "~> 1.1"
    }
  }
}

variable "region" {
  type        = string
  description = "AWS region the AMI is built and registered in."
  default     = "eu-west-1"
}

variable "cluster_name" {
  type        = string
  description = "Cluster tag of the AMI (the Cluster tag the inventory filters on)."
  default     = "dask"
}

variable "instance_type" {
  type        = string
  description = "Build instance type; the worker's own type does not need to match."
  default     = "c5.large"
}

variable "subnet_id" {
  type        = string
  description = "Subnet of the build instance; empty lets AWS pick one of the default VPC."
  default     = ""
}

variable "source_ami_name" {
  type        = string
  description = "Name filter of the base image."
  default     = "debian-12-amd64-*"
}

variable "source_ami_owner" {
  type        = string
  description = "Owner of the base image (136693071363 is Debian's)."
  default     = "136693071363"
}

variable "ssh_username" {
  type        = string
  description = "Login user of the base image."
  default     = "admin"
}

variable "ansible_extra_arguments" {
  type        = list(string)
  description = "More ansible-playbook arguments, e.g. [\"-e\", \"@site-vars.yml\"]."
  default     = []
}

locals {
  stamp = formatdate("YYYYMMDDhhmmss", timestamp())
  tags = {
    Project = "dataplatform"
    Cluster = var.cluster_name
    Role    = "worker-image"
    BuiltBy = "packer"
  }
}

source "amazon-ebs" "dask_worker" {
  region          = var.region
  instance_type   = var.instance_type
  subnet_id       = var.subnet_id != "" ? var.subnet_id : null
  ssh_username    = var.ssh_username
  ami_name        = "dask-worker-${var.cluster_name}-${local.stamp}"
  ami_description = "Dask worker for cluster ${var.cluster_name}, baked by dataplatform.dask"
  encrypt_boot    = true
  imds_support    = "v2.0"

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }

  tags = merge(local.tags, { Name = "dask-worker-${var.cluster_name}-${local.stamp}" })
  # No Project/Cluster tags on the build instance: it stays out of inventory/aws_ec2.yml.
  run_tags = { Name = "packer-dask-worker-build", BuiltBy = "packer" }
}

build {
  sources = ["source.amazon-ebs.dask_worker"]

  provisioner "ansible" {
    playbook_file = "${path.root}/../playbooks/bake_worker_ami.yml"
    user          = var.ssh_username
    use_proxy     = false
    groups        = ["dask_bake"]
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${path.root}/../ansible.cfg",
      "ANSIBLE_COLLECTIONS_PATH=${path.root}/../.cache/collections",
      "ANSIBLE_HOST_KEY_CHECKING=False",
    ]
    extra_arguments = concat(["-e", "dask_worker_start_services=false"], var.ansible_extra_arguments)
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
  }
}
