"""Benchmarks of a deployed channels-stack: websockets held, echo, fan-out, bursts."""
