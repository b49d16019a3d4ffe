"""The Iris flower classifier, a pure-Python model server with deliberately faulty versions."""
