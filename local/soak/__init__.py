"""The soak: many rollouts on a faulty local stack, compared with the same seed on a fault-free one."""
