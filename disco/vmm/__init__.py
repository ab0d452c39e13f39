"""VMM layer: the monitor's mechanisms, one module each (PAPER.md, CPU management)."""
