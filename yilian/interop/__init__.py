"""Interoperability (数据接入): FHIR R4 under /fhir, HL7 v2 over MLLP and HTTP, CSV imports. Every
channel is authenticated per sending institution and idempotent; rejected input is kept in a
dead-letter list where a person can read it, fix it and replay it."""
