"""Shared end-to-end test harness: processes, ports, Envoy rendering, eventually-polling."""
