"""Models, event parsing, the policy file, the action registry, audit and the remediation."""
