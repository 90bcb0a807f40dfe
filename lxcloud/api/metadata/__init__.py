"""The EC2 instance metadata service (IMDS) as instances see it at http://169.254.169.254/."""

from lxcloud.api.metadata.app import MetadataView, create_metadata_app, issue_token, verify_token

__all__ = ["MetadataView", "create_metadata_app", "issue_token", "verify_token"]
