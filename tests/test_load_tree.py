from hypothesis import given
from hypothesis import strategies as st
from librt.vecs import vec

from disco.vmm.load_tree import LoadTree


def _assert_sums(tree: LoadTree, loads: list[int]) -> None:
    for node in range(len(tree.sum)):
        lo, size = tree.lo[node], tree.size[node]
        assert tree.sum[node] == sum(loads[lo:lo + size])


@given(st.integers(1, 40), st.lists(st.integers(0, 5), max_size=40),
       st.lists(st.tuples(st.integers(0, 39), st.integers(0, 6)), max_size=30))
def test_every_tree_node_holds_the_sum_below_it(n, start, moves):
    """``refresh`` rebuilds every sum; ``set_load`` after it keeps them exact."""
    loads = (start + [0] * n)[:n]
    tree = LoadTree(n)
    tree.refresh(vec[float](loads))
    _assert_sums(tree, loads)
    for cpu, load in moves:
        cpu %= n
        loads[cpu] = load
        tree.set_load(cpu, load)
        _assert_sums(tree, loads)
    assert loads[tree.heaviest(0)] >= min(loads) and loads[tree.lightest(0)] <= max(loads)
    tree.refresh(vec[float]([0] * n))  # a second refresh forgets everything before it
    _assert_sums(tree, [0] * n)


def test_heaviest_and_lightest_find_the_extremes_of_a_pair():
    tree = LoadTree(4)
    tree.refresh(vec[float]([1, 3, 0, 2]))
    assert tree.heaviest(0) == 1
    assert tree.lightest(0) == 2


def test_offline_cpus_are_never_the_lightest():
    tree = LoadTree(4)
    tree.set_online(2, False)
    tree.set_online(3, False)
    tree.refresh(vec[float]([2, 3, 0, 0]))
    assert tree.lightest(0) == 0
