"""CDK only: the stack composes constructs; constructs build resources."""
