"""Getting a kernel: specs, the Debian archive, roots, kernel trees, and module builds against them."""
