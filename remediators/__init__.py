"""autoremediate: CloudWatch alarms fix what runbooks used to fix by hand."""
