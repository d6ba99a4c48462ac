"""Models built on the operator registry: dMaSIF protein surfaces, point-cloud registration."""
