"""The paper's studies, in PAPER.md's "Results to reproduce" order, and the baselines each is
compared against (``compare_policies``). Its own module, importing nothing, so that
``experiments/reproduce.py`` can name the studies without loading the plotting stack.
"""

STUDIES: dict[str, tuple[str, ...]] = {
    "overhead": ("policy=smp_os",),
    "containment_overhead": ("cells=cells_1",),
    "cpu_balance": ("policy=no_balancers",),
    "memory_borrowing": ("policy.borrow_policy=none",),
    "paging": (),
    "recovery": (),
    "containment": ("policy=fixed_partition",),
    "vs_partitioning": ("policy=fixed_partition",),
    "sensitivity": (),
}
