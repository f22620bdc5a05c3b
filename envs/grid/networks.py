"""Network construction (built-in feeders, SimBench codes, JSON files, callables) and assets."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandapower as pp

from .config import BUILTIN_NETWORKS, EXAMPLE_SIMBENCH_CODES

CASE33BW_ASSET_BUSES = [17, 21, 24, 32]
BATTERY_NAME = "rlkit_battery"
PV_NAME = "rlkit_pv"

ALLOWED_NETWORKS_MSG = (
    f"allowed values: {', '.join(BUILTIN_NETWORKS)}, a SimBench code "
    f"(e.g. {', '.join(EXAMPLE_SIMBENCH_CODES)}), a path to a pandapower .json file, "
    "or a callable returning a pandapower net"
)


@functools.lru_cache(maxsize=8)
def _cached_named(name: str) -> Any:
    import pandapower.networks as pn

    if name == "case33bw":
        return pn.case33bw()
    if name == "cigre_mv":
        return pn.create_cigre_network_mv(with_der="all")
    if os.path.isfile(name):
        return pp.from_json(name)
    if name.endswith(".json"):
        raise ValueError(f"network file {name!r} does not exist")
    import simbench as sb

    try:
        codes = set(sb.collect_all_simbench_codes())
    except Exception:  # pragma: no cover - defensive
        codes = set()
    if codes and name not in codes:
        raise ValueError(f"unknown network {name!r}; {ALLOWED_NETWORKS_MSG}")
    try:
        return sb.get_simbench_net(name)
    except Exception as exc:
        raise ValueError(f"unknown network {name!r} ({exc}); {ALLOWED_NETWORKS_MSG}") from exc


def load_network(spec: str | Callable[[], Any]) -> Any:
    """Return a fresh pandapower net for ``spec``.

    :param spec: 'case33bw', 'cigre_mv', a SimBench code, a JSON path, or a callable returning a
        net.
    :raises ValueError: unknown name / missing file / callable not returning a net (the message
        lists the allowed values).
    """
    if callable(spec):
        net = spec()
        if not isinstance(net, pp.pandapowerNet):
            raise ValueError(
                f"network callable returned {type(net).__name__}, expected a pandapower net"
            )
        return net
    if not isinstance(spec, str):
        raise ValueError(f"network must be a string or callable; {ALLOWED_NETWORKS_MSG}")
    return copy.deepcopy(_cached_named(spec))


def slack_buses(net: Any) -> list[int]:
    """pandapower indices of in-service ext_grid buses.

    :param net: pandapower net.
    """
    eg = net.ext_grid[net.ext_grid["in_service"]]
    return [int(b) for b in eg["bus"]]


def default_asset_buses(net: Any, spec: Any, k: int = 4) -> list[int]:
    """Default battery/PV buses: case33bw -> [17, 21, 24, 32]; else the k load buses farthest
    (in hops) from the slack.

    :param net: pandapower net.
    :param spec: network spec (only 'case33bw' is special-cased).
    :param k: number of buses.
    """
    if spec == "case33bw":
        return list(CASE33BW_ASSET_BUSES)
    import networkx as nx
    import pandapower.topology as top

    graph = top.create_nxgraph(net, respect_switches=True)
    dist: dict[int, int] = {}
    for s in slack_buses(net):
        for b, d in nx.single_source_shortest_path_length(graph, s).items():
            dist[b] = min(d, dist.get(b, 10**9))
    load_buses = sorted({int(b) for b in net.load.loc[net.load["in_service"], "bus"]} & set(dist))
    if not load_buses:
        load_buses = sorted(set(dist))
    ranked = sorted(load_buses, key=lambda b: (-dist[b], b))
    return sorted(ranked[:k])


def validate_buses(net: Any, buses: list[int], field: str) -> None:
    """Raise ValueError unless every bus exists, is in service and is not an ext_grid bus.

    :param net: pandapower net.
    :param buses: pandapower bus indices.
    :param field: config field name used in the message.
    """
    idx = set(int(b) for b in net.bus.index)
    for b in buses:
        if int(b) not in idx:
            raise ValueError(
                f"{field}: bus {b} is not in the network (valid bus indices: "
                f"{min(idx)}..{max(idx)}, {len(idx)} buses)"
            )
        if not bool(net.bus.at[int(b), "in_service"]):
            raise ValueError(f"{field}: bus {b} is out of service")
        if int(b) in slack_buses(net):
            raise ValueError(f"{field}: bus {b} is the slack (ext_grid) bus")
    if len(set(buses)) != len(buses):
        raise ValueError(f"{field}: duplicate buses in {buses}")


def add_assets(
    net: Any,
    battery_buses: list[int],
    battery_p_mw: float,
    battery_e_mwh: float,
    pv_buses: list[int],
    pv_peak_mw: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Add the controlled batteries (pandapower ``storage``, p > 0 = charging) and PV ``sgen``s.

    :param net: pandapower net (modified in place).
    :param battery_buses: bus indices of the batteries.
    :param battery_p_mw: power rating of each battery.
    :param battery_e_mwh: capacity of each battery.
    :param pv_buses: bus indices of the PV units.
    :param pv_peak_mw: peak power of each PV unit (0 = no PV units are added).
    :return: positions (in ``net.storage`` / ``net.sgen`` order) of the added batteries and PV
        units.
    """
    st = [
        pp.create_storage(
            net,
            bus=b,
            p_mw=0.0,
            max_e_mwh=battery_e_mwh,
            sn_mva=battery_p_mw,
            name=f"{BATTERY_NAME}_{i}",
            max_p_mw=battery_p_mw,
            min_p_mw=-battery_p_mw,
        )
        for i, b in enumerate(battery_buses)
    ]
    sg = []
    if pv_peak_mw > 0:
        sg = [
            pp.create_sgen(
                net, bus=b, p_mw=0.0, name=f"{PV_NAME}_{i}", type="PV", sn_mva=pv_peak_mw
            )
            for i, b in enumerate(pv_buses)
        ]
    st_pos = np.array([net.storage.index.get_loc(i) for i in st], dtype=np.int64)
    sg_pos = np.array([net.sgen.index.get_loc(i) for i in sg], dtype=np.int64)
    return st_pos, sg_pos
