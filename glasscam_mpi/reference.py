"""The paper's numbers (Oyama, Koyama & Kawasaki, Front. Phys. 2023; METHOD.md section 8).

One place for every value the run is compared with: the report's tables and figures,
``glasscam info`` (through the train and analyze headlines) and the stages' printouts read
them from here. Nothing here is computed; the values are as the paper prints them.
The per-system T* of the paper used to set replica temperatures is part of the system's
definition (:attr:`glasscam_mpi.systems.System.T_star_paper`), not repeated here.
"""

from __future__ import annotations

# Per system (2D only; KA3D is not in the paper). ABM-code is the ABM as the authors' code
# runs it: see :func:`paper_numbers`.
PAPER = {
    "KAM": {"table2": (1.00, 0.998),
            "table5": {"gamma": (0.925, 1.167), "volume": (0.966, 2.860), "theta": (0.885, 1.402)},
            "xi": {"delta": (3.0, 4.0, 5.0), "fig57": 4.0, "indicators": 8.0, "fig6": 4.0},
            "pairs_glass_mean": {"gamma-volume": "negative", "gamma-theta": 0.426,
                                 "theta-volume": -0.597},
            "table4": (0.769, 0.958, 0.820, 0.878, 0.985), "T_star": 0.37},
    "ABM": {"table2": (1.00, 1.00),
            "table5": {"gamma": (0.712, 2.620), "volume": (0.858, 2.620), "theta": (0.790, 0.148)},
            "xi": {"delta": (3.0, 3.0, 2.0), "fig57": 3.0, "indicators": 5.0, "fig6": 3.0},
            "pairs_glass_mean": {"gamma-volume": 0.585, "gamma-theta": -0.378,
                                 "theta-volume": -0.327},
            "table4": None, "T_star": 1.0},
}

# Table 2: test accuracy (glass, liquid) of the paper's CNN, by system name as the train
# stage prints it (an ABM-code run has no row of its own).
TABLE2 = {name: numbers["table2"] for name, numbers in PAPER.items()}

# The paper's scale (METHOD.md sections 2, 6): what "demo scale" is measured against.
PAPER_SCALE = {"n_particles": 2000, "n_runs": 5000, "split": (4000, 400, 600),
               "cooling_rate": 8.33e-5, "n_replicas": 30, "n_configs": 1}

# The paper's delta targets (Table 3's columns).
PAPER_TARGETS = (0.3, 1.0, 3.0)

# The indicators the paper correlates with the propensity as 1 - X, per system
# (``[analyze].one_minus = "paper"``; other systems: gamma and theta).
PAPER_ONE_MINUS = {"KAM": ("gamma", "theta"), "ABM": ("gamma", "volume"),
                   "ABM-code": ("gamma", "volume"), "KA3D": ("gamma", "theta")}


def paper_numbers(system: str) -> dict | None:
    """The paper's numbers for ``system`` (ABM-code is the ABM as the authors' code runs
    it), or None (KA3D: not in the paper)."""
    return PAPER.get("ABM" if system == "ABM-code" else system)
