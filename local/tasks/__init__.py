"""A local Cloud Tasks emulator: the gRPC surface hekaton's timers use, dispatching HTTP tasks on time."""
