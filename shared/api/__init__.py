"""The HTTP APIs (read: the status function; control: the control function), framework-free."""
