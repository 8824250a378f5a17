"""The operators' dashboard: server-rendered pages under /dashboard, and /metrics."""
