"""Input/output: message conversion, TF, bag reading and writing, frame folders."""
