"""The `remediate` command and the local simulator (moto on 127.0.0.1)."""
