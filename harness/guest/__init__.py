"""Code that runs inside the guest. Standard library only, Python 3.9+."""
