"""Identity for the HTTP APIs: verified bearer tokens and who may do what (reusable by issue 8)."""
