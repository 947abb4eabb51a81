"""This host: its packages and daemons, the offline bases, the accelerator, paths and ports."""
