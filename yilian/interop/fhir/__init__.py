"""FHIR R4 (JSON): validation against the official R4 schema, mapping to plain items, read/search views."""
