"""Cost models: MAC accounting, hardware profiles, latency and energy."""
