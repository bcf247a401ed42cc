variable "name" {
  description = "Name prefix: the repositories are <name>/<image>."
  type        = string
}

variable "images" {
  description = "Images built from the repository's Dockerfile (its targets), one repository each."
  type        = set(string)
  default     = ["gateway", "api"]

  validation {
    condition     = alltrue([for image in var.images : can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*$", image))])
    error_message = "Image names are lower-case letters and digits, separated by single '.', '_' or '-'."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key the images are encrypted with (the release artifacts' key)."
  type        = string
}

variable "keep_images" {
  description = "Tagged images kept per repository; older ones expire (one image per deployed commit)."
  type        = number
  default     = 50

  validation {
    condition     = var.keep_images >= 10
    error_message = "Keep at least 10 images, so that a rollback to a recent release stays possible."
  }
}

variable "untagged_expiry_days" {
  description = "Days after which untagged images (layers of interrupted or replaced pushes) expire."
  type        = number
  default     = 7

  validation {
    condition     = var.untagged_expiry_days >= 1
    error_message = "untagged_expiry_days must be at least 1."
  }
}
