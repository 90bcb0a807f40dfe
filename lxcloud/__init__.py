"""lxcloud: a private cloud whose first-class instance is the LXC system container."""

__version__ = "0.1.0"
