variable "name" {
  description = "Alias of the key, without the \"alias/\" prefix."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9/_-]{1,200}$", var.name)) && !startswith(var.name, "aws/")
    error_message = "The name may contain letters, digits, \"/\", \"_\" and \"-\" and must not start with \"aws/\"."
  }
}

variable "description" {
  description = "What the key encrypts."
  type        = string
}

variable "service_grants" {
  description = "AWS service principals allowed to use the key, each with an optional condition that narrows the grant (e.g. an encryption context or source ARN)."
  type = list(object({
    sid       = string
    services  = list(string)
    actions   = optional(list(string), ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"])
    condition = optional(object({ test = string, variable = string, values = list(string) }))
  }))
  default = []
}

variable "tags" {
  description = "Tags added to the key."
  type        = map(string)
  default     = {}
}
