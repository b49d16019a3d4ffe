"""Example model servers published in the local image catalog (`examples/catalog.yaml`)."""
