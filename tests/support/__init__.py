"""Test helpers shared across suites: free ports, a loopback Key Vault server."""
