from hypothesis import given
from hypothesis import strategies as st

from disco.vmm.load_tree import LoadTree


@given(st.integers(1, 40), st.lists(st.tuples(st.integers(0, 39), st.integers(0, 3)),
                                    max_size=60))
def test_every_tree_node_holds_the_sum_below_it(n, updates):
    tree = LoadTree(n)
    loads = [0] * n
    for cpu, delta in updates:
        cpu %= n
        tree.update(cpu, delta)
        loads[cpu] += delta
    for node in range(len(tree.sum)):
        lo, size = tree.lo[node], tree.size[node]
        assert tree.sum[node] == sum(loads[lo:lo + size])
    assert loads[tree.heaviest(0)] >= min(loads) and loads[tree.lightest(0)] <= max(loads)


def test_heaviest_and_lightest_find_the_extremes_of_a_pair():
    tree = LoadTree(4)
    for cpu, load in enumerate([1, 3, 0, 2]):
        tree.update(cpu, load)
    assert tree.heaviest(0) == 1
    assert tree.lightest(0) == 2
