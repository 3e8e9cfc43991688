"""Step Functions task handlers: the approval flow."""
