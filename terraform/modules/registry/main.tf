# ECR repositories for the container images of the Dockerfile's targets
# (gateway, api). The deploy workflow pushes <repository>:<commit SHA> after
# each terraform apply on main.
#
#   immutable tags   a tag, once pushed, always names the same image: what was
#                    deployed as a commit can be pulled again, and nobody can
#                    swap an image under a running release
#   scan on push     ECR's basic vulnerability scan of every pushed image
#   KMS              encrypted with the release artifacts' customer-managed key
#                    (module static), like the binaries in the artifact bucket
#   lifecycle        untagged images expire after untagged_expiry_days; of the
#                    tagged ones, the newest keep_images stay
#
# No repository policy: access goes through IAM (the deploy role pushes).

resource "aws_ecr_repository" "this" {
  for_each = var.images

  name                 = "${var.name}/${each.key}"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = aws_ecr_repository.this

  repository = each.value.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged images expire after ${var.untagged_expiry_days} days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = var.untagged_expiry_days
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.keep_images} images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
