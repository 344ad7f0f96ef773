"""kmod-harness's data, installed as the package ``harness.vm`` (pyproject.toml maps this folder).

The expected trail of the netlink module, the splat rules, the kernel matrix and
the kernel configuration fragments. Read through ``harness.resources``.
"""
