"""pytest-vmcontainer: the same checks and measurements on a Vagrant VM and a Docker container."""

__version__ = "0.1.0"
