"""kmod-harness: test Linux kernel modules in throwaway VMs."""

__version__ = "0.1.0"
