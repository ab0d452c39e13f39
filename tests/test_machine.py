from disco import SimConfig
from disco.hardware import OTHER_CELL, SAME_CELL, SAME_CPU, SAME_NODE, Machine


def test_paper_machine_has_32_cpus_in_8_cells_of_4():
    m = Machine.from_config(SimConfig())
    assert (m.cpus, m.nodes, m.cells, m.cpus_per_cell) == (32, 16, 8, 4)
    assert m.memory_mb == 16 * 512


def test_distance_classes():
    m = Machine.from_config(SimConfig())
    assert m.distance(0, 0) == SAME_CPU
    assert m.distance(0, 1) == SAME_NODE
    assert m.distance(0, 3) == SAME_CELL
    assert m.distance(0, 4) == OTHER_CELL


def test_hypercube_hops_and_latency():
    m = Machine.from_config(SimConfig())
    assert m.hops(0, 0) == 0 and m.hops(0, 1) == 1 and m.hops(0, 15) == 4
    assert m.latency_ns(3, 3) == 310.0
    assert m.latency_ns(0, 1) == 550.0
    assert m.latency_ns(0, 3) == 650.0


def test_latency_table_matches_latency_ns_on_uneven_machines():
    for nodes in (1, 6, 16, 24):
        m = Machine(nodes=nodes, cpus_per_node=2, nodes_per_cell=nodes, memory_per_node_mb=512,
                    local_latency_ns=310.0, remote_latency_ns=550.0, hop_latency_ns=100.0)
        table = m.latency_table()
        assert table == [[m.latency_ns(a, b) for b in range(nodes)] for a in range(nodes)]


def test_one_cell_per_node():
    cfg = SimConfig.from_dict({"cells": {"count": None, "nodes_per_cell": 1}})
    m = Machine.from_config(cfg)
    assert m.cells == 16 and m.cell_of(5) == 2
