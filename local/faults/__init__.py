"""Fault injection for the local stack: seeded injectors between hekaton and each real part it uses."""
