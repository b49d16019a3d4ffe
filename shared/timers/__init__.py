"""Timers: how a rollout's future due time wakes its step (a Cloud Tasks task, or only the tick)."""
